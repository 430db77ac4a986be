"""The runner API: options declared once, checked the same way from Python and the CLI."""

from __future__ import annotations

import argparse
import json

import attrs
import pytest

import morphseq_stages
from morphseq_build06.options import Build06Options
from morphseq_build06.testing import make_pipeline_root, write_latent_file
from morphseq_stages import UserError, get_host, run_stage
from morphseq_stages.options import add_arguments, describe, option, options_of, validate

from conftest import tree_digest

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
    assert [e["experiment"] for e in result.plan.as_dict()["experiments"]] == ["20231207"]


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
