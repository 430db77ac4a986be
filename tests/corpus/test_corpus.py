"""The corpus tool itself: two recordings of the same code compare identical, and a
change to one file of one step is reported as exactly that."""

from __future__ import annotations

import json
import shutil

import pytest

from .compare import compare
from .recording import Recording, Scenario, record
from .scenarios import b06, edit_df02, roots
from .session import Session

DF03 = "root/metadata/combined_metadata_files/embryo_metadata_df03.csv"


def _cli(s: Session) -> None:
    synth = roots.merge_root(s.base)
    s.cli("run", *b06(synth, "--formats", "csv,parquet", "--json"))
    edit_df02(synth, 1, "genotype", "tbxta")
    s.cli("dry-run", *b06(synth, "--dry-run", "--json"))


def _api(s: Session) -> None:
    synth = roots.merge_root(s.base)
    s.api("build", [{"call": "build_df03_with_embeddings", "args": [str(synth.root), str(synth.data_root), "m"],
                     "kwargs": {"export_analysis": True}}])


SMALL = (Scenario("cli", _cli, "a run and a dry run"), Scenario("api", _api, "an API build"))


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    pytest.importorskip("pyarrow")
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    for out in (a, b):
        record(out, SMALL, log=lambda _: None)
    return a, b


def test_two_recordings_of_the_same_code_are_identical(recordings):
    a, b = recordings
    lines: list[str] = []
    assert compare(Recording.read(a), Recording.read(b), out=lines.append) == 0, "\n".join(lines)
    assert lines[-1].startswith("identical (2 scenarios, 3 steps compared)")
    steps = Recording.read(a).steps
    # what was recorded: the files of both roots, the exit codes, a dry run's plan
    assert {DF03, DF03.replace(".csv", ".parquet"), "@exit", "@stdout", "@stderr"} <= set(steps["cli"]["01-run"])
    plan = Recording.read(a).text(steps["cli"]["02-dry-run"]["@stdout"])
    assert plan is not None and json.loads(plan)["df03_status"]["status"] == "out-of-date"
    assert "<volatile>" in plan or "$BASE" in plan
    assert any(k.startswith("data/metadata/metadata_n_embeddings/m/") for k in steps["api"]["01-build"])


def test_a_changed_file_is_reported_as_exactly_that(recordings, tmp_path):
    a, b = recordings
    changed = tmp_path / "changed"
    shutil.copytree(b, changed)
    data = json.loads((changed / "recording.json").read_text())
    entries = data["scenarios"]["cli"]["steps"][0]["entries"]
    text = Recording.read(b).text(entries[DF03])
    assert text is not None
    edited = text.replace("wik", "wiK", 1)
    from .normalise import content_of

    new = content_of(edited)
    (changed / "texts" / f"{new.digest}.txt").write_text(edited)
    entries[DF03] = new.digest
    del entries["@stderr"]
    (changed / "recording.json").write_text(json.dumps(data))

    lines: list[str] = []
    assert compare(Recording.read(a), Recording.read(changed), out=lines.append) == 2
    report = "\n".join(lines)
    assert f"differs: {DF03}" in report and "-" in report and "wiK" in report
    assert "only in A: @stderr" in report
    assert lines[-1].startswith("2 difference(s) in 1 step(s) of 1 scenario(s)")
    ignored: list[str] = []
    assert compare(Recording.read(a), Recording.read(changed), ignore=["*.csv", "@stderr"], out=ignored.append) == 0
    assert "2 difference(s) ignored" in ignored[-1]
