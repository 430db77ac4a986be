"""Safe file handling: atomic writes, run locks, hashing, safe identifiers."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import structlog

from .errors import UserError

log = structlog.get_logger()

_UNSAFE = ("/", "\\", "\x00")
#: bytes left for an id in a file name (most file systems allow 255; prefixes and suffixes take the rest)
MAX_ID_BYTES = 200


def check_safe_id(value: str, what: str) -> str:
    """Refuse an id that would escape its folder, or break a file name, once used in a path."""
    if not value or value in {".", ".."} or ".." in value or any(c in value for c in _UNSAFE):
        raise UserError(f"unsafe {what} {value!r}: it must not contain '/', '\\', '..' or NUL")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UserError(f"unsafe {what} {value!r}: it must not contain control characters (newline, tab, ...)")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise UserError(f"unsafe {what} {value!r}: it is not valid UTF-8") from None
    if size > MAX_ID_BYTES:
        raise UserError(f"{what} {value[:40]!r}... is too long for a file name ({size} bytes; at most {MAX_ID_BYTES})")
    return value


def utc_now() -> str:
    """The current time as every record of ours writes it: ISO 8601, UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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


def _write_failed(path: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write {path}: {exc.strerror or exc}")


#: the commit record of an output set, in the set's folder, while its files are renamed
JOURNAL = ".morphseq-outputs.commit"
_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class OutputSet:
    """Files that change together, all in one folder.

    Each file is written to a temporary file beside its destination (``.<name>.*.tmp``)
    and fsynced; :meth:`commit` then records the set in a journal and renames the files
    in the order they were staged (so the last one staged, e.g. a manifest, is renamed
    last). A failure before the commit changes none of them and removes the temporary
    files; a run killed during the renames is completed by :func:`recover_folder`, which
    the next run that takes the folder's lock calls.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def write(self, path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
        """Stage ``path`` through ``write(fh)``; returns the temporary file (to hash, say)."""
        path = Path(path)
        if path.is_dir():
            raise UserError(f"cannot write {path}: a folder stands where the file should be")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except FileExistsError:
            raise UserError(f"cannot write {path}: a file stands where a folder above it should be") from None
        except OSError as exc:
            raise _write_failed(path, exc) from None
        self._staged.append((Path(tmp), path))
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
        except OSError as exc:
            raise _write_failed(path, exc) from None
        return Path(tmp)

    def write_bytes(self, path: Path, data: bytes) -> Path:
        return self.write(path, lambda fh: fh.write(data))

    def write_json(self, path: Path, obj: Any) -> Path:
        return self.write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())

    def discard(self) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._staged = []

    def commit(self) -> None:
        if not self._staged:
            return
        folders = {dest.parent for _, dest in self._staged}
        if len(folders) != 1:
            raise ValueError(f"an output set spans several folders: {sorted(map(str, folders))}")
        folder = folders.pop()
        for _, dest in self._staged:  # a folder that appeared since staging fails here, before any rename
            if dest.is_dir():
                raise UserError(f"cannot write {dest}: a folder stands where the file should be")
        journal = folder / JOURNAL
        if len(self._staged) > 1:
            atomic_write_json(journal, [[tmp.name, dest.name] for tmp, dest in self._staged])
        for tmp, dest in self._staged:
            os.replace(tmp, dest)
        _fsync_dir(folder)
        if len(self._staged) > 1:
            os.unlink(journal)
        self._staged = []


@contextlib.contextmanager
def staged_writes() -> Iterator[OutputSet]:
    """An :class:`OutputSet` committed when the block ends, discarded if it raises."""
    out = OutputSet()
    try:
        yield out
    except BaseException:
        out.discard()
        raise
    try:
        out.commit()
    except BaseException:
        out.discard()
        raise


def recover_folder(folder: Path) -> None:
    """Finish the renames of a set a killed run had committed; remove its temporary files.

    Call only while holding the lock of ``folder``: no other run writes there then.
    """
    folder = Path(folder)
    journal = folder / JOURNAL
    try:
        pairs = json.loads(journal.read_text())
    except (OSError, ValueError):
        pairs = None
    if isinstance(pairs, list):
        done = 0
        for tmp, dest in pairs:
            with contextlib.suppress(FileNotFoundError):
                os.replace(folder / os.path.basename(tmp), folder / os.path.basename(dest))
                done += 1
        _fsync_dir(folder)
        log.warning("outputs.recovered", folder=str(folder), files=[d for _, d in pairs], renamed=done,
                    reason="a killed run had committed them")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(journal)
    try:
        leftovers = [e.name for e in os.scandir(folder) if _TEMP.match(e.name) and e.is_file(follow_symlinks=False)]
    except OSError:
        return
    for name in leftovers:
        with contextlib.suppress(OSError):
            os.unlink(folder / name)
    if leftovers:
        log.warning("outputs.temp_removed", folder=str(folder), files=sorted(leftovers),
                    reason="left by a run that was killed")


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(fh)`` into a temporary file beside it, then rename.

    An interruption leaves ``path`` as it was; the temporary file is removed on error.
    """
    with staged_writes() as out:
        out.write(path, write)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


class LockBusy(UserError):
    """Another run holds the lock: retry later (EX_TEMPFAIL)."""

    exit_code = 75


@contextlib.contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """Hold ``path`` (an ``flock`` on it) for the duration; a second run stops at once.

    The kernel releases an ``flock`` when its holder dies, so a lock file left by a
    killed run is taken over atomically; the takeover is logged with the old pid, and
    the folder's leftovers are recovered (see :func:`recover_folder`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, created = _lock_fd(path, what)
    try:
        previous = os.pread(fd, 1 << 16, 0).decode(errors="replace")
        if previous:
            holder = _parse_holder(previous)
            log.warning("lock.recovered", path=str(path), old_pid=holder.get("pid"), old_host=holder.get("host"),
                        since=holder.get("since"), reason="its run ended without releasing it")
        elif not created:
            log.warning("lock.stale", path=str(path), reason="empty lock file with no live holder")
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": utc_now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        recover_folder(path.parent)
        yield
    finally:
        # unlink while still holding it: a run that opened the old file then sees it is gone
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _lock_fd(path: Path, what: str) -> tuple[int, bool]:
    """(an fd holding the flock of ``path``, whether this call created the file); the
    file is checked to still be the one at ``path`` once locked."""
    while True:
        created = False
        try:
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
            except FileNotFoundError:
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                    created = True
                except FileExistsError:
                    continue
        except OSError as exc:
            raise UserError(f"cannot take lock {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _parse_holder(os.pread(fd, 4096, 0).decode(errors="replace"))
            os.close(fd)
            raise LockBusy(
                f"busy, retry: another run is writing {what} (lock {path} held by pid {holder.get('pid', '?')} "
                f"on {holder.get('host', '?')} since {holder.get('since', '?')})"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, created
        os.close(fd)  # released and removed meanwhile by its holder: take the new one


def _parse_holder(text: str) -> dict:
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


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
