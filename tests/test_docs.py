"""The documentation stays true to the code: the CLI reference is the option schemas, the
README's commands are CI's, its links land, and the plugin examples run."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from morphseq_stages import get_host, run_stage
from morphseq_stages.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _gen_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docs.gen_cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_the_cli_reference_is_what_the_option_schemas_generate():
    done = _gen_cli("--check")
    assert done.returncode == 0, done.stderr + "\n(run `python -m docs.gen_cli` and commit docs/cli.md)"


def test_the_cli_reference_check_fails_when_the_page_differs(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT))
    try:
        from docs import gen_cli
    finally:
        sys.path.remove(str(ROOT))
    page = tmp_path / "cli.md"
    text = gen_cli.render()
    assert "`--batch-size N`" in text
    page.write_text(text.replace("`--batch-size N`", "`--batch-size-renamed N`"))
    monkeypatch.setattr(gen_cli, "PAGE", page)
    assert gen_cli.main(["--check"]) == 1
    assert gen_cli.main([]) == 0 and gen_cli.main(["--check"]) == 0


@pytest.mark.parametrize("command", ["build06", "list", "demo"])
def test_every_flag_of_the_help_is_in_the_cli_reference(command):
    page = (DOCS / "cli.md").read_text()
    section = page[page.index(f"## `morphseq-stages {command}`"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    sub = next(a for a in build_parser(get_host())._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    flags = {s for a in sub.choices[command]._actions for s in a.option_strings if s.startswith("--") and s != "--help"}
    assert flags, command
    shared_logging = {"--log-format", "--log-file", "--quiet", "--debug"}
    for flag in flags:
        where = page if flag in shared_logging else section
        assert re.search(rf"`{re.escape(flag)}[ `]", where), f"{flag} of `{command}` is not in docs/cli.md"


def test_the_readme_commands_are_what_ci_runs_and_the_readme_is_short():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert commands[0].startswith("pip install torch==2.13.0 && pip install -e '.[test]' && morphseq-stages demo ")
    assert "python -m pip install --quiet torch==2.13.0" in ci
    assert commands[1] == "python -m pytest -q" and re.search(r"(?m)^[^#\n]*\bpython -m pytest -q\s*$", ci)
    assert re.search(r"(?m)^[^#\n]*mkdocs build --strict", ci)
    assert len(readme.splitlines()) <= 150


def _slug(heading: str) -> str:
    # Python-Markdown's toc slugify: lower case, punctuation dropped, spaces to dashes
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text).strip("-")


def test_every_docs_link_of_the_readme_lands_on_a_page_and_heading():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]*)(?:#([^)]+))?\)", readme)
    assert len(links) >= 15
    for target, anchor in links:
        path = ROOT / target
        assert path.exists(), f"README links to {target}, which does not exist"
        if anchor:
            headings = [_slug(h) for h in re.findall(r"(?m)^#+ (.+)$", path.read_text())]
            assert anchor in headings, f"README links to {target}#{anchor}: no such heading"


def test_every_docs_page_is_in_the_site_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {p.name for p in DOCS.glob("*.md")}
    assert pages == set(re.findall(r": (\S+\.md)$", nav, re.M))


def _python_blocks(page: str, after: str) -> str:
    text = (DOCS / page).read_text()
    return text[text.index(after):].split("```python\n", 1)[1].split("```", 1)[0]


def test_the_stage_example_of_the_plugin_page_runs(tmp_path):
    plugin = types.ModuleType("count_stage_example")
    exec(compile(_python_blocks("plugins.md", "## A stage"), "docs/plugins.md", "exec"), plugin.__dict__)
    (tmp_path / "a").write_text("1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_text("2")
    host = get_host(plugins=[("count", plugin)])
    assert run_stage(host, "count", {"root": tmp_path}, dry_run=True).plan.render() == "2 file(s) to count"
    result = run_stage(host, "count", {"root": tmp_path})
    assert result.exit_code == 0 and result.summary["files"] == 2 and result.outcome.text == "2 file(s)"


def _bash_blocks(page: Path, heading: str) -> list[str]:
    text = page.read_text()
    section = text[text.index(heading):]
    section = section[:section.index("\n## ", 1)]
    return [b.split("```", 1)[0] for b in section.split("```bash\n")[1:]]


def test_the_demo_update_of_the_operator_guide_brings_every_output_up_to_date(tmp_path):
    """The guide's commands, as a newcomer pastes them: demo, add an experiment, update;
    then every output the demo wrote is current and df03 holds the new rows."""
    pytest.importorskip("torch", reason="the demo builds a legacy model with torch")
    demo = tmp_path / "morphseq-demo"
    add, update = _bash_blocks(DOCS / "operator-guide.md", "## Try it on the demo")
    assert update.rstrip().endswith("--dry-run")
    real = update.rstrip().removesuffix("--dry-run").rstrip().rstrip("\\").rstrip()
    script = "\n".join([
        "set -euo pipefail",
        f"{sys.executable} -m morphseq_stages demo {demo} --quiet >/dev/null",
        add.replace("DEMO=/tmp/morphseq-demo", f"DEMO={demo}"),
        real.replace("morphseq-stages", f"{sys.executable} -m morphseq_stages") + " --quiet >/dev/null",
        update.rstrip().replace("morphseq-stages", f"{sys.executable} -m morphseq_stages") + " --json --quiet",
    ])
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    plan = json.loads(done.stdout)
    not_current = [o for o in plan["outputs"] if o["kind"] != "manifest" and o["status"] != "current"]
    assert not_current == [] and plan["warnings"] == [], (not_current, plan["warnings"])
    assert {"df03", "training", "analysis"} <= {o["kind"] for o in plan["outputs"]}
    df03 = (demo / "root" / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.csv").read_text()
    new_rows = [line for line in df03.splitlines() if ",20250115_newexp_" in line]
    assert len(new_rows) == 8 and all(not line.endswith(",") for line in new_rows)
    copy = demo / "data" / "metadata" / "metadata_n_embeddings" / "demo_vae" / "df03_20250115_newexp.csv"
    assert copy.exists()


def test_the_readme_update_command_has_the_flags_of_the_demo_and_of_the_guide():
    readme = (ROOT / "README.md").read_text()
    everyday = readme[readme.index("## Everyday commands"):]
    step3 = everyday[everyday.index("# 3."):everyday.index("```", everyday.index("# 3."))]
    demo_flags = {"--generate-missing-latents", "--export-analysis-copies", "--train-name"}
    assert demo_flags | {"--overwrite"} <= set(re.findall(r"--[a-z-]+", step3))
    guide = (DOCS / "operator-guide.md").read_text()
    routine = guide[guide.index("## The weekly routine"):guide.index("## Try it on the demo")]
    assert demo_flags | {"--overwrite", "--formats", "--report"} <= set(re.findall(r"--[a-z-]+", routine))


def test_every_name_the_api_page_documents_exists():
    """mkdocstrings renders these from docstrings; a renamed function fails here even where
    mkdocs is not installed."""
    import importlib

    page = (DOCS / "python-api.md").read_text()
    targets = re.findall(r"(?m)^::: ([\w.]+)", page)
    members = re.findall(r"(?m)^        - (\w+)$", page)
    assert "morphseq_build06.api" in targets and len(members) >= 8
    for target in targets:
        module, _, name = target.rpartition(".")
        try:
            obj = importlib.import_module(target)
        except ModuleNotFoundError:
            obj = getattr(importlib.import_module(module), name)
        assert obj.__doc__, f"{target} has no docstring"
    api = importlib.import_module("morphseq_build06.api")
    for name in members:
        assert getattr(api, name).__doc__, f"morphseq_build06.api.{name} is documented but has no docstring"
    assert set(members) == set(api.__all__), "the API page lists other names than morphseq_build06.api.__all__"
