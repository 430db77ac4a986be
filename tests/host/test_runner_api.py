"""The runner API: options declared once, checked the same way from Python and the CLI (on conftest's echo stage)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import morphseq_stages
from morphseq_stages import UserError, get_host, run_stage
from morphseq_stages.options import add_arguments, describe, option, options_of, validate
from morphseq_stages.runner import SUMMARY_KEYS

from conftest import (
    EchoOptions,
    FakePlugin,
    load_json_lines,
    make_echo_root,
    needs_torch,
    tree_digest,
)

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def host():
    return get_host(plugins=[("fakes", FakePlugin())], load_entry_points=False)


@pytest.fixture
def root(tmp_path):
    return make_echo_root(tmp_path / "root")


def test_the_runner_names_are_exported():
    for name in ("get_host", "run_stage", "RunResult", "UserError"):
        assert name in morphseq_stages.__all__ and hasattr(morphseq_stages, name)


def test_a_runner_reads_the_stage_option_schema(host):
    schema = host.registry.stage("echo").options
    assert schema is EchoOptions
    by_name = {o["name"]: o for o in describe(schema)}
    assert by_name["root"]["required"] is True and by_name["root"]["type"] == "path"
    assert by_name["batch_size"] == {**by_name["batch_size"], "type": "int", "default": 2, "minimum": 1}
    assert by_name["level"]["choices"] == ["low", "high"]
    assert by_name["names"]["type"] == "list[str]" and by_name["names"]["default"] is None
    json.dumps(describe(schema))  # a runner can ship it as JSON


def test_cli_defaults_come_from_the_schema(cli, fake_plugin):
    with pytest.raises(SystemExit):
        cli("echo", "--help")
    out = cli.capsys.readouterr().out
    for o in options_of(EchoOptions):
        if o.default not in (None, False):
            shown = ",".join(o.default) if isinstance(o.default, tuple) else o.default
            assert f"(default: {shown})" in " ".join(out.split()), o.name


def test_misspelled_key_is_refused_with_the_closest_key_and_nothing_written(host, root, tmp_path):
    before = tree_digest(tmp_path)
    with pytest.raises(UserError, match=r"did you mean 'batch_size'\?"):
        run_stage(host, "echo", {"root": root, "batch_sise": 3})
    assert tree_digest(tmp_path) == before


def test_bare_string_list_option_is_one_value(host, root):
    result = run_stage(host, "echo", {"root": root, "names": "img1.png"}, dry_run=True)
    assert result.plan.as_dict()["images"] == ["img1.png"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("level", "mid", "unknown --level 'mid' (choose from low, high)"),
        ("batch_size", "sixty", "--batch-size must be a whole number, got 'sixty'"),
        ("batch_size", 0, "--batch-size must be at least 1, got 0"),
        ("batch_size", True, "--batch-size must be a whole number, got True"),
        ("ratio", 2, "--ratio must be between 0 and 1, got 2.0"),
        ("overwrite", "maybe", "--overwrite must be true or false, got 'maybe'"),
        ("names", {"a": 1}, "--names must be a list of names"),
    ],
)
def test_bad_values_are_refused_like_the_cli(host, root, key, value, message):
    with pytest.raises(UserError) as info:
        run_stage(host, "echo", {"root": root, key: value}, dry_run=True)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_and_python_give_the_same_message(host, root, cli, fake_plugin):
    code, _, err = cli("echo", "--root", root, "--batch-size", "sixty")
    with pytest.raises(UserError) as info:
        run_stage(host, "echo", {"root": root, "batch_size": "sixty"})
    assert code == 2 and err.strip().splitlines()[-1] == f"morphseq-stages: error: {info.value}"


def test_values_are_converted(host, root):
    checked = validate(EchoOptions, {"root": str(root), "batch_size": "32", "ratio": "0.5",
                                     "overwrite": "yes", "names": [20231207, "x"]}, "echo")
    assert checked["root"] == root and checked["batch_size"] == 32 and checked["ratio"] == 0.5
    assert checked["overwrite"] is True and checked["names"] == ("20231207", "x")
    assert checked["level"] == "low" and checked["model_name"] is None  # defaults filled in


def test_missing_required_option(host):
    with pytest.raises(UserError, match="--root is required"):
        run_stage(host, "echo", {"level": "high"})


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


@needs_torch
def test_run_result_carries_a_versioned_summary(host, root, cli, fake_plugin):
    result = run_stage(host, "echo", {"root": root})
    s = result.summary
    assert set(SUMMARY_KEYS) <= set(s) and "text" not in s
    assert s["schema_version"] == 1 and s["exit_code"] == 0 == result.exit_code and s["run_id"] == result.run_id
    assert s["written"] == [str(root / "out" / "echo.json")] and s["sidecar"] is None
    assert set(s["timings_s"]) == {"plan", "generate", "merge", "export", "total"}
    assert result.outcome.text == f"echo: {root / 'out' / 'echo.json'}"
    # the CLI prints the same layout
    code, out, _ = cli("echo", "--root", root, "--json", "--log-format", "json")
    again = json.loads(out)
    assert code == 0 and set(again) == set(s) and again["written"] == s["written"] and again["run_id"] != s["run_id"]


def test_failed_run_with_json_prints_the_error_on_stdout(tmp_path, cli, fake_plugin):
    log_file = tmp_path / "run.jsonl"
    code, out, err = cli("echo", "--root", tmp_path / "nope", "--json", "--log-format", "json", "--log-file", log_file)
    assert code == 2
    doc = json.loads(out)
    assert doc["exit_code"] == 2 and doc["error"].startswith("echo root not found")
    assert err.strip().splitlines()[-1] == f"morphseq-stages: error: {doc['error']}"
    failed = [e for e in load_json_lines(log_file.read_text()) if e["event"] == "run.failed"]
    assert failed and failed[0]["exit_code"] == 2 and failed[0]["run_id"] == doc["run_id"]
    assert "_file_only" not in failed[0]


@needs_torch
def test_library_use_writes_nothing_on_stdout(root):
    # a fresh interpreter in which nobody configured logging; one image asked for is missing
    code = (f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nfrom conftest import FakePlugin\n"
            f"from morphseq_stages import get_host, run_stage\n"
            f"host = get_host(plugins=[('fakes', FakePlugin())], load_entry_points=False)\n"
            f"r = run_stage(host, 'echo', {{'root': {str(root)!r}, 'names': ['img0.png', 'img7.png']}})\n"
            f"assert r.exit_code == 0\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    events = load_json_lines(proc.stderr)
    assert events and {e["level"] for e in events} <= {"warning", "error"}
    assert any("no image named img7.png" in e.get("message", "") for e in events)


@needs_torch
def test_quiet_keeps_warnings_on_stderr_and_everything_in_the_log_file(root, tmp_path, cli, fake_plugin):
    log_file = tmp_path / "run.jsonl"
    code, out, err = cli("echo", "--root", root, "--names", "img0.png", "img7.png", "--quiet",
                         "--log-format", "json", "--log-file", log_file)
    assert code == 0 and out.startswith("echo: ")
    on_stderr = load_json_lines(err)
    assert on_stderr and {e["level"] for e in on_stderr} == {"warning"}
    in_file = {e["event"] for e in load_json_lines(log_file.read_text())}
    assert {"echo.warning", "outputs.committed", "echo.summary"} <= in_file


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
