"""File hashing: sha256 of a file, remembered while the file is unchanged, taken as it is written or read."""

from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from ..errors import UserError

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
        """Write ``data`` to the file and add it to the running sha256."""
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
