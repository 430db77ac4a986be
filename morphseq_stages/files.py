"""Safe file handling: atomic writes, run locks, hashing, safe identifiers."""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import json
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import structlog

from . import logs
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


#: sha256 by (real path, inode, size, mtime_ns): a file unchanged since it was hashed,
#: or written through :class:`HashingWriter`, is not read again
_DIGESTS: dict[tuple[str, int, int, int], str] = {}
_DIGESTS_KEPT = 4096


def _digest_key(path: Path | str, st: os.stat_result) -> tuple[str, int, int, int]:
    return os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns


def _remember(key: tuple[str, int, int, int], digest: str) -> None:
    if len(_DIGESTS) >= _DIGESTS_KEPT:
        _DIGESTS.pop(next(iter(_DIGESTS)), None)
    _DIGESTS[key] = digest


def _renamed(old: Path, new: Path) -> None:
    """Keep the digests of a file that was renamed (same inode, size and mtime)."""
    before = os.path.realpath(old)
    for key in [k for k in _DIGESTS if k[0] == before]:
        _remember((os.path.realpath(new), *key[1:]), _DIGESTS[key])


def sha256_file(path: Path) -> str:
    """sha256 of a file; one that has not changed since (same inode, size, mtime) is not read again."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would be read forever
        raise UserError(f"cannot hash {path}: it is not a regular file")
    key = _digest_key(path, st)
    digest = _DIGESTS.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(key[0], "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        digest = h.hexdigest()
        _remember(key, digest)
    return digest


def remember_sha256(path: Path, st: os.stat_result, data: bytes | memoryview) -> None:
    """Hash ``data``, the whole of ``path`` read when it was as ``st`` says, unless the file
    changed since: :func:`sha256_file` then reads nothing."""
    now = os.stat(path)
    unchanged = (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    if unchanged and len(data) == st.st_size:
        _remember(_digest_key(path, st), hashlib.sha256(data).hexdigest())


class HashingWriter:
    """A file handle that hashes what is written, on a thread of its own, as it goes.

    Writing a large output and then reading it back to hash it costs a second pass; here
    the hash is ready when the writing is. A read-only buffer (``bytes``, or a
    ``memoryview(...).toreadonly()``) is hashed later on the thread: the writer promises
    not to change it; any other buffer is hashed at once. A writer that does more than
    write (seek, truncate, ...) gets no digest: the hash would not describe the file.
    """

    _HARMLESS = frozenset({"flush", "fileno", "closed", "name", "mode", "writable", "readable", "seekable"})

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        self._last: Future[None] | None = None
        self.written = 0
        self.sequential = True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        n = self._fh.write(view)
        self.written += view.nbytes
        self._wait()  # one buffer at a time waits for its hash: memory stays bounded
        if view.readonly:
            self._last = self._pool.submit(self._hash.update, view)
        else:
            self._hash.update(view)
        return n

    def __getattr__(self, name: str) -> Any:
        if name not in self._HARMLESS:
            self.sequential = False
        return getattr(self._fh, name)

    def _wait(self) -> None:
        if self._last is not None:
            self._last.result()
            self._last = None

    def digest(self) -> str | None:
        """The sha256 of what was written, or None when writes alone do not make the file."""
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
        return self._hash.hexdigest() if self.sequential else None


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
    """Files that change together.

    Each file is written to a temporary file beside its destination (``.<name>.*.tmp``)
    and fsynced; :meth:`commit` then renames them folder by folder, in the order they
    were staged (so the last one staged, e.g. a manifest or a sidecar, is renamed last).
    While a folder's files are renamed, a journal there names them: a run killed
    meanwhile is completed by :func:`recover_folder`, which the next run that takes the
    folder's lock calls. A failure before the commit changes none of them and removes
    the temporary files.
    """

    def __init__(self) -> None:
        self._staged: dict[Path, Path] = {}  # destination -> temporary file, in staging order
        self._made: list[Path] = []  # folders made for it, removed again if it is discarded

    def staged(self, path: Path) -> Path | None:
        """The temporary file holding what ``path`` will be, if it is staged here."""
        return self._staged.get(Path(path))

    def write(self, path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
        """Stage ``path`` through ``write(fh)``; returns the temporary file."""
        return self._stage(path, lambda tmp, fd: _write_fd(fd, write, tmp))

    def write_path(self, path: Path, write: Callable[[Path], Any]) -> Path:
        """Stage ``path`` through a writer that wants a file name (``write(tmp)``)."""
        def fill(tmp: Path, fd: int) -> None:
            os.close(fd)
            write(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        return self._stage(path, fill)

    def _stage(self, path: Path, fill: Callable[[Path, int], None]) -> Path:
        path = Path(path)
        if path.is_dir():
            raise UserError(f"cannot write {path}: a folder stands where the file should be")
        try:
            self._made += _make_folders(path.parent)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except (FileExistsError, NotADirectoryError):
            raise UserError(f"cannot write {path}: a file stands where a folder above it should be") from None
        except OSError as exc:
            raise _write_failed(path, exc) from None
        tmp = Path(name)
        previous = self._staged.pop(path, None)
        if previous is not None:
            _unlink(previous)
        self._staged[path] = tmp
        try:
            fill(tmp, fd)
            os.chmod(tmp, 0o644)
        except OSError as exc:
            raise _write_failed(path, exc) from None
        return tmp

    def discard(self) -> None:
        for tmp in self._staged.values():
            _unlink(tmp)
        self._staged = {}
        _remove_empty(self._made)
        self._made = []

    def commit(self) -> None:
        for dest in self._staged:  # a folder that appeared since staging fails here, before any rename
            if dest.is_dir():
                raise UserError(f"cannot write {dest}: a folder stands where the file should be")
        logs.library_default()  # used as a library (no CLI): never print the events below on stdout
        by_folder: dict[Path, list[tuple[Path, Path]]] = {}
        for dest, tmp in self._staged.items():
            by_folder.setdefault(dest.parent, []).append((tmp, dest))
        for folder, pairs in by_folder.items():
            journal = folder / JOURNAL
            if len(pairs) > 1:
                _write_journal(journal, pairs)
            for tmp, dest in pairs:
                os.replace(tmp, dest)
                _renamed(tmp, dest)
                del self._staged[dest]
            _fsync_dir(folder)
            if len(pairs) > 1:
                os.unlink(journal)
            # the files are in place only now: write.staged events said their bytes were ready
            log.info("outputs.committed", folder=str(folder), files=[dest.name for _, dest in pairs])


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; the ones made, outermost first."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for f in reversed(missing):
        f.mkdir(exist_ok=True)
    return list(reversed(missing))


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders made (listed outermost first) that are still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _write_fd(fd: int, write: Callable[[IO[bytes]], Any], path: Path | None = None) -> None:
    """Fill ``fd`` through ``write(fh)`` and fsync it; with ``path`` (the file's name), its
    sha256 is taken as it is written, so that hashing it later reads nothing."""
    with os.fdopen(fd, "wb") as fh:
        if path is None:
            write(fh)
        else:
            hashing = HashingWriter(fh)
            try:
                write(hashing)  # type: ignore[arg-type]  # it stands in for the handle
            finally:
                digest = hashing.digest()
        fh.flush()
        os.fsync(fh.fileno())
        if path is not None and digest is not None:
            st = os.fstat(fh.fileno())
            if st.st_size == hashing.written:
                _remember(_digest_key(path, st), digest)


def _write_journal(journal: Path, pairs: list[tuple[Path, Path]]) -> None:
    fd, name = tempfile.mkstemp(prefix=f"{journal.name}.", suffix=".tmp", dir=journal.parent)
    try:
        _write_fd(fd, lambda fh: fh.write(json.dumps([[t.name, d.name] for t, d in pairs]).encode()))
        os.replace(name, journal)
    except BaseException:
        _unlink(Path(name))
        raise
    _fsync_dir(journal.parent)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


_ACTIVE: contextvars.ContextVar[OutputSet | None] = contextvars.ContextVar("morphseq_output_set", default=None)


@contextlib.contextmanager
def staged_writes() -> Iterator[OutputSet]:
    """Every :func:`atomic_write` in the block joins one :class:`OutputSet`, committed
    when the block ends and discarded if it raises. Nested blocks join the outer set."""
    outer = _ACTIVE.get()
    if outer is not None:
        yield outer
        return
    out = OutputSet()
    token = _ACTIVE.set(out)
    try:
        yield out
        out.commit()
    except BaseException:
        out.discard()
        raise
    finally:
        _ACTIVE.reset(token)


def staged_path(path: Path) -> Path:
    """Where the bytes ``path`` will hold are now: its temporary file while staged, else itself."""
    out = _ACTIVE.get()
    return (out.staged(path) if out is not None else None) or Path(path)


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
    if isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs):
        done = 0
        for tmp, dest in pairs:
            if not (_TEMP.match(tmp) and tmp.startswith(f".{dest}.") and os.path.basename(dest) == dest):
                continue  # not a pair an output set writes
            with contextlib.suppress(FileNotFoundError):
                os.replace(folder / tmp, folder / dest)
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
    try:
        made = _make_folders(path.parent)
    except OSError as exc:
        raise UserError(f"cannot take lock {path}: {exc.strerror or exc}") from None
    try:
        fd, created = _lock_fd(path, what)
    except BaseException:
        _remove_empty(made)
        raise
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
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
        except OSError as exc:
            raise UserError(f"cannot take lock {path}: {exc.strerror or exc}") from None
        recover_folder(path.parent)
        yield
    finally:
        # unlink while still holding it: a run that opened the old file then sees it is gone
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
        _remove_empty(made)  # a run that wrote nothing leaves no folder behind


def recover_if_free(path: Path, what: str) -> None:
    """For a run that only reads a folder: if a killed run left its lock or journal there
    and no run holds the lock now, take it for a moment to recover the folder."""
    path = Path(path)
    if not (path.exists() or (path.parent / JOURNAL).exists()):
        return
    try:
        with exclusive_lock(path, what):
            pass
    except LockBusy:
        pass  # its holder is alive and will finish its own set


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
