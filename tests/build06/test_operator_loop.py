"""Features that work alone, combined the way an operator and a notebook user combine them
(issue #16 items 4-7 and 9): the training join, --generate-only, a misspelt model, the
Python dry run, analysis copies left behind, empty paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphseq_build06 import api
from morphseq_build06.testing import make_pipeline_root, write_latent_file
from morphseq_stages import UserError, get_host, run_stage

from conftest import read_rows, tree_digest

MODEL = "tiny"
EXPS = {"20231207": 4, "20240509_18ss": 3, "20250612_30hpf_ctrl_atf6": 2}


@pytest.fixture
def synth(tmp_path):
    s = make_pipeline_root(tmp_path, EXPS, seed=4, size=(64, 144))
    for i, exp in enumerate(EXPS):
        write_latent_file(s.latent_dir(MODEL), exp, s.snips[exp], latent_dim=6, seed=i)
    return s


def build06(cli, s, *extra):
    return cli("build06", "--root", s.root, "--data-root", s.data_root, "--model-name", MODEL,
               "--log-format", "json", *extra)


def plain_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if not line.startswith("{")]


def df03(s) -> Path:
    return s.df02.with_name("embryo_metadata_df03.csv")


def training_set(s, experiments=("20231207",)) -> Path:
    """A training set holding only the rows of ``experiments``."""
    lines = s.df02.read_text().splitlines()
    folder = s.root / "training_data" / "t1"
    folder.mkdir(parents=True)
    path = folder / "embryo_metadata_df_train.csv"
    path.write_text("\n".join([lines[0], *[ln for ln in lines[1:] if ln.split(",")[4] in experiments]]) + "\n")
    return folder / "embryo_metadata_with_embeddings.csv"


def test_training_join_stays_current_when_another_experiments_latents_change(synth, cli):
    join = training_set(synth)
    code, _, err = build06(cli, synth, "--train-name", "t1")
    assert code == 0, err
    before = tree_digest(join.parent)
    stamp = join.stat().st_mtime_ns
    # a latent file changes (re-embedded elsewhere) for an experiment the training set does not hold
    write_latent_file(synth.latent_dir(MODEL), "20240509_18ss", synth.snips["20240509_18ss"], latent_dim=6, seed=9)
    code, out, err = build06(cli, synth, "--train-name", "t1", "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert not any("training join" in w for w in plan["warnings"]), plan["warnings"]
    train = next(o for o in plan["outputs"] if o["path"] == str(join))
    assert train["action"] == "skip" and train["status"] == "current", train
    code, out, err = build06(cli, synth, "--train-name", "t1", "--overwrite", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert str(join) not in summary["written"] and str(df03(synth)) in summary["written"]
    assert tree_digest(join.parent) == before and join.stat().st_mtime_ns == stamp
    # a latent file of an experiment it holds does make it out of date
    write_latent_file(synth.latent_dir(MODEL), "20231207", synth.snips["20231207"], latent_dim=6, seed=8)
    code, out, err = build06(cli, synth, "--train-name", "t1", "--dry-run", "--json")
    train = next(o for o in json.loads(out)["outputs"] if o["path"] == str(join))
    assert train["status"] == "out-of-date" and "latent file for 20231207 changed" in train["status_reasons"], train


def test_generate_only_does_not_warn_about_df03(synth, cli):
    (synth.latent_dir(MODEL) / "morph_latents_20250612_30hpf_ctrl_atf6.csv").unlink()
    code, out, err = build06(cli, synth, "--generate-only", "--experiments", "20231207")
    assert code == 0, err
    text = "\n".join(plain_lines(out + err))
    assert "df03 will lack" not in text and "20250612_30hpf_ctrl_atf6" not in text, text
    # a plain run still says what df03 lacks
    code, out, err = build06(cli, synth, "--dry-run")
    assert "no latent file for 20250612_30hpf_ctrl_atf6" in out and "df03 will lack their embeddings" in out


def test_api_model_name_must_be_text(synth):
    before = tree_digest(synth.root.parent)
    for call in (lambda: api.build_df03_with_embeddings(synth.root, synth.data_root, model_name=5),
                 lambda: api.ensure_latents_for_experiments(synth.data_root, 5, "20231207"),
                 lambda: api.resolve_model_dir(synth.data_root, 5),
                 lambda: api.export_df03_copies_by_experiment(df03(synth), synth.data_root, 5)):
        with pytest.raises(UserError, match="model_name must be text .* got 5$"):
            call()
    assert tree_digest(synth.root.parent) == before


def test_python_dry_run_returns_the_plan(synth, capsys):
    before = tree_digest(synth.root.parent)
    plan = api.build_df03_with_embeddings(synth.root, synth.data_root, model_name=MODEL, dry_run=True)
    assert isinstance(plan, dict) and plan["df03"] == str(df03(synth))
    assert plan["df03_status"]["status"] == "new" and {e["experiment"] for e in plan["experiments"]} == set(EXPS)
    assert json.loads(json.dumps(plan)) == plan  # plain JSON, as --dry-run --json prints it
    assert repr(plan).startswith("Build06 plan: ") and "df03: not there yet -> write" in repr(plan)
    print(plan)
    assert "Build06 plan: " in capsys.readouterr().out
    result = run_stage(get_host(), "build06", {"root": synth.root, "data_root": synth.data_root,
                                               "model_name": MODEL, "dry_run": True})
    assert result.dry_run and result.plan.as_dict()["df03"] == str(df03(synth))
    with pytest.raises(UserError, match="dry_run must be True or False"):
        run_stage(get_host(), "build06", {"root": synth.root, "data_root": synth.data_root, "dry_run": "yes"})
    assert tree_digest(synth.root.parent) == before


def test_stale_analysis_copies_are_mentioned_on_every_run(synth, cli):
    code, _, err = build06(cli, synth, "--export-analysis-copies")
    assert code == 0, err
    write_latent_file(synth.latent_dir(MODEL), "20240509_18ss", synth.snips["20240509_18ss"], latent_dim=6, seed=7)
    for extra in (("--overwrite",), ()):  # the run that updates df03, and every later one
        code, out, err = build06(cli, synth, *extra)
        assert code == 0, err
        notice = [ln for ln in out.splitlines() if ln.startswith("warning: 1 analysis copy is out of date")]
        assert len(notice) == 1 and "(20240509_18ss)" in notice[0], out
        assert "--export-analysis-copies --overwrite" in notice[0]
    code, out, err = build06(cli, synth, "--strict")
    assert code == 3  # a skipped out-of-date output is a --strict error, as everywhere
    code, out, err = build06(cli, synth, "--export-analysis-copies", "--overwrite")
    assert code == 0, err
    code, out, err = build06(cli, synth)
    assert "analysis cop" not in out, out


def test_a_stale_training_join_is_mentioned_on_every_run(synth, cli):
    """As analysis copies: a run without --train-name still says which training join it
    wrote no longer matches its inputs; another experiment's latent file changes nothing."""
    join = training_set(synth)
    code, _, err = build06(cli, synth, "--train-name", "t1")
    assert code == 0, err
    write_latent_file(synth.latent_dir(MODEL), "20240509_18ss", synth.snips["20240509_18ss"], latent_dim=6, seed=9)
    code, out, err = build06(cli, synth, "--overwrite")
    assert code == 0 and "training join" not in out, out
    write_latent_file(synth.latent_dir(MODEL), "20231207", synth.snips["20231207"], latent_dim=6, seed=8)
    for extra in (("--overwrite",), ()):  # the run that updates df03, and every later one
        code, out, err = build06(cli, synth, *extra)
        assert code == 0, err
        notice = [ln for ln in out.splitlines() if ln.startswith(f"warning: training join {join} is out of date")]
        assert len(notice) == 1 and "latent file for 20231207 changed" in notice[0], out
        assert notice[0].endswith("pass --train-name t1 --overwrite to update it")
    code, out, err = build06(cli, synth, "--train-name", "t1", "--overwrite")
    assert code == 0, err
    code, out, err = build06(cli, synth)
    assert "training join" not in out, out


