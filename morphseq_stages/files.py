"""Safe file handling: atomic writes, run locks, hashing, safe identifiers."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from .errors import UserError

_UNSAFE = ("/", "\\", "\x00")


def check_safe_id(value: str, what: str) -> str:
    """Refuse an id that would escape its folder once used in a path."""
    if not value or value in {".", ".."} or ".." in value or any(c in value for c in _UNSAFE):
        raise UserError(f"unsafe {what} {value!r}: it must not contain '/', '\\', '..' or NUL")
    return value


def sha256_file(path: Path) -> str:
    """sha256 of a file; one that has not changed since (same inode, size, mtime) is not read again."""
    st = os.stat(path)
    return _sha256(os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _sha256(path: str, inode: int, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def sha256_files_in_background(paths: list[Path]) -> Future[dict[str, str]]:
    """Hash files on a thread of their own (hashlib releases the GIL) while work goes on."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    future = pool.submit(lambda: {str(p): sha256_file(p) for p in paths})
    pool.shutdown(wait=False)
    return future


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(fh)`` into a temporary file beside it, then rename.

    An interruption leaves ``path`` as it was; the temporary file is removed on error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """Hold ``path`` as a lock file for the duration; a second holder gets a clear error.

    A lock left by a process that no longer runs on this host is taken over.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"]):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            raise UserError(
                f"another run is writing {what}: lock {path} is held by pid {holder.get('pid', '?')} "
                f"on {holder.get('host', '?')} since {holder.get('since', '?')} "
                "(remove the lock file if no such run is alive)"
            ) from None
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _read_lock(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def check_writable(path: Path) -> None:
    """Fail early, naming the folder, if ``path`` could not be created or replaced."""
    folder = Path(path).parent
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: folder {probe} is not writable")
