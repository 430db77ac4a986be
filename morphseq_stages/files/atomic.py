"""Atomic writes: one file replaced whole or not at all (joining the staged set in progress), and the early check that it can be."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..errors import UserError
from .staged import staged_writes


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(fh)`` into a temporary file beside it, then rename
    (inside :func:`staged_writes`: when its set is committed).

    An interruption leaves ``path`` as it was; the temporary file is removed on error.
    """
    with staged_writes() as out:
        out.write(path, write)


def atomic_write_path(path: Path, write: Callable[[Path], Any]) -> None:
    """:func:`atomic_write` for writers that want a file name instead of a handle."""
    with staged_writes() as out:
        out.write_path(path, write)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (joins the enclosing :func:`staged_writes` set, if any)."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def check_writable(path: Path) -> None:
    """Fail early, naming the path, if ``path`` could not be created or replaced."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {path}: a folder stands where the file should be")
    probe = path.parent
    while not probe.exists() and not probe.is_symlink():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"cannot write {path}: {probe} is a file, not a folder")
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: folder {probe} is not writable")
