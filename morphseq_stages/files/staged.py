"""Staged sets: files written beside their destinations and renamed together, with a journal that lets the next run finish a killed commit."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import structlog

from .. import logs
from ..errors import UserError
from .hashing import HashingWriter, _digest_key, _remember, _renamed

log = structlog.get_logger()


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
        """Remove every staged temporary file and the folders made for them; nothing is renamed."""
        for tmp in self._staged.values():
            _unlink(tmp)
        self._staged = {}
        _remove_empty(self._made)
        self._made = []

    def commit(self) -> None:
        """Rename every staged file into place, folder by folder, in staging order, journalled while a folder holds several."""
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
                try:
                    _write_journal(journal, pairs)
                except OSError as exc:  # nothing renamed yet: the set is discarded whole
                    names = ", ".join(dest.name for _, dest in pairs)
                    raise UserError(f"cannot write {journal} (the commit record of {names} in {folder}): "
                                    f"{exc.strerror or exc}") from None
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


def _read_regular(path: Path) -> bytes:
    """A small file's bytes, refusing (OSError) what is not a regular file: a FIFO is never waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return fh.read()


def recover_folder(folder: Path) -> None:
    """Finish the renames of a set a killed run had committed; remove its temporary files.

    Call only while holding the lock of ``folder``: no other run writes there then.
    """
    folder = Path(folder)
    journal = folder / JOURNAL
    try:
        pairs = json.loads(_read_regular(journal))
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
