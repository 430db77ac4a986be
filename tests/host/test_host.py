"""The plugin host: discovery, failures, blocking, registration rules, phase hooks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from morphseq_build06.testing import make_pipeline_root, write_latent_file
from morphseq_stages import EmbedderSpec, Stage, StageOutcome, hookimpl, hookspecs
from morphseq_stages.errors import UserError
from morphseq_stages.manager import get_host
from morphseq_stages.runner import run_stage

from conftest import load_json_lines, run_without_torch

ROOT = Path(__file__).resolve().parents[2]


def install_fake_distribution(tmp_path: Path, monkeypatch, name: str, entry_points: str, modules: dict[str, str]) -> None:
    """A distribution on sys.path (dist-info + modules), as pip would leave it."""
    site = tmp_path / "site"
    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for mod, src in modules.items():
        (site / f"{mod}.py").write_text(textwrap.dedent(src))
    monkeypatch.syspath_prepend(str(site))


def test_list_shows_stages_and_embedders_with_their_distribution(cli):
    code, out, _ = cli("list", "--json", "--log-format", "json")
    assert code == 0
    rows = {(r["kind"], r["name"]): r for r in json.loads(out)["plugins"]}
    assert rows[("stage", "build06")]["distribution"] == "morphseq-stages"
    assert rows[("embedder", "legacy")]["version"]
    code, out, _ = cli("list")
    assert "build06" in out and "legacy" in out and "morphseq-stages" in out


def test_broken_plugin_is_reported_and_the_rest_still_works(tmp_path, cli, monkeypatch):
    install_fake_distribution(
        tmp_path, monkeypatch, "broken-embedder",
        "[morphseq_stages.embedders]\nbroken = broken_embedder_mod\n",
        {"broken_embedder_mod": "raise ImportError('needs libfoo 9')\n"},
    )
    code, out, err = cli("list", "--json", "--log-format", "json")
    assert code == 0
    failed = json.loads(out)["failed"]
    assert failed == [{"plugin": "broken", "group": "morphseq_stages.embedders", "distribution": "broken-embedder",
                       "error": "ImportError: needs libfoo 9"}]
    assert any(e["event"] == "plugin.load_failed" and e["plugin"] == "broken" for e in load_json_lines(err))
    code, out, _ = cli("list")
    assert "failed to load" in out and "needs libfoo 9" in out
    synth = make_pipeline_root(tmp_path / "p", {"20231207": 2}, images=False)
    write_latent_file(synth.latent_dir("20241107_ds_sweep01_optimum"), "20231207", synth.snips["20231207"])
    code, _, err = cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--log-format", "json")
    assert code == 0, err
    monkeypatch.setenv("MORPHSEQ_STAGES_STRICT_PLUGINS", "1")
    code, _, err = cli("list")
    assert code != 0 and "broken" in err and "needs libfoo 9" in err


def test_plugins_can_be_blocked_by_environment(cli, monkeypatch):
    monkeypatch.setenv("MORPHSEQ_STAGES_DISABLE_PLUGINS", "build06, other")
    code, out, _ = cli("list", "--json")
    assert "build06" not in {r["name"] for r in json.loads(out)["plugins"]}
    with pytest.raises(SystemExit):
        cli("build06", "--root", ".")


def test_duplicate_names_are_refused_loudly():
    class Twin:
        @hookimpl
        def morphseq_register_embedders(self, register):
            register(EmbedderSpec(name="legacy", load=lambda r: None))

    host = get_host(plugins=[("twin", Twin())])
    assert host.registry.embedders["legacy"].provider.plugin == "legacy"
    (failure,) = host.registry.failures
    assert failure.name == "twin" and "registered twice" in failure.error and "legacy" in failure.error
    with pytest.raises(UserError, match="registered twice"):
        get_host(plugins=[("twin", Twin())], strict=True)


def test_register_refuses_the_wrong_type():
    class Wrong:
        @hookimpl
        def morphseq_register_stages(self, register):
            register("build07")

    host = get_host(plugins=[("wrong", Wrong())], load_entry_points=False)
    assert "takes a Stage" in host.registry.failures[0].error


def test_a_second_plugin_can_wrap_a_build06_phase(tmp_path):
    seen = []

    class Observer:
        @hookimpl(wrapper=True)
        def morphseq_stage_merge(self, stage, context, plan, generated):
            seen.append(("before", stage, len(plan.df02)))
            result = yield
            seen.append(("after", result.report["coverage"]))
            return result

        @hookimpl(wrapper=True)
        def morphseq_stage_export(self, stage, context, plan, merged):
            outcome = yield
            return StageOutcome(exit_code=outcome.exit_code, summary={**outcome.summary, "observed": True})

    synth = make_pipeline_root(tmp_path, {"20231207": 3}, images=False)
    write_latent_file(synth.latent_dir("20241107_ds_sweep01_optimum"), "20231207", synth.snips["20231207"])
    host = get_host(plugins=[("observer", Observer())])
    result = run_stage(host, "build06", {"root": synth.root, "data_root": synth.data_root})
    assert seen == [("before", "build06", 3), ("after", 1.0)]
    assert result.outcome.summary["observed"] is True


def test_phase_calls_reach_only_the_active_stage(tmp_path):
    calls = []

    class Other:
        @hookimpl
        def morphseq_register_stages(self, register):
            register(Stage(name="build07", help="another stage"))

        @hookimpl
        def morphseq_stage_plan(self, stage, context):
            if stage != "build07":
                return None
            calls.append(stage)

            class Plan:
                def as_dict(self):
                    return {"stage": "build07"}

                def render(self):
                    return "build07 plan"

            return Plan()

    host = get_host(plugins=[("other", Other())])
    result = run_stage(host, "build07", {}, dry_run=True)
    assert calls == ["build07"] and result.plan.render() == "build07 plan"
    with pytest.raises(UserError, match="unknown stage"):
        run_stage(host, "build99", {})


def test_every_hook_is_prefixed_documented_and_listed_in_the_readme():
    names = [n for n in dir(hookspecs) if n.startswith("morphseq_")]
    readme = (ROOT / "README.md").read_text()
    for n in names:
        fn = getattr(hookspecs, n)
        assert fn.__doc__ and "versionadded" in fn.__doc__
        assert f"`{n}`" in readme, f"{n} missing from the README hook table"
    documented = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `morphseq_")}
    assert documented == set(names)


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["build06", "--help"]])
def test_start_up_imports_no_torch(argv):
    run_without_torch(f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass")


def test_merge_only_run_imports_no_torch(tmp_path):
    synth = make_pipeline_root(tmp_path, {"20231207": 2}, images=False)
    write_latent_file(synth.latent_dir("20241107_ds_sweep01_optimum"), "20231207", synth.snips["20231207"])
    args = ["build06", "--root", str(synth.root), "--data-root", str(synth.data_root), "--log-format", "json"]
    run_without_torch(f"assert main({args!r}) == 0")


def test_python_dash_m_is_the_same_cli():
    proc = subprocess.run([sys.executable, "-m", "morphseq_stages", "list"], capture_output=True, text=True)
    assert proc.returncode == 0 and "build06" in proc.stdout


def test_internal_errors_are_one_line_without_debug(cli, monkeypatch):
    import morphseq_stages.runner as runner

    def explode(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run_stage", explode)
    code, _, err = cli("build06", "--root", ".", "--data-root", ".")
    assert code == 70 and err.strip().splitlines()[-1].startswith("morphseq-stages: internal error: RuntimeError: boom")
    with pytest.raises(RuntimeError):
        cli("build06", "--root", ".", "--data-root", ".", "--debug")
