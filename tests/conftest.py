from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import structlog

from morphseq_stages.cli import main

UPSTREAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "upstream"
FIXTURES = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, _cache_home):
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))  # ONNX exports never land in the real cache
    for var in ("MORPHSEQ_DATA_ROOT", "MORPHSEQ_STAGES_DISABLE_PLUGINS", "MORPHSEQ_STAGES_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    yield
    structlog.reset_defaults()


class CLI:
    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cli(capsys):
    return CLI(capsys)


def upstream_file(name: str) -> Path:
    """The lab's real rows (shared/data/upstream), or the copy kept in tests/data."""
    for folder in (UPSTREAM, FIXTURES):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(name)


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def tree_digest(*folders: Path) -> dict[str, str]:
    """Every file and folder under ``folders`` with a hash of its bytes."""
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def run_without_torch(body: str) -> subprocess.CompletedProcess:
    """Run ``body`` (with ``main`` imported) in a fresh interpreter; fail if it imports torch."""
    code = f"import sys\nfrom morphseq_stages.cli import main\n{body}\nassert 'torch' not in sys.modules, 'torch imported'\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def load_json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]



def install_fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, entry_points: str,
                              modules: dict[str, str]) -> None:
    """A distribution on sys.path (dist-info + modules), as pip would leave it."""
    site = tmp_path / f"site-{name}"
    dist = site / f"{name.replace('-', '_')}-1.0.dist-info"  # as pip names it: the stem parses to the name
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for mod, src in modules.items():
        (site / f"{mod}.py").write_text(textwrap.dedent(src))
    monkeypatch.syspath_prepend(str(site))
