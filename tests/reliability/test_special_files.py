"""Special files where the store or the lab layout is read (a FIFO, a link to nothing):
never opened, so never a hang (--dry-run included), and each named in a warning, never
passed over in silence."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from morphseq_stages.files import JOURNAL

from . import scenario

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
EXP = "20231207"
HANG_S = 60  # a run of this root takes a second or two; one that waits on a FIFO never ends


def _run(synth, *extra):
    """The CLI in a process of its own (a hang ends in a timeout, not a stuck test suite)."""
    argv = [sys.executable, "-m", "morphseq_stages", *scenario.args(synth, *extra)]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=HANG_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run hung: {' '.join(extra)}")


def _warnings(proc) -> list[str]:
    out = []
    for line in proc.stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "build06.warning":
            out.append(event["message"])
    return out


def _lab(synth, tmp_path):
    """The lab layout under ``tmp_path/lab`` for every experiment: a validated merged file
    each, made from the store's CSV; the store's files removed."""
    store = synth.latent_dir(scenario.MODEL)
    for csv in sorted(store.glob("morph_latents_*.csv")):
        exp = csv.stem.removeprefix("morph_latents_")
        table = pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(column_types={"snip_id": pa.string()}))
        cols = {"snip_id": table.column("snip_id"),
                **{c: table.column(c).cast(pa.float64()) for c in table.column_names if c.startswith("z_")},
                "embedding_model_name": pa.array([scenario.MODEL] * table.num_rows)}
        folder = tmp_path / "lab" / "feature_extraction" / exp / "latent_embeddings"
        folder.mkdir(parents=True)
        pq.write_table(pa.table(cols), folder / f"{exp}_latents.parquet")
        (folder / f"{exp}_latents.parquet.validated").write_text("ok\n")
        csv.unlink()
    return tmp_path / "lab"


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_a_fifo_validated_sentinel_hangs_nothing_and_is_named(tmp_path, dry):
    synth = scenario.merge_root(tmp_path)
    lab = _lab(synth, tmp_path)
    merged = lab / "feature_extraction" / EXP / "latent_embeddings" / f"{EXP}_latents.parquet"
    sentinel = merged.with_name(merged.name + ".validated")
    sentinel.unlink()
    os.mkfifo(sentinel)
    proc = _run(synth, "--latents-root", str(lab), *(["--dry-run", "--json"] if dry else []))
    assert proc.returncode == 0, proc.stderr
    text = json.loads(proc.stdout)["warnings"] if dry else _warnings(proc)
    assert any(str(merged) in w and "FIFO" in w for w in text), text


@pytest.mark.parametrize("kind", ["fifo", "dangling-link"])
def test_a_special_shard_is_named_in_a_warning(tmp_path, kind):
    synth = scenario.merge_root(tmp_path)
    lab = _lab(synth, tmp_path)
    folder = lab / "feature_extraction" / EXP / "latent_embeddings"
    merged = folder / f"{EXP}_latents.parquet"
    shard = folder / "per_well" / f"{EXP}_A01" / f"{EXP}_A01_latents.parquet"
    shard.parent.mkdir(parents=True)
    os.replace(merged, shard)
    os.replace(merged.with_name(merged.name + ".validated"), shard.with_name(shard.name + ".validated"))
    odd = folder / "per_well" / f"{EXP}_B01" / f"{EXP}_B01_latents.parquet"
    odd.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.symlink_to(tmp_path / "nowhere.parquet")
    odd.with_name(odd.name + ".validated").write_text("ok\n")
    proc = _run(synth, "--latents-root", str(lab))
    assert proc.returncode == 0, proc.stderr
    what = "a FIFO" if kind == "fifo" else "a symbolic link to nothing"
    assert any(str(odd) in w and what in w for w in _warnings(proc)), _warnings(proc)


@pytest.mark.parametrize("kind", ["fifo", "dangling-link"])
def test_a_special_latent_file_in_the_store_is_an_error_naming_it(tmp_path, kind):
    synth = scenario.merge_root(tmp_path)
    latent = synth.latent_dir(scenario.MODEL) / f"morph_latents_{EXP}.csv"
    latent.unlink()
    if kind == "fifo":
        os.mkfifo(latent)
    else:
        latent.symlink_to(tmp_path / "nowhere.csv")
    for extra in (["--dry-run"], []):
        proc = _run(synth, *extra)
        plain = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
        assert proc.returncode == 2, proc.stderr
        assert len(plain) == 1 and str(latent) in plain[0] and "not a regular file" in plain[0], plain


@pytest.mark.parametrize("name", ["manifest.json", "sidecar"])
def test_a_fifo_record_hangs_nothing(tmp_path, name):
    synth = scenario.merge_root(tmp_path)
    assert _run(synth).returncode == 0
    path = (synth.latent_dir(scenario.MODEL) / name if name == "manifest.json"
            else synth.root / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.json")
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    proc = _run(synth, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "FIFO" in proc.stderr


def test_a_fifo_commit_journal_hangs_nothing_and_is_cleared(tmp_path):
    synth = scenario.merge_root(tmp_path)
    folder = synth.root / "metadata" / "combined_metadata_files"
    os.mkfifo(folder / JOURNAL)
    proc = _run(synth)
    assert proc.returncode == 0, proc.stderr
    assert not os.path.lexists(folder / JOURNAL)


def test_a_fifo_lock_file_is_an_error_naming_it(tmp_path):
    synth = scenario.merge_root(tmp_path)
    lock = synth.root / "metadata" / "combined_metadata_files" / ".embryo_metadata_df03.csv.lock"
    os.mkfifo(lock)
    proc = _run(synth)
    plain = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert proc.returncode == 2, proc.stderr
    assert len(plain) == 1 and str(lock) in plain[0] and "not a regular file" in plain[0], plain
