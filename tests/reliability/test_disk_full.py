"""A full disk and a read-only disk under df03's folder: one line, exit 2, nothing changed
(the analysis copies, on another disk, included: the outputs change together or not at all)."""

from __future__ import annotations

import subprocess

import pytest

from . import scenario
from conftest import fill_disk, small_tmpfs, tree_digest


@pytest.fixture
def df03_disk(tmp_path):
    """A root whose df03 folder is a 1 MB tmpfs of its own, holding a previous run's outputs."""
    synth = scenario.merge_root(tmp_path)
    assert scenario.run_cli(scenario.args(synth, "--export-analysis-copies")).returncode == 0
    scenario.add_rows(synth, latents=True, images=False)  # the next run's outputs all differ
    with small_tmpfs(synth.df02.parent, "1m") as folder:
        yield synth, folder


def test_a_full_disk_under_df03_is_one_line_and_changes_nothing(df03_disk, tmp_path, cli):
    synth, folder = df03_disk
    fill_disk(folder, leave_pages=2)
    before = tree_digest(tmp_path)
    code, _, err = cli(*scenario.args(synth, "--overwrite", "--export-analysis-copies"))
    plain = [line for line in err.splitlines() if not line.startswith("{")]
    assert code == 2, err
    assert len(plain) == 1 and "No space left on device" in plain[0] and str(folder) in plain[0], plain
    assert tree_digest(tmp_path) == before  # df03, its list, its sidecar and the copies: all as they were
    (folder / "filler").unlink()
    code, _, err = cli(*scenario.args(synth, "--overwrite", "--export-analysis-copies"))
    assert code == 0, err  # room again: the same run completes
    assert scenario.leftovers(tmp_path) == []


def test_a_read_only_disk_under_df03_is_one_line_and_changes_nothing(df03_disk, tmp_path, cli):
    synth, folder = df03_disk
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    before = tree_digest(tmp_path)
    code, _, err = cli(*scenario.args(synth, "--overwrite", "--export-analysis-copies"))
    plain = [line for line in err.splitlines() if not line.startswith("{")]
    assert code == 2, err
    assert len(plain) == 1 and str(folder) in plain[0], plain
    assert tree_digest(tmp_path) == before