def test_copies_of_a_dataframe_with_an_empty_experiment_date(synth, cli):
    code, _, err = build06(cli, synth)
    assert code == 0, err
    frame = pd.read_csv(df03(synth))
    frame.loc[1, "experiment_date"] = np.nan  # the cell left empty: pandas reads it as NaN (the column as float)
    written = api.export_df03_copies_by_experiment(frame, synth.data_root, MODEL)
    assert sorted(p.name for p in written) == [f"df03_{e}.csv" for e in sorted(EXPS)]
    folder = written[0].parent
    assert not (folder / "df03_nan.csv").exists() and not list(folder.glob("*.0.csv"))
    first = pd.read_csv(folder / "df03_20231207.csv")
    assert len(first) == EXPS["20231207"] and first["snip_id"].iloc[1] == frame["snip_id"].iloc[1]


@pytest.mark.parametrize("key", ["latents_root", "data_root", "model_dir"])
def test_an_empty_path_is_refused(synth, key):
    before = tree_digest(synth.root.parent)
    options = {"root": synth.root, "data_root": synth.data_root, "model_name": MODEL, key: ""}
    with pytest.raises(UserError, match=r"is empty: pass a folder"):
        run_stage(get_host(), "build06", options, dry_run=True)
    with pytest.raises(UserError, match=r"is empty: pass a folder"):
        api.build_df03_with_embeddings(**{**options, "model_name": MODEL})
    assert tree_digest(synth.root.parent) == before


