"""CI runs the whole tox matrix, and each tox env has what the tests need (#16 item 11)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tox() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "tox.ini")
    return parser


def _names(lines: str) -> dict[str, str]:
    """requirement name -> the line, of a deps/extra list (comments and factor prefixes dropped)."""
    out = {}
    for line in lines.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out[re.split(r"[<>=!\[ ;]", line.split(":", 1)[-1].strip(), maxsplit=1)[0].lower()] = line
    return out


def test_every_tox_test_env_installs_the_test_extra():
    setup = configparser.ConfigParser(interpolation=None)
    setup.read(ROOT / "setup.cfg")
    extra = _names(setup["options.extras_require"]["test"])
    deps = _names(_tox()["testenv"]["deps"])
    assert set(extra) <= set(deps), f"tox.ini [testenv] deps lack {sorted(set(extra) - set(deps))} of the test extra"


def test_only_py311_installs_torch_for_the_tests():
    deps = [line.split("#", 1)[0].strip() for line in _tox()["testenv"]["deps"].splitlines()]
    torch = [d for d in deps if re.match(r"(py\d+:\s*)?torch\b", d)]
    assert torch and all(d.startswith("py311:") for d in torch), torch


def test_ci_runs_the_whole_matrix_and_a_missing_python_is_an_error():
    ci = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ")  # continued lines joined
    call = re.search(r"(?m)^[^#\n]*tox run(?:-parallel)? (.*)$", ci)
    assert call, "no tox run in .ci/run"
    args = call.group(1)
    envs = re.search(r"-e (\S+)", args).group(1).split(",")
    listed = [e.strip() for e in _tox()["tox"]["envlist"].split(",")]
    assert set(envs) | {"py311", "docs"} == set(listed), envs  # 3.11 and the docs run in .ci/run's own venv
    assert "--skip-missing-interpreters false" in args
