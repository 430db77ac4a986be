"""The training join's folder is locked, journalled and recovered like every other output
folder: a run killed between staging its outputs and the end of their commit leaves
nothing behind after the next run, and the join, its sidecar and its typed copies are
all old or all new."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest

from morphseq_stages.files import JOURNAL

from . import scenario
from .crash import _Run
from conftest import load_json_lines, read_rows

TRAIN = "t1"
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_training(synth, rows: int) -> Path:
    train = synth.root / "training_data" / TRAIN / "embryo_metadata_df_train.csv"
    train.parent.mkdir(parents=True, exist_ok=True)
    header, body = read_rows(synth.df02)
    train.write_text("\n".join(",".join(r) for r in [header, *body[:rows]]) + "\n")
    return train


def _killed_in_commit(argv: list[str], folder: Path, when: int | str) -> None:
    """A run killed before its ``when``-th rename into ``folder`` (the journal's is the
    first), or (``"journal"``) after every rename, as it removes the journal."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            real_replace, real_unlink, renames = os.replace, os.unlink, []

            def replace(src, dst, **kw):
                if Path(dst).parent == folder:
                    renames.append(dst)
                    if len(renames) == when:
                        os.kill(os.getpid(), signal.SIGKILL)
                real_replace(src, dst, **kw)

            def unlink(path, **kw):
                if when == "journal" and Path(path) == folder / JOURNAL and os.path.exists(path):
                    os.kill(os.getpid(), signal.SIGKILL)
                real_unlink(path, **kw)

            os.replace, os.unlink = replace, unlink
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            from morphseq_stages.cli import main

            code = main(argv)
        finally:
            os._exit(code)
    _Run.live.add(pid)
    status = os.waitpid(pid, 0)[1]
    _Run.live.discard(pid)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL, "the run ended before the point it was to be killed at"


def _consistent(folder: Path) -> None:
    """The join, its sidecar and its typed copy describe one another."""
    csv = folder / "embryo_metadata_with_embeddings.csv"
    side = json.loads(csv.with_suffix(".json").read_text())
    assert side["files"][csv.name]["sha256"] == _sha(csv)
    parquet = csv.with_suffix(".parquet")
    assert side["files"][parquet.name]["sha256"] == _sha(parquet)
    assert side["files"][parquet.name]["built_from"]["made_from"]["sha256"] == _sha(csv)


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("when", [1, 2, 3, 4, "journal"])
def test_a_run_killed_in_the_training_joins_commit_is_recovered_by_the_next_run(cli, tmp_path, when):
    synth = scenario.merge_root(tmp_path)
    _write_training(synth, 5)
    argv = scenario.args(synth, "--train-name", TRAIN, "--formats", "csv,parquet")
    code, _, err = cli(*argv)
    assert code == 0, err
    folder = synth.root / "training_data" / TRAIN
    _consistent(folder)
    old = _sha(folder / "embryo_metadata_with_embeddings.csv")
    _write_training(synth, 8)  # the join must be rewritten: each of its files changes
    _killed_in_commit([*argv, "--overwrite"], folder, when)
    assert _left(folder), "the kill left nothing to recover"
    code, _, err = cli(*argv)  # the user's next run: no --overwrite
    assert code == 0, err
    assert _left(folder) == []
    _consistent(folder)
    csv = folder / "embryo_metadata_with_embeddings.csv"
    done = _sha(csv) != old  # the killed run's commit was under way from its first rename
    assert done == (when != 1), when
    if done:
        assert len(read_rows(csv)[1]) == 8
        events = [e["event"] for e in load_json_lines(err)]
        assert "outputs.recovered" in events or "outputs.temp_removed" in events
    code, out, err = cli(*argv, "--dry-run", "--json")
    training = next(o for o in json.loads(out)["outputs"] if o["kind"] == "training")
    assert training["status"] == ("current" if done else "out-of-date"), training


def test_the_training_join_is_busy_while_another_run_writes_it(cli, tmp_path):
    synth = scenario.merge_root(tmp_path)
    _write_training(synth, 5)
    from morphseq_build06 import paths
    from morphseq_stages.files import exclusive_lock

    folder = synth.root / "training_data" / TRAIN
    with exclusive_lock(*paths.training_lock(folder)):
        code, _, err = cli(*scenario.args(synth, "--train-name", TRAIN))
    assert code == 75, err
    assert "busy" in err and str(folder) in err