def test_an_empty_latents_root_on_the_command_line(synth, cli):
    code, _, err = build06(cli, synth, "--latents-root", "")
    assert code == 2 and plain_lines(err) == ["morphseq-stages: error: --latents-root is empty: pass a folder "
                                              "(an empty path would mean the current folder)"], err




def test_an_error_with_json_to_a_closed_stdout_is_still_one_line(synth):
    # `morphseq-stages build06 ... --json | head`: the error's JSON has no reader; its line on stderr stays
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "morphseq_stages", "build06", "--root", str(synth.root),
                             "--data-root", str(synth.data_root), "--experiments", "nope", "--dry-run", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 2, err
    plain = plain_lines(err)
    assert len(plain) == 1 and plain[0].startswith("morphseq-stages: error: --experiments nope"), err


def test_a_dry_run_json_to_a_closed_stdout_exits_141_with_one_line(synth):
    # `morphseq-stages build06 ... --dry-run --json | head -c 100` on every Python (3.10, 3.12, 3.13 met the
    # closed pipe only in the interpreter's flush at exit: exit 120 and a traceback)
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "morphseq_stages", "build06", "--root", str(synth.root),
                             "--data-root", str(synth.data_root), "--model-name", MODEL, "--dry-run", "--json",
                             "--log-format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 141, err
    assert plain_lines(err) == ["morphseq-stages: standard output closed by its reader; outputs are either "
                                "unchanged or complete"]


def test_the_api_df03_is_the_stages_own(synth, cli):
    code, _, err = build06(cli, synth, "--formats", "csv,parquet")
    assert code == 0, err
    listing = df03(synth).with_name("embryo_metadata_df03_unembedded.csv")
    # the store changes: one experiment re-embedded elsewhere, one snip without a latent row
    write_latent_file(synth.latent_dir(MODEL), "20240509_18ss", synth.snips["20240509_18ss"][1:], latent_dim=6, seed=5)
    found = api.ensure_latents_for_experiments(synth.data_root, MODEL, list(EXPS))
    z = api.load_latents(found)
    out = api.merge_df02_with_embeddings(synth.root, z, overwrite=True)
    assert out == df03(synth)
    sidecar = json.loads(df03(synth).with_suffix(".json").read_text())
    import hashlib

    assert sidecar["files"][out.name]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert synth.snips["20240509_18ss"][0] in listing.read_text()  # the unembedded list moved with df03
    # the user's natural next step: the one-shot build finds df03 current (no OutputExists)
    assert api.build_df03_with_embeddings(synth.root, synth.data_root, model_name=MODEL) == out
    code, text, err = build06(cli, synth, "--dry-run", "--json")
    plan = json.loads(text)
    assert plan["df03_status"]["status"] == "current", plan["df03_status"]
    # the Parquet copy beside df03 was rewritten with it: current, and holding df03's values
    parquet = df03(synth).with_suffix(".parquet")
    assert not any(w.startswith(str(parquet)) for w in plan["warnings"]), plan["warnings"]
    text = pd.read_csv(out)
    z = [c for c in text.columns if c.startswith("z_mu_")]
    assert np.array_equal(pd.read_parquet(parquet)[z].to_numpy(), text[z].to_numpy(), equal_nan=True)
    # and it is the CLI's df03, byte for byte
    before = out.read_bytes()
    code, _, err = build06(cli, synth, "--overwrite", "--formats", "csv,parquet")
    assert code == 0 and out.read_bytes() == before, err


