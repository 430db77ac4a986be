"""The plugin host: discovery, failures, blocking, registration rules, phase hooks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from morphseq_build06.testing import make_pipeline_root, write_latent_file
from morphseq_stages import EmbedderSpec, Stage, StageOutcome, hookimpl, hookspecs
from morphseq_stages.errors import UserError
from morphseq_stages.manager import get_host
from morphseq_stages.runner import run_stage

from conftest import install_fake_distribution, load_json_lines, run_without_torch

ROOT = Path(__file__).resolve().parents[2]


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
            register(EmbedderSpec(name="legacy", load=lambda r: None, describe=lambda r: None))

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


def test_a_plugin_that_answers_for_every_stage_cannot_hijack_another(tmp_path):
    """Phase calls go to the plugin that registered the stage, plus wrappers (see hookspecs)."""

    class Plan:
        def as_dict(self):
            return {"stage": "hijacked"}

        def render(self):
            return "hijacked"

    class Greedy:
        @hookimpl
        def morphseq_register_stages(self, register):
            register(Stage(name="greedy", help="answers for every stage"))

        @hookimpl(tryfirst=True)
        def morphseq_stage_plan(self, stage, context):
            return Plan()  # never declines

    seen = []

    class Watcher:
        @hookimpl(wrapper=True)
        def morphseq_stage_plan(self, stage, context):
            plan = yield
            seen.append((stage, type(plan).__name__))
            return plan

    synth = make_pipeline_root(tmp_path, {"20231207": 2}, images=False)
    host = get_host(plugins=[("greedy", Greedy()), ("watcher", Watcher())])
    result = run_stage(host, "build06", {"root": synth.root, "data_root": synth.data_root}, dry_run=True)
    assert type(result.plan).__name__ == "Build06Plan"
    assert run_stage(host, "greedy", {}, dry_run=True).plan.render() == "hijacked"
    assert seen == [("build06", "Build06Plan"), ("greedy", "Plan")]


HOST_FORBIDDEN = ("df02", "df03", "snip", "bf_embryo", "latent_embeddings", "Encoder_Conv_VAE", "final_model",
                  "models/legacy", "20241107_ds_sweep01_optimum", "pythae")


def test_the_host_package_holds_no_stage_or_model_specifics():
    found = [f"{p.name}:{n}: {line.strip()}"
             for p in sorted((ROOT / "morphseq_stages").glob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if any(word.lower() in line.lower() for word in HOST_FORBIDDEN)]
    assert found == []


def test_every_name_the_plugin_page_example_uses_is_public():
    import morphseq_stages

    page = (ROOT / "docs" / "plugins.md").read_text()
    section = page[page.index("## An embedder"):page.index("## A stage")]
    imported = [name.strip() for line in section.splitlines() if line.startswith("from morphseq_stages import ")
                for name in line.split(" import ", 1)[1].split(",")]
    assert {"Embedder", "EmbedderSpec", "ModelInfo", "hookimpl", "column_names"} <= set(imported)
    assert set(imported) <= set(morphseq_stages.__all__)
    assert '[project.entry-points."morphseq_stages.embedders"]' in section and "[options.entry_points]" in section


def test_every_hook_is_prefixed_documented_and_listed_in_the_architecture_page():
    names = [n for n in dir(hookspecs) if n.startswith("morphseq_")]
    page = (ROOT / "docs" / "architecture.md").read_text()
    for n in names:
        fn = getattr(hookspecs, n)
        assert fn.__doc__ and "versionadded" in fn.__doc__
        assert f"`{n}`" in page, f"{n} missing from the hook table of docs/architecture.md"
    documented = {line.split("`")[1] for line in page.splitlines() if line.startswith("| `morphseq_")}
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


def test_a_reader_that_closes_stdout_early_gets_no_traceback(tmp_path):
    # `morphseq-stages ... | head -c 100`: the reader is gone before the plan is printed
    synth = make_pipeline_root(tmp_path, {"20231207": 2}, images=False)
    proc = subprocess.Popen([sys.executable, "-m", "morphseq_stages", "build06", "--root", str(synth.root),
                             "--data-root", str(synth.data_root), "--dry-run", "--json", "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 141, err
    plain = [ln for ln in err.splitlines() if not ln.startswith("{")]
    assert plain == ["morphseq-stages: standard output closed by its reader; outputs are either unchanged or complete"]


def test_internal_errors_are_one_line_without_debug(cli, monkeypatch):
    import morphseq_stages.runner as runner

    def explode(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run_stage", explode)
    code, _, err = cli("build06", "--root", ".", "--data-root", ".")
    assert code == 70 and err.strip().splitlines()[-1].startswith("morphseq-stages: internal error: RuntimeError: boom")
    with pytest.raises(RuntimeError):
        cli("build06", "--root", ".", "--data-root", ".", "--debug")
