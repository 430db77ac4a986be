"""Output sets (all or nothing), locks (flock: busy is exit 75, a dead run's lock is taken
over and its leftovers recovered), and a plan made stale by another run."""

from __future__ import annotations

import json
import os
import signal

import pytest

from morphseq_stages import runner
from morphseq_stages.cli import main
from morphseq_stages.errors import UserError
from morphseq_stages.files import JOURNAL, atomic_write, exclusive_lock, staged_writes

from . import scenario
from .crash import _Run
from conftest import load_json_lines, tree_digest


def test_a_failed_set_changes_nothing_and_leaves_nothing(tmp_path):
    (tmp_path / "a.csv").write_text("old a")
    before = tree_digest(tmp_path)
    with pytest.raises(RuntimeError), staged_writes():
        atomic_write(tmp_path / "a.csv", lambda fh: fh.write(b"new a"))
        atomic_write(tmp_path / "new" / "deeper" / "b.csv", lambda fh: fh.write(b"new b"))
        raise RuntimeError("disk gone")
    assert tree_digest(tmp_path) == before  # no temporary file, no folder made for the set


def test_nothing_is_renamed_before_the_whole_set_is_written(tmp_path):
    (tmp_path / "a.csv").write_text("old a")
    with staged_writes():
        atomic_write(tmp_path / "a.csv", lambda fh: fh.write(b"new a"))
        assert (tmp_path / "a.csv").read_text() == "old a"
        atomic_write(tmp_path / "b.csv", lambda fh: fh.write(b"new b"))
    assert (tmp_path / "a.csv").read_text() == "new a" and (tmp_path / "b.csv").read_text() == "new b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_set_killed_between_its_renames_is_completed_by_the_next_lock_holder(tmp_path, capsys):
    for name in ("a.csv", "b.csv", "manifest.json"):
        (tmp_path / name).write_text(f"old {name}")
    pid = os.fork()
    if pid == 0:  # a run killed right after its first rename
        real, calls = os.replace, []

        def replace(src, dst):  # the journal's rename, then the first file's, then death
            real(src, dst)
            calls.append(dst)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace
        try:
            with staged_writes():
                for name in ("a.csv", "b.csv", "manifest.json"):
                    atomic_write(tmp_path / name, lambda fh, n=name: fh.write(f"new {n}".encode()))
        finally:
            os._exit(0)  # never return into the parent's pytest
    os.waitpid(pid, 0)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert JOURNAL in left and (tmp_path / "a.csv").read_text() == "new a.csv"
    assert (tmp_path / "manifest.json").read_text() == "old manifest.json"  # renamed last
    with exclusive_lock(tmp_path / ".x.lock", "x"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv", "manifest.json"]
    assert all((tmp_path / n).read_text() == f"new {n}" for n in ("a.csv", "b.csv", "manifest.json"))


def test_a_dead_runs_lock_and_temporary_files_are_taken_over(tmp_path, cli):
    synth = scenario.merge_root(tmp_path)
    folder = synth.df02.parent
    (folder / ".embryo_metadata_df03.csv.lock").write_text(json.dumps({"pid": 4_000_321, "host": "h", "since": "s"}))
    (folder / ".embryo_metadata_df03.csv.k3Jx_9aZ.tmp").write_bytes(b"half a df03")
    code, _, err = cli(*scenario.args(synth))
    assert code == 0, err
    events = {e["event"]: e for e in load_json_lines(err)}
    assert events["lock.recovered"]["old_pid"] == 4_000_321
    assert events["outputs.temp_removed"]["files"] == [".embryo_metadata_df03.csv.k3Jx_9aZ.tmp"]
    assert scenario.leftovers(tmp_path) == []


def test_a_dead_runs_lock_beside_current_analysis_copies_is_removed(tmp_path, cli):
    # killed after committing the copies and before releasing their lock: the next run has
    # nothing to write there, yet must not leave the lock behind
    synth = scenario.merge_root(tmp_path)
    code, _, err = cli(*scenario.args(synth, "--export-analysis-copies"))
    assert code == 0, err
    copies = synth.data_root / "metadata" / "metadata_n_embeddings" / scenario.MODEL
    (copies / ".df03_copies.lock").write_text(json.dumps({"pid": 4_000_322, "host": "h", "since": "s"}))
    before = {p.name: p.read_bytes() for p in copies.glob("df03_*")}
    code, _, err = cli(*scenario.args(synth, "--export-analysis-copies"))
    assert code == 0, err
    assert [e["old_pid"] for e in load_json_lines(err) if e["event"] == "lock.recovered"] == [4_000_322]
    assert {p.name: p.read_bytes() for p in copies.glob("df03_*")} == before
    assert scenario.leftovers(tmp_path) == []


def test_a_dry_run_says_a_killed_run_left_a_half_renamed_set(tmp_path, cli):
    synth = scenario.merge_root(tmp_path)
    assert cli(*scenario.args(synth))[0] == 0
    folder = synth.df02.parent
    (folder / ".embryo_metadata_df03.json.k3Jx_9aZ.tmp").write_text("{}")
    (folder / JOURNAL).write_text(json.dumps([[".embryo_metadata_df03.json.k3Jx_9aZ.tmp", "embryo_metadata_df03.json"]]))
    before = tree_digest(tmp_path)
    code, _, err = cli(*scenario.args(synth, "--dry-run"))
    assert code == 0, err
    assert [e["folder"] for e in load_json_lines(err) if e["event"] == "outputs.interrupted"] == [str(folder)]
    assert tree_digest(tmp_path) == before


def test_an_empty_lock_file_with_no_holder_is_stale(tmp_path, cli):
    synth = scenario.merge_root(tmp_path)
    (synth.df02.parent / ".embryo_metadata_df03.csv.lock").write_bytes(b"")
    code, _, err = cli(*scenario.args(synth))
    assert code == 0, err
    assert any(e["event"] == "lock.stale" for e in load_json_lines(err))
    assert scenario.leftovers(tmp_path) == []


def test_a_held_lock_is_busy_exit_75(tmp_path, cli):
    synth = scenario.merge_root(tmp_path)
    before = tree_digest(tmp_path)
    with exclusive_lock(synth.df02.parent / ".embryo_metadata_df03.csv.lock", "df03"):
        code, _, err = cli(*scenario.args(synth))
        assert code == 75
        assert err.strip().splitlines()[-1].startswith(
            f"morphseq-stages: error: busy, retry: another run is writing {synth.df02.with_name('embryo_metadata_df03.csv')}")
        assert f"held by pid {os.getpid()}" in err
    assert tree_digest(tmp_path) == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_runs_at_once_one_refused_the_other_complete(tmp_path):
    synth = scenario.merge_root(tmp_path)
    argv = scenario.args(synth, "--export-analysis-copies")
    read, write = os.pipe()
    first = _Run(argv, fork=True, stderr=write)
    os.close(write)
    with os.fdopen(read) as log:
        for line in log:
            if '"event": "coverage"' in line:  # the first run holds its locks: freeze it there
                os.kill(first.pid, signal.SIGSTOP)
                break
        try:
            second = _Run(argv, fork=True)
            assert second.wait() == 75
        finally:
            os.kill(first.pid, signal.SIGCONT)
        rest = log.read()
    assert first.wait() == 0, rest
    df03 = synth.df02.with_name("embryo_metadata_df03.csv")
    assert len(df03.read_text().splitlines()) == 1 + sum(scenario.EXPERIMENTS.values())
    assert len(list((synth.data_root / "metadata" / "metadata_n_embeddings" / scenario.MODEL).glob("df03_*.csv"))) == 3
    assert scenario.leftovers(tmp_path) == []


def test_a_plan_made_stale_by_another_run_is_made_again_under_the_lock(tmp_path, cli, capsys, monkeypatch):
    synth = scenario.merge_root(tmp_path)
    df03 = synth.df02.with_name("embryo_metadata_df03.csv")
    hold = runner._hold
    calls = []

    def another_run_first(held, plan, taken):
        if not calls:  # between this run's plan and its locks, another run writes df03
            calls.append("the other run")
            calls[0] = main(scenario.args(synth, "--min-coverage", "0.5"))
            calls.append(df03.read_bytes())
            capsys.readouterr()
        hold(held, plan, taken)

    monkeypatch.setattr(runner, "_hold", another_run_first)
    code, out, err = cli(*scenario.args(synth, "--json"))
    assert code == 0 and calls[0] == 0, err
    assert df03.read_bytes() == calls[1]  # not replaced without --overwrite
    assert any(e["event"] == "plan.remade" for e in load_json_lines(err))
    assert str(df03) in {s["path"] for s in json.loads(out)["skipped"]}


def test_a_lock_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / ".x.lock").mkdir()
    with pytest.raises(UserError, match=r"cannot take lock .*\.x\.lock"), exclusive_lock(tmp_path / ".x.lock", "x"):
        pass