def test_the_api_refuses_to_pass_another_table_off_as_df03(synth, cli):
    code, _, err = build06(cli, synth)
    assert code == 0, err
    before = tree_digest(synth.root.parent)
    z = api.load_latents(api.ensure_latents_for_experiments(synth.data_root, MODEL, list(EXPS)))
    with pytest.raises(UserError, match="this table was changed since load_latents made it; pass out_name="):
        api.merge_df02_with_embeddings(synth.root, z[z["snip_id"] != synth.snips["20231207"][0]], overwrite=True)
    some = api.load_latents(api.ensure_latents_for_experiments(synth.data_root, MODEL, ["20231207"]))
    with pytest.raises(UserError, match="this table lacks the latent file.s. of 20240509_18ss, 20250612"):
        api.merge_df02_with_embeddings(synth.root, some, overwrite=True)
    hand = pd.DataFrame({"snip_id": list(synth.snips["20231207"]), "z_mu_00": 1.0})
    with pytest.raises(UserError, match="this table was not made by load_latents"):
        api.merge_df02_with_embeddings(synth.root, hand, overwrite=True)
    assert tree_digest(synth.root.parent) == before
    mine = api.merge_df02_with_embeddings(synth.root, hand, out_name="mine.csv")
    assert mine.name == "mine.csv" and not mine.with_suffix(".json").exists()


