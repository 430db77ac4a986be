"""What an output was built from is what the run read: an input that appears or changes
between the merge's read and the export (a --generate-only job beside the merge, a row
appended to df02) makes the output out of date at the next plan, and --overwrite then
brings it up to date. The race is made deterministic by a hook right after the merge."""

from __future__ import annotations

import json

import pytest

from morphseq_build06 import merge as merge_mod
from morphseq_build06.testing import write_latent_file

from . import scenario
from conftest import read_rows

LATE = "20250612_ctrl"  # the experiment whose latent file a "generate-only job" commits late


def _after_merge(monkeypatch, action):
    """Run ``action`` once the merge has read its inputs, before the export writes."""
    real = merge_mod.merge

    def merge(plan, settled):
        result = real(plan, settled)
        action()
        return result

    monkeypatch.setattr(merge_mod, "merge", merge)


def _df03_status(cli, synth, *extra):
    code, out, err = cli(*scenario.args(synth, "--dry-run", "--json", *extra))
    assert code == 0, err
    return json.loads(out)["df03_status"]


def _embedded(path, experiment):
    header, rows = read_rows(path)
    z, exp = header.index("z_mu_00"), header.index("experiment_date")
    return sum(1 for r in rows if r[exp] == experiment and r[z] != "")


@pytest.fixture
def late_root(tmp_path):
    synth = scenario.merge_root(tmp_path)
    late = synth.latent_dir(scenario.MODEL) / f"morph_latents_{LATE}.csv"
    late.unlink()
    return synth


def _commit_late_file(synth):
    write_latent_file(synth.latent_dir(scenario.MODEL), LATE, synth.snips[LATE], latent_dim=4, nuisance=None, seed=9)


@pytest.mark.parametrize("extra", [(), ("--export-analysis-copies",)], ids=["df03", "with-copies"])
def test_a_latent_file_committed_after_the_merge_read_leaves_df03_out_of_date(cli, monkeypatch, late_root, extra):
    synth = late_root
    _after_merge(monkeypatch, lambda: _commit_late_file(synth))
    code, _, err = cli(*scenario.args(synth, *extra))
    assert code == 0, err
    monkeypatch.undo()
    df03 = synth.root / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.csv"
    assert _embedded(df03, LATE) == 0  # the merge read no file for it
    side = json.loads(df03.with_suffix(".json").read_text())
    assert LATE not in side["files"][df03.name]["built_from"]["latents"]
    assert not any(LATE in i["path"] for i in side["inputs"])
    assert LATE not in side["latent_files"]
    status = _df03_status(cli, synth, *extra)
    assert status["status"] == "out-of-date"
    assert f"latent file for {LATE} added" in status["reasons"]
    code, _, err = cli(*scenario.args(synth, "--overwrite", *extra))
    assert code == 0, err
    assert _embedded(df03, LATE) == len(synth.snips[LATE])
    assert _df03_status(cli, synth, *extra)["status"] == "current"
    if extra:
        copies = synth.data_root / "metadata" / "metadata_n_embeddings" / scenario.MODEL
        assert _embedded(copies / f"df03_{LATE}.csv", LATE) == len(synth.snips[LATE])


def test_the_analysis_copy_records_the_latent_file_it_read(cli, monkeypatch, late_root):
    synth = late_root
    _after_merge(monkeypatch, lambda: _commit_late_file(synth))
    assert cli(*scenario.args(synth, "--export-analysis-copies"))[0] == 0
    monkeypatch.undo()
    folder = synth.data_root / "metadata" / "metadata_n_embeddings" / scenario.MODEL
    side = json.loads((folder / "df03_copies.json").read_text())
    assert side["files"][f"df03_{LATE}.csv"]["built_from"]["latents"] == {}
    code, out, err = cli(*scenario.args(synth, "--export-analysis-copies", "--dry-run", "--json"))
    copy = next(o for o in json.loads(out)["outputs"] if o["kind"] == "analysis" and o["experiment"] == LATE)
    assert copy["status"] == "out-of-date", copy


def test_a_latent_file_changed_after_the_merge_read_leaves_df03_out_of_date(cli, monkeypatch, tmp_path):
    synth = scenario.merge_root(tmp_path)
    exp = "20231207"
    _after_merge(monkeypatch, lambda: write_latent_file(synth.latent_dir(scenario.MODEL), exp, synth.snips[exp],
                                                        latent_dim=4, nuisance=None, seed=77))
    assert cli(*scenario.args(synth))[0] == 0
    monkeypatch.undo()
    status = _df03_status(cli, synth)
    assert status["status"] == "out-of-date" and f"latent file for {exp} changed" in status["reasons"]


def test_a_df02_row_appended_after_the_merge_read_leaves_df03_out_of_date(cli, monkeypatch, tmp_path):
    synth = scenario.merge_root(tmp_path)
    _after_merge(monkeypatch, lambda: scenario.add_rows(synth, 1, latents=True, images=False))
    assert cli(*scenario.args(synth))[0] == 0
    monkeypatch.undo()
    df03 = synth.root / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.csv"
    rows_written = len(read_rows(df03)[1])
    assert rows_written == len(read_rows(synth.df02)[1]) - len(scenario.EXPERIMENTS)
    status = _df03_status(cli, synth)
    assert status["status"] == "out-of-date", status
    assert cli(*scenario.args(synth, "--overwrite"))[0] == 0
    assert len(read_rows(df03)[1]) == len(read_rows(synth.df02)[1])
    assert _df03_status(cli, synth)["status"] == "current"


def test_the_training_join_records_the_training_metadata_it_read(cli, monkeypatch, tmp_path):
    synth = scenario.merge_root(tmp_path)
    train = synth.root / "training_data" / "t1" / "embryo_metadata_df_train.csv"
    train.parent.mkdir(parents=True)
    header, rows = read_rows(synth.df02)
    train.write_text("\n".join(",".join(r) for r in [header, *rows[:5]]) + "\n")
    real = merge_mod.merge

    def merge(plan, settled):  # the training metadata is read at export: change it right after
        result = real(plan, settled)
        from morphseq_build06 import export as export_mod

        read = export_mod.read_text_table

        def read_then_change(path, **kw):
            table = read(path, **kw)
            if path == train:
                train.write_text("\n".join(",".join(r) for r in [header, *rows[:7]]) + "\n")
            return table

        monkeypatch.setattr(export_mod, "read_text_table", read_then_change)
        return result

    monkeypatch.setattr(merge_mod, "merge", merge)
    assert cli(*scenario.args(synth, "--train-name", "t1"))[0] == 0
    monkeypatch.undo()
    joined = train.with_name("embryo_metadata_with_embeddings.csv")
    assert len(read_rows(joined)[1]) == 5
    code, out, err = cli(*scenario.args(synth, "--train-name", "t1", "--dry-run", "--json"))
    training = next(o for o in json.loads(out)["outputs"] if o["kind"] == "training")
    assert training["status"] == "out-of-date", training
    assert cli(*scenario.args(synth, "--train-name", "t1", "--overwrite"))[0] == 0
    assert len(read_rows(joined)[1]) == 7
