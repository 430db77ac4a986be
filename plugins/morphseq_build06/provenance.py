"""Facts about a run for the provenance sidecars: who ran what, where, with which versions."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from morphseq_stages import __version__
from morphseq_stages.files import utc_now


def dist_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder`` when it is a git work tree, else None."""
    try:
        proc = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and len(commit) == 40 else None


def run_facts(root: Path) -> dict[str, Any]:
    """This run: its log ``run_id``, command line, folder, host, the pipeline root's commit."""
    return {
        "run_id": structlog.contextvars.get_contextvars().get("run_id"),
        "created_at": utc_now(),
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "pipeline_root_git_commit": git_commit(root),
    }


def plain(value: Any) -> Any:
    """``value`` as plain JSON types (dict, list, str, int, float, bool, None), so that every
    writer of provenance (JSON sidecar, Parquet metadata, h5ad ``uns``) takes it. An
    embedder's facts may hold subclasses (``torch.__version__`` is a ``TorchVersion``),
    numpy scalars, paths or tuples; anything else becomes its text."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    return str(value)


def versions() -> dict[str, str | None]:
    return {"morphseq-stages": __version__, "python": platform.python_version(),
            **{name: dist_version(name) for name in ("numpy", "pandas", "pyarrow", "Pillow", "torch")}}
