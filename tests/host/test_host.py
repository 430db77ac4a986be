"""The plugin host: discovery, failures, blocking, registration rules, phase hooks.

Stages and embedders here are conftest's fakes (stage ``echo``, embedder ``fake``); the
first-party plugins appear only where their discovery through entry points is the point.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from morphseq_stages import EmbedderSpec, Stage, StageOutcome, hookimpl, hookspecs
from morphseq_stages.errors import UserError
from morphseq_stages.manager import get_host
from morphseq_stages.runner import run_stage

from conftest import (
    FakePlugin,
    install_fake_distribution,
    load_json_lines,
    make_echo_root,
    needs_torch,
    run_without_torch,
)

ROOT = Path(__file__).resolve().parents[2]


def test_list_shows_stages_and_embedders_with_their_distribution(cli):
    code, out, _ = cli("list", "--json", "--log-format", "json")
    assert code == 0
    rows = {(r["kind"], r["name"]): r for r in json.loads(out)["plugins"]}
    assert rows[("stage", "build06")]["distribution"] == "morphseq-stages"
    assert rows[("embedder", "legacy")]["version"]
    code, out, _ = cli("list")
    assert "build06" in out and "legacy" in out and "morphseq-stages" in out


def fake_host(*plugins: tuple[str, object]):
    return get_host(plugins=[("fakes", FakePlugin()), *plugins], load_entry_points=False)


def test_a_plugin_from_a_distribution_is_listed_with_it(fake_plugin, cli):
    code, out, _ = cli("list", "--json")
    rows = {(r["kind"], r["name"]): r for r in json.loads(out)["plugins"]}
    assert code == 0 and rows[("stage", "echo")]["distribution"] == "morphseq-fakes"
    assert rows[("embedder", "fake")]["plugin"] == "fakes" and rows[("embedder", "fake")]["version"] == "1.0"


@needs_torch
def test_broken_plugin_is_reported_and_the_rest_still_works(tmp_path, cli, monkeypatch, fake_plugin):
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
    root = make_echo_root(tmp_path / "p")
    code, _, err = cli("echo", "--root", root, "--log-format", "json")
    assert code == 0, err
    assert len(json.loads((root / "out" / "echo.json").read_text())["latents"]) == 3
    monkeypatch.setenv("MORPHSEQ_STAGES_STRICT_PLUGINS", "1")
    code, _, err = cli("list")
    assert code != 0 and "broken" in err and "needs libfoo 9" in err


def test_plugins_can_be_blocked_by_environment(cli, monkeypatch, fake_plugin):
    monkeypatch.setenv("MORPHSEQ_STAGES_DISABLE_PLUGINS", "fakes, other")
    code, out, _ = cli("list", "--json")
    assert {"echo", "fake"}.isdisjoint({r["name"] for r in json.loads(out)["plugins"]})
    with pytest.raises(SystemExit):
        cli("echo", "--root", ".")
    assert get_host(plugins=[("fakes", FakePlugin())]).registry.stages.get("echo") is None


def test_duplicate_names_are_refused_loudly():
    class Twin:
        @hookimpl
        def morphseq_register_embedders(self, register):
            register(EmbedderSpec(name="fake", load=lambda r: None, describe=lambda r: None))

    host = fake_host(("twin", Twin()))
    assert host.registry.embedders["fake"].provider.plugin == "fakes"
    (failure,) = host.registry.failures
    assert failure.name == "twin" and "registered twice" in failure.error and "fake" in failure.error
    with pytest.raises(UserError, match="registered twice"):
        get_host(plugins=[("fakes", FakePlugin()), ("twin", Twin())], load_entry_points=False, strict=True)


def test_register_refuses_the_wrong_type():
    class Wrong:
        @hookimpl
        def morphseq_register_stages(self, register):
            register("build07")

    host = get_host(plugins=[("wrong", Wrong())], load_entry_points=False)
    assert "takes a Stage" in host.registry.failures[0].error


@needs_torch
def test_a_second_plugin_can_wrap_a_stage_phase(tmp_path):
    seen = []

    class Observer:
        @hookimpl(wrapper=True)
        def morphseq_stage_merge(self, stage, context, plan, generated):
            seen.append(("before", stage, len(plan.images)))
            result = yield
            seen.append(("after", sorted(result["latents"])))
            return result

        @hookimpl(wrapper=True)
        def morphseq_stage_export(self, stage, context, plan, merged):
            outcome = yield
            return StageOutcome(exit_code=outcome.exit_code, summary={**outcome.summary, "observed": True})

    root = make_echo_root(tmp_path)
    result = run_stage(fake_host(("observer", Observer())), "echo", {"root": root})
    assert seen == [("before", "echo", 3), ("after", ["img0.png", "img1.png", "img2.png"])]
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

    host = fake_host(("other", Other()))
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

    root = make_echo_root(tmp_path)
    host = fake_host(("greedy", Greedy()), ("watcher", Watcher()))
    result = run_stage(host, "echo", {"root": root}, dry_run=True)
    assert type(result.plan).__name__ == "EchoPlan"
    assert run_stage(host, "greedy", {}, dry_run=True).plan.render() == "hijacked"
    assert seen == [("echo", "EchoPlan"), ("greedy", "Plan")]


HOST_FORBIDDEN = ("df02", "df03", "snip", "bf_embryo", "latent_embeddings", "Encoder_Conv_VAE", "final_model",
                  "models/legacy", "20241107_ds_sweep01_optimum", "pythae", "build06", "legacy", "z_mu")


def test_the_host_package_holds_no_stage_or_model_specifics():
    found = [f"{p.name}:{n}: {line.strip()}"
             for p in sorted((ROOT / "morphseq_stages").rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if any(word.lower() in line.lower() for word in HOST_FORBIDDEN)]
    assert found == []


def test_every_name_the_plugin_page_example_uses_is_public():
    import morphseq_stages

    page = (ROOT / "docs" / "plugins.md").read_text()
    section = page[page.index("## An embedder"):page.index("## A stage")]
    imported = [name.strip() for line in section.splitlines() if line.startswith("from morphseq_stages import ")
                for name in line.split(" import ", 1)[1].split(",")]
    assert {"Embedder", "EmbedderSpec", "ModelInfo", "hookimpl"} <= set(imported)
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


# the installed plugins (first-party included) must keep torch out of start-up
@pytest.mark.parametrize("argv", [["--help"], ["list"], ["build06", "--help"]])
def test_start_up_imports_no_torch(argv):
    run_without_torch(f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass")


def test_python_dash_m_is_the_same_cli(cli):
    proc = subprocess.run([sys.executable, "-m", "morphseq_stages", "list"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == cli("list")[1]


def test_a_reader_that_closes_stdout_early_gets_no_traceback():
    # `morphseq-stages ... | head -c 100`: the reader is gone before anything is printed
    proc = subprocess.Popen([sys.executable, "-m", "morphseq_stages", "list", "--json", "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 141, err
    plain = [ln for ln in err.splitlines() if not ln.startswith("{")]
    assert plain == ["morphseq-stages: standard output closed by its reader; outputs are either unchanged or complete"]


def test_internal_errors_are_one_line_without_debug(cli, monkeypatch, fake_plugin):
    import morphseq_stages.runner as runner

    def explode(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run_stage", explode)
    code, _, err = cli("echo", "--root", ".")
    assert code == 70 and err.strip().splitlines()[-1].startswith("morphseq-stages: internal error: RuntimeError: boom")
    with pytest.raises(RuntimeError):
        cli("echo", "--root", ".", "--debug")


def test_the_import_contracts_hold():
    """The layers in .importlinter: the host imports no plugin, its modules import downwards only."""
    pytest.importorskip("importlinter")
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout
