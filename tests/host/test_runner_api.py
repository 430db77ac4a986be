"""The runner API: options declared once, checked the same way from Python and the CLI."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import attrs
import pytest

import morphseq_stages
from morphseq_build06.options import Build06Options
from morphseq_build06.testing import make_pipeline_root, write_latent_file
from morphseq_stages import UserError, get_host, run_stage
from morphseq_stages.options import add_arguments, describe, option, options_of, validate
from morphseq_stages.runner import SUMMARY_KEYS

from conftest import load_json_lines, tree_digest

MODEL = "20241107_ds_sweep01_optimum"


@pytest.fixture(scope="module")
def host():
    return get_host()


@pytest.fixture
def synth(tmp_path):
    s = make_pipeline_root(tmp_path, {"20231207": 3, "20240509_18ss": 2}, images=False)
    for exp, ids in s.snips.items():
        write_latent_file(s.latent_dir(MODEL), exp, ids)
    return s


def test_the_runner_names_are_exported():
    for name in ("get_host", "run_stage", "RunResult", "UserError"):
        assert name in morphseq_stages.__all__ and hasattr(morphseq_stages, name)


def test_a_runner_reads_the_stage_option_schema(host):
    schema = host.registry.stage("build06").options
    assert schema is Build06Options
    by_name = {o["name"]: o for o in describe(schema)}
    assert by_name["root"]["required"] is True and by_name["root"]["type"] == "path"
    assert by_name["batch_size"] == {**by_name["batch_size"], "type": "int", "default": 64, "minimum": 1}
    assert by_name["device"]["choices"] == ["cpu", "cuda", "auto"]
    assert by_name["experiments"]["type"] == "list[str]" and by_name["experiments"]["default"] is None
    json.dumps(describe(schema))  # a runner can ship it as JSON


def test_cli_defaults_come_from_the_schema(cli):
    with pytest.raises(SystemExit):
        cli("build06", "--help")
    out = cli.capsys.readouterr().out
    for o in options_of(Build06Options):
        if o.default not in (None, False):
            shown = ",".join(o.default) if isinstance(o.default, tuple) else o.default
            assert f"(default: {shown})" in " ".join(out.split()), o.name


def test_misspelled_key_is_refused_with_the_closest_key_and_nothing_written(host, synth, tmp_path):
    before = tree_digest(tmp_path)
    with pytest.raises(UserError, match=r"did you mean 'generate_missing_latents'\?"):
        run_stage(host, "build06", {"root": synth.root, "data_root": synth.data_root,
                                    "generate_missing_latent": True})
    assert tree_digest(tmp_path) == before


def test_bare_string_experiment_is_one_experiment(host, synth):
    result = run_stage(host, "build06", {"root": synth.root, "data_root": synth.data_root,
                                         "experiments": "20231207"}, dry_run=True)
    assert result.plan.as_dict()["selected_experiments"] == ["20231207"]  # df03 still reads every experiment


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("device", "gpu", "unknown --device 'gpu' (choose from cpu, cuda, auto)"),
        ("batch_size", "sixty", "--batch-size must be a whole number, got 'sixty'"),
        ("batch_size", 0, "--batch-size must be at least 1, got 0"),
        ("batch_size", True, "--batch-size must be a whole number, got True"),
        ("min_coverage", 2, "--min-coverage must be between 0 and 1, got 2.0"),
        ("overwrite", "maybe", "--overwrite must be true or false, got 'maybe'"),
        ("z_schema", "wide", "unknown --z-schema 'wide'"),
        ("experiments", {"a": 1}, "--experiments must be a list of names"),
    ],
)
def test_bad_values_are_refused_like_the_cli(host, synth, key, value, message):
    with pytest.raises(UserError) as info:
        run_stage(host, "build06", {"root": synth.root, "data_root": synth.data_root, key: value}, dry_run=True)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_and_python_give_the_same_message(host, synth, cli):
    code, _, err = cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--batch-size", "sixty")
    with pytest.raises(UserError) as info:
        run_stage(host, "build06", {"root": synth.root, "data_root": synth.data_root, "batch_size": "sixty"})
    assert code == 2 and err.strip().splitlines()[-1] == f"morphseq-stages: error: {info.value}"


def test_values_are_converted(host, synth):
    checked = validate(Build06Options, {"root": str(synth.root), "batch_size": "32", "min_coverage": "0.5",
                                        "overwrite": "yes", "experiments": [20231207, "x"]}, "build06")
    assert checked["root"] == synth.root and checked["batch_size"] == 32 and checked["min_coverage"] == 0.5
    assert checked["overwrite"] is True and checked["experiments"] == ("20231207", "x")
    assert checked["device"] == "auto" and checked["data_root"] is None  # defaults filled in


def test_missing_required_option(host):
    with pytest.raises(UserError, match="--root is required"):
        run_stage(host, "build06", {"data_root": "."})


def test_a_new_option_is_one_field(tmp_path):
    @attrs.frozen(kw_only=True)
    class Opts:
        level: str = option(type=str, default="low", choices=("low", "high"), group="g", help="how much")
        paths: tuple[str, ...] = option(type=list, default=(), help="some names")

    parser = argparse.ArgumentParser()
    add_arguments(parser, Opts)
    args = parser.parse_args(["--level", "high", "--paths", "a", "b"])
    assert validate(Opts, {k: v for k, v in vars(args).items() if v is not None}, "t") == {
        "level": "high", "paths": ("a", "b")}
    assert validate(Opts, {}, "t") == {"level": "low", "paths": ()}
    with pytest.raises(UserError, match="did you mean 'level'"):
        validate(Opts, {"levle": "x"}, "t")


# ---------------------------------------------------------------- the run summary


def test_run_result_carries_a_versioned_summary(host, synth, cli):
    result = run_stage(host, "build06", {"root": synth.root, "data_root": synth.data_root})
    s = result.summary
    assert set(SUMMARY_KEYS) <= set(s) and "text" not in s
    assert s["schema_version"] == 1 and s["exit_code"] == 0 == result.exit_code and s["run_id"] == result.run_id
    df03 = str(synth.df02.with_name("embryo_metadata_df03.csv"))
    assert df03 in s["written"] and s["sidecar"] == df03[:-4] + ".json" and s["sidecar"] in s["written"]
    assert set(s["timings_s"]) == {"plan", "generate", "merge", "export", "total"}
    assert result.outcome.text.startswith("df03: ")
    # the second run skips every output, and the CLI prints the same layout
    code, out, _ = cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--json",
                       "--log-format", "json")
    again = json.loads(out)
    assert code == 0 and again["written"] == [] and again["sidecar"] is None
    assert {k["path"] for k in again["skipped"]} >= {df03} and set(SUMMARY_KEYS) <= set(again)


def test_failed_run_with_json_prints_the_error_on_stdout(tmp_path, cli):
    log_file = tmp_path / "run.jsonl"
    code, out, err = cli("build06", "--root", tmp_path / "nope", "--data-root", tmp_path, "--json",
                         "--log-format", "json", "--log-file", log_file)
    assert code == 2
    doc = json.loads(out)
    assert doc["exit_code"] == 2 and doc["error"].startswith("pipeline root not found")
    assert err.strip().splitlines()[-1] == f"morphseq-stages: error: {doc['error']}"
    failed = [e for e in load_json_lines(log_file.read_text()) if e["event"] == "run.failed"]
    assert failed and failed[0]["exit_code"] == 2 and failed[0]["run_id"] == doc["run_id"]
    assert "_file_only" not in failed[0]


def test_library_use_writes_nothing_on_stdout(synth):
    # a fresh interpreter in which nobody configured logging; one experiment lacks its file
    synth.latent_dir(MODEL).joinpath("morph_latents_20240509_18ss.csv").unlink()
    code = (f"from morphseq_stages import get_host, run_stage\n"
            f"r = run_stage(get_host(), 'build06', {{'root': {str(synth.root)!r}, 'data_root': {str(synth.data_root)!r}}})\n"
            f"assert r.exit_code == 0\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    events = load_json_lines(proc.stderr)
    assert events and {e["level"] for e in events} <= {"warning", "error"}
    assert any("no latent file for 20240509_18ss" in e.get("message", "") for e in events)


def test_quiet_keeps_warnings_on_stderr_and_everything_in_the_log_file(synth, tmp_path, cli):
    synth.latent_dir(MODEL).joinpath("morph_latents_20240509_18ss.csv").unlink()
    log_file = tmp_path / "run.jsonl"
    code, out, err = cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--quiet",
                         "--log-format", "json", "--log-file", log_file)
    assert code == 0 and out.startswith("df03: ")
    on_stderr = load_json_lines(err)
    assert on_stderr and {e["level"] for e in on_stderr} == {"warning"}
    in_file = {e["event"] for e in load_json_lines(log_file.read_text())}
    assert {"plan.summary", "coverage", "write.staged", "outputs.committed", "build06.summary", "build06.warning"} <= in_file


def test_progress_events_reach_the_log_file_under_a_bar(tmp_path, monkeypatch, capsys):
    from morphseq_stages import logs
    from morphseq_stages.progress import Progress

    log_file = tmp_path / "run.jsonl"
    logs.configure("console", str(log_file))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = Progress(total=4, label="embedding x")
    bar.advance(2)
    bar.advance(2)
    bar.close()
    err = capsys.readouterr().err
    assert "embedding x [" in err and "progress" not in err
    events = [e for e in load_json_lines(log_file.read_text()) if e["event"] == "progress"]
    assert events and events[-1]["done"] == 4 and events[-1]["total"] == 4