def test_the_demo_without_torch_is_one_line(tmp_path):
    import subprocess
    import sys

    code = ("import sys\nsys.modules['torch'] = None  # as if torch were not installed\n"
            "from morphseq_stages.cli import main\n"
            f"sys.exit(main(['demo', {str(tmp_path / 'demo')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    plain = [ln for ln in proc.stderr.splitlines() if not ln.startswith("{")]
    assert proc.returncode == 2 and len(plain) == 1, proc.stderr
    assert "the demo needs torch" in plain[0] and "pip install torch==2.13.0" in plain[0], plain
    assert not (tmp_path / "demo").exists()  # nothing laid out


def _statuses(cli, synth, *extra):
    code, text, err = build06(cli, synth, "--dry-run", "--json", *extra)
    assert code == 0, err
    return {o["path"]: o["status"] for o in json.loads(text)["outputs"]}


def test_the_api_training_join_and_copies_are_the_stages_own(synth, cli):
    """Issue #16 item 2: what the step functions write from a latent store's table (and a
    current df03) is written by the stage's export, with its sidecar: the CLI's next run
    finds it current, where it used to call it "not written by this tool"."""
    train = synth.root / "training_data" / "t1" / "embryo_metadata_df_train.csv"
    train.parent.mkdir(parents=True)
    lines = synth.df02.read_bytes().split(b"\n")
    train.write_bytes(b"\n".join(lines[:4]) + b"\n")
    z = api.load_latents(api.ensure_latents_for_experiments(synth.data_root, MODEL, list(EXPS)))
    out = api.merge_df02_with_embeddings(synth.root, z)
    joined = api.merge_train_with_embeddings(synth.root, "t1", z)
    copies = api.export_df03_copies_by_experiment(out, synth.data_root, MODEL)
    assert [p.name for p in copies] == [f"df03_{e}.csv" for e in EXPS]
    assert joined.with_suffix(".json").is_file() and (copies[0].parent / "df03_copies.json").is_file()
    status = _statuses(cli, synth, "--train-name", "t1", "--export-analysis-copies")
    assert status[str(joined)] == "current" and all(status[str(p)] == "current" for p in copies), status
    # and the bytes are the CLI's: its --overwrite run rewrites nothing
    before = tree_digest(synth.root, synth.data_root)
    code, _, err = build06(cli, synth, "--train-name", "t1", "--export-analysis-copies")
    assert code == 0, err
    assert tree_digest(synth.root, synth.data_root) == before
    # a second call finds them current; a table of the caller's own is joined as it is, without a record
    assert api.merge_train_with_embeddings(synth.root, "t1", z) == joined
    assert api.export_df03_copies_by_experiment(out, synth.data_root, MODEL) == copies
    mine = z.copy()
    mine["z_mu_00"] = 0.5
    api.merge_train_with_embeddings(synth.root, "t1", mine, overwrite=True)
    assert _statuses(cli, synth, "--train-name", "t1")[str(joined)] == "foreign"


def test_the_api_keeps_a_training_join_the_stage_would_not_write_now(synth, cli):
    train = synth.root / "training_data" / "t1" / "embryo_metadata_df_train.csv"
    train.parent.mkdir(parents=True)
    train.write_bytes(b"\n".join(synth.df02.read_bytes().split(b"\n")[:4]) + b"\n")
    z = api.load_latents(api.ensure_latents_for_experiments(synth.data_root, MODEL, list(EXPS)))
    joined = api.merge_train_with_embeddings(synth.root, "t1", z)
    with open(train, "ab") as fh:  # the training set gains a row: the join is out of date
        fh.write(synth.df02.read_bytes().split(b"\n")[5] + b"\n")
    before = joined.read_bytes()
    with pytest.raises(api.OutputExists, match=f"^training join {joined} is out of date: .*training "
                                               "metadata changed: kept; pass overwrite=True to replace it$"):
        api.merge_train_with_embeddings(synth.root, "t1", z)
    assert joined.read_bytes() == before
    assert api.merge_train_with_embeddings(synth.root, "t1", z, overwrite=True) == joined
    assert len(joined.read_bytes().split(b"\n")) == len(before.split(b"\n")) + 1


def test_the_api_training_join_needs_only_the_training_sets_latent_files(synth, cli):
    train = synth.root / "training_data" / "t1" / "embryo_metadata_df_train.csv"
    train.parent.mkdir(parents=True)
    train.write_bytes(b"\n".join(synth.df02.read_bytes().split(b"\n")[:4]) + b"\n")  # rows of 20231207 only
    some = api.load_latents(api.ensure_latents_for_experiments(synth.data_root, MODEL, ["20231207"]))
    joined = api.merge_train_with_embeddings(synth.root, "t1", some)
    assert _statuses(cli, synth, "--train-name", "t1")[str(joined)] == "current"
    other = api.load_latents(api.ensure_latents_for_experiments(synth.data_root, MODEL, ["20240509_18ss"]))
    api.merge_train_with_embeddings(synth.root, "t1", other, overwrite=True)  # lacks 20231207: joined as it is
    assert _statuses(cli, synth, "--train-name", "t1")[str(joined)] == "foreign"
    assert not any(r[-1] for r in read_rows(joined)[1])  # no embedding of 20231207 there


def test_the_step_functions_rewrite_the_typed_copies_beside_what_they_write(synth, cli):
    """df03 (with its report), a training join and analysis copies written with --formats
    parquet, then rewritten by the step functions from a store whose latent file changed:
    their Parquet copies and the report are rewritten with them (they used to be left
    behind without a word), and the CLI's next run finds every file current."""
    pytest.importorskip("plotly")
    joined = training_set(synth, tuple(EXPS))
    flags = ("--train-name", "t1", "--export-analysis-copies", "--formats", "csv,parquet", "--report-color-by",
             "genotype")
    code, _, err = build06(cli, synth, *flags)
    assert code == 0, err
    report = df03(synth).with_name("embryo_metadata_df03_report.html")
    drawn = report.read_bytes()
    write_latent_file(synth.latent_dir(MODEL), "20231207", synth.snips["20231207"], latent_dim=6, seed=9)
    z = api.load_latents(api.ensure_latents_for_experiments(synth.data_root, MODEL, list(EXPS)))
    out = api.merge_df02_with_embeddings(synth.root, z, overwrite=True)
    api.merge_train_with_embeddings(synth.root, "t1", z, overwrite=True)
    copies = api.export_df03_copies_by_experiment(out, synth.data_root, MODEL, overwrite=True)
    for table in [out, joined, *copies]:
        text = pd.read_csv(table)
        z = [c for c in text.columns if c.startswith("z_mu_")]
        typed = pd.read_parquet(table.with_suffix(".parquet"))[z].to_numpy()
        assert np.array_equal(typed, text[z].to_numpy(), equal_nan=True), table
    assert report.read_bytes() != drawn  # df03's report, drawn again as it was (coloured by genotype)
    status = _statuses(cli, synth, *flags)
    assert status[str(report)] == "current" and set(status.values()) == {"current"}, status


def test_a_table_of_your_own_says_what_it_leaves_behind(synth, cli):
    """A training join and analysis copies replaced from a table of the caller's own: their
    Parquet copies (made from what they replaced) are named, as is the stage's record."""
    from structlog.testing import capture_logs

    joined = training_set(synth, tuple(EXPS))
    code, _, err = build06(cli, synth, "--train-name", "t1", "--export-analysis-copies", "--formats", "csv,parquet")
    assert code == 0, err
    z = api.load_latents(api.ensure_latents_for_experiments(synth.data_root, MODEL, ["20231207"]))
    frame = pd.read_csv(df03(synth))
    with capture_logs() as logs:
        api.merge_train_with_embeddings(synth.root, "t1", z, overwrite=True)  # lacks two experiments' files
        copies = api.export_df03_copies_by_experiment(frame, synth.data_root, MODEL, overwrite=True)
    left = {e["path"] for e in logs if e["event"] == "own_table.copy_left_behind"}
    assert left == {str(p.with_suffix(".parquet")) for p in [joined, *copies]}, logs
    replaced = {e["path"] for e in logs if e["event"] == "own_table.replaced_stage_output"}
    assert replaced == {str(p) for p in [joined, *copies]}
    assert all(e["log_level"] == "warning" for e in logs if e["event"].startswith("own_table."))
    with capture_logs() as logs:  # the same table again: the files hold it already, nothing is said
        api.merge_train_with_embeddings(synth.root, "t1", z, overwrite=True)
    assert not any(e["event"].startswith("own_table.") for e in logs), logs
    # nor may a file of one's own take the place of the stage's own files beside df03
    for name in ("embryo_metadata_df03.json", "embryo_metadata_df03.parquet", "embryo_metadata_df03_unembedded.csv",
                 "Embryo_Metadata_DF03.csv", "EMBRYO_METADATA_DF02.csv"):
        with pytest.raises(UserError, match=f"out_name must name a .csv file of your own beside df02, not '{name}'"):
            api.merge_df02_with_embeddings(synth.root, z, overwrite=True, out_name=name)


def test_the_advice_to_update_an_output_names_the_flags_for_what_is_beside_it(synth, cli):
    pytest.importorskip("plotly")
    joined = training_set(synth)
    code, _, err = build06(cli, synth, "--train-name", "t1", "--formats", "csv,parquet", "--report")
    assert code == 0, err
    write_latent_file(synth.latent_dir(MODEL), "20231207", synth.snips["20231207"], latent_dim=6, seed=8)
    code, out, err = build06(cli, synth)
    assert code == 0, err
    warned = [ln for ln in out.splitlines() if ln.startswith("warning: ")]
    assert any(ln.startswith(f"warning: df03 {df03(synth)} is out of date") and
               ln.endswith("(with --formats csv,parquet --report, for the copies beside it)") for ln in warned), warned
    assert any(ln.startswith(f"warning: training join {joined} is out of date") and
               ln.endswith("(with --formats csv,parquet, for the copies beside it)") for ln in warned), warned


def test_repeated_df02_rows_are_said(synth, cli):
    lines = synth.df02.read_bytes().split(b"\n")
    synth.df02.write_bytes(b"\n".join([*lines[:-1], lines[1], b""]))  # the first row again
    code, out, err = build06(cli, synth, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rows"]["df03"] == len(lines) - 1  # kept, as df02 has it
    assert any(w.startswith("2 df02 row(s) in ") and f"(e.g. {synth.snips['20231207'][0]!r})" in w
               for w in summary["warnings"]), summary["warnings"]
    code, _, _ = build06(cli, synth, "--strict", "--overwrite")
    assert code == 3
