"""A recording: every scenario's steps as ``recording.json`` (names, commands, digests)
and the normalised texts beside it (``texts/<digest>.txt``), for ``compare``'s diffs."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import REPO
from .session import Session, Step

FORMAT = 1
#: the packages whose presence or version changes what a run writes (compare warns when they differ)
PACKAGES = ("numpy", "pandas", "pyarrow", "anndata", "torch", "onnxruntime", "onnx", "Pillow", "plotly", "snakemake")


@attrs.frozen
class Scenario:
    name: str
    run: Callable[[Session], None]
    about: str


@attrs.frozen
class Recording:
    """A recording as read back: ``steps[scenario][step]`` maps entries to digests."""

    folder: Path
    meta: Mapping[str, Any]
    steps: Mapping[str, Mapping[str, Mapping[str, str]]]
    commands: Mapping[str, Mapping[str, str]]

    @classmethod
    def read(cls, folder: Path) -> Recording:
        try:
            data = json.loads((Path(folder) / "recording.json").read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{folder} is not a recording ({exc})") from None
        steps = {s: {st["step"]: st["entries"] for st in body["steps"]} for s, body in data["scenarios"].items()}
        commands = {s: {st["step"]: st["command"] for st in body["steps"]} for s, body in data["scenarios"].items()}
        return cls(Path(folder), data["meta"], steps, commands)

    def text(self, digest: str) -> str | None:
        path = self.folder / "texts" / f"{digest}.txt"
        return path.read_text(encoding="utf-8", errors="surrogateescape") if path.is_file() else None


def record(out: Path, scenarios: Sequence[Scenario], *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``scenarios`` each in a fresh folder and write the recording to ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; record into a new folder")
    (out / "texts").mkdir(parents=True, exist_ok=True)
    _check_code_under_test()
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="morphseq-corpus-"))
    body: dict[str, Any] = {}
    try:
        for scenario in scenarios:
            t0 = time.monotonic()
            # a cache of its own (ONNX exports): a scenario recorded alone (--only) logs as in a whole recording
            session = Session(work / scenario.name, work / f".cache-{scenario.name}")
            try:
                scenario.run(session)
            except Exception as exc:  # the scenario's own set-up broke: recorded, so compare shows it
                session.record("scenario-error", scenario.name, -1, "", f"{type(exc).__name__}: {exc}\n")
            seconds = time.monotonic() - t0
            body[scenario.name] = {"about": scenario.about, "seconds": round(seconds, 2),
                                   "steps": [_step_json(out, s) for s in session.steps]}
            log(f"{scenario.name}: {len(session.steps)} steps, {seconds:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = {"format": FORMAT, "commit": _commit(), "code_commit": _commit("morphseq_stages", "plugins", "examples"),
            "python": platform.python_version(),
            "packages": _packages(), "seconds": round(time.monotonic() - start, 1)}
    (out / "recording.json").write_text(json.dumps({"meta": meta, "scenarios": body}, indent=1) + "\n")
    return meta


def _step_json(out: Path, step: Step) -> dict[str, Any]:
    for content in step.entries.values():
        if content.text is not None:
            path = out / "texts" / f"{content.digest}.txt"
            if not path.exists():
                path.write_text(content.text, encoding="utf-8", errors="surrogateescape")
    return {"step": step.name, "command": step.command, "entries": {k: c.digest for k, c in step.entries.items()}}


def _check_code_under_test() -> None:
    """The processes the steps start must import this checkout's packages."""
    from .session import environment

    probe = "import morphseq_stages, morphseq_build06; print(morphseq_stages.__file__); print(morphseq_build06.__file__)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=environment(Path(tempfile.gettempdir())), cwd=tempfile.gettempdir())
    files = proc.stdout.split()
    if proc.returncode or not files or not all(Path(f).resolve().is_relative_to(REPO) for f in files):
        raise SystemExit(f"the steps would not run this checkout ({REPO}): {proc.stdout}{proc.stderr}")


def _commit(*paths: str) -> str:
    """The checkout's commit (``paths``: the last commit that changed them, ``+dirty`` if
    they hold uncommitted changes)."""
    git = ["git", "-C", str(REPO)]
    if not paths:
        proc = subprocess.run([*git, "describe", "--always", "--dirty"], capture_output=True, text=True)
        return proc.stdout.strip() or "unknown"
    last = subprocess.run([*git, "log", "-1", "--format=%h", "--", *paths], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--", *paths], capture_output=True, text=True)
    return (last.stdout.strip() or "unknown") + ("+dirty" if dirty.stdout.strip() else "")


def _packages() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions
