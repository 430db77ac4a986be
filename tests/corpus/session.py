"""One scenario's run: its folder, its steps (a command or an API call each), and what
each step leaves: exit code, stdout, stderr and every file under the folder."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import REPO
from .normalise import Content, Normaliser, content_of

#: what a step may take before the corpus gives up on it (a hung run is itself a finding)
STEP_TIMEOUT_S = 300
API_CALL = Path(__file__).with_name("api_call.py")
#: folders a tool keeps for itself, not Build06's outputs (Snakemake's logs and state)
NOT_OUTPUTS = (".snakemake",)


@attrs.define
class Step:
    """What one step left: ``entries`` maps ``@exit``, ``@stdout``, ``@stderr`` and each
    file's path (relative to the scenario's folder) to its content."""

    name: str
    command: str
    entries: dict[str, Content]


def environment(cache: Path) -> dict[str, str]:
    """The environment of every process a step starts: this checkout's code first, the
    scenario's own ONNX cache, no data root or hash seed taken from the caller."""
    env = {k: v for k, v in os.environ.items() if k not in ("MORPHSEQ_DATA_ROOT", "PYTHONHASHSEED")}
    path = os.pathsep.join([str(REPO), str(REPO / "plugins")])
    env.update(PYTHONPATH=path, XDG_CACHE_HOME=str(cache), PYTHONHASHSEED="0", TZ="UTC", LC_ALL="C.UTF-8",
               COLUMNS="120", NO_COLOR="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


class Session:
    """The folder of one scenario, its normaliser and the steps recorded so far."""

    def __init__(self, base: Path, cache: Path) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True)
        self.env = environment(cache)
        self.norm = Normaliser({"BASE": self.base, "CACHE": cache, "REPO": REPO, "VENV": sys.prefix,
                                   "PYTHON": sys.executable})
        self.steps: list[Step] = []

    # -- steps ---------------------------------------------------------------------------
    def cli(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m morphseq_stages ARGS`` in the scenario's folder, recorded as a step."""
        return self.command(name, [sys.executable, "-m", "morphseq_stages", *args])

    def command(self, name: str, argv: Sequence[str], *,
                streams: Callable[[str], str] | None = None) -> subprocess.CompletedProcess[str]:
        """``argv`` in the scenario's folder, recorded as a step (``streams``: what of its
        stdout and stderr to keep, for a tool whose own log holds dates)."""
        try:
            proc = subprocess.run(list(argv), cwd=self.base, env=self.env, capture_output=True, text=True,
                                  timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            proc = subprocess.CompletedProcess(list(argv), -9, _text(exc.stdout), _text(exc.stderr) + "\n<timed out>")
        shown = " ".join(self.norm.text(a) for a in argv[1:] if a != "-m")
        keep = streams or (lambda text: text)
        self.record(name, shown, proc.returncode, keep(proc.stdout), keep(proc.stderr))
        return proc

    def api(self, name: str, calls: Sequence[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        """Public API calls in a fresh process (``api_call``): each ``{"call": name, "args":
        [...], "kwargs": {...}}``, ``{"result": i}`` naming an earlier call's value."""
        program = json.dumps(calls, default=str)
        return self.command(name, [sys.executable, str(API_CALL), program])

    def record(self, name: str, command: str, code: int, stdout: str, stderr: str) -> None:
        files = self._read_files()
        for rel, data in files.items():
            if isinstance(data, bytes):
                self.norm.name_file(hashlib.sha256(data).hexdigest(), rel)
        entries = {"@exit": content_of(f"exit {code}\n"), "@stdout": content_of(self.norm.stdout(stdout)),
                   "@stderr": content_of(self.norm.stderr(stderr))}
        # JSON first: the ids and clocks it holds are then named in the texts that repeat them
        for rel in sorted(files, key=lambda r: (not r.endswith(".json"), r)):
            data = files[rel]
            entries[rel] = content_of(data) if isinstance(data, str) else self.norm.file(self.base / rel, data)
        self.steps.append(Step(f"{len(self.steps) + 1:02}-{name}", self.norm.text(command), entries))

    def _read_files(self) -> dict[str, bytes | str]:
        """Every file under the folder by relative path: its bytes, or for a special file
        or a link the text that describes it."""
        out: dict[str, bytes | str] = {}
        for dirpath, dirnames, names in os.walk(self.base):
            here = Path(dirpath)
            if here == self.base:
                dirnames[:] = [d for d in dirnames if d not in NOT_OUTPUTS]
            for name in names:
                path = here / name
                rel = path.relative_to(self.base).as_posix()
                mode = path.lstat().st_mode
                if stat.S_ISLNK(mode):
                    out[rel] = f"symlink -> {self.norm.text(os.readlink(path))}\n"
                elif not stat.S_ISREG(mode):
                    out[rel] = f"special file {stat.filemode(mode)[0]}\n"
                else:
                    out[rel] = path.read_bytes()
        return dict(sorted(out.items()))


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
