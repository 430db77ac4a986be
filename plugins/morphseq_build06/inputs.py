"""What a run read: each input file's identity, taken from the bytes read, when they were read.

An output's record (``built_from`` and ``inputs`` in its sidecar) is made from these, never
from the files as they are when the output is written: a file that appears or changes
between the read and the export (a --generate-only job beside a merge, a row appended to
df02) is then not recorded as merged, and the next plan sees it as new.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import attrs

from morphseq_stages.errors import UserError
from morphseq_stages.files import remember_sha256


@attrs.frozen(kw_only=True)
class ReadFile:
    """One file as a run read it: its size and mtime from the open file, its sha256 from the bytes."""

    path: Path
    size: int
    mtime_ns: int
    digest: Future = attrs.field(repr=False, eq=False)

    @property
    def sha256(self) -> str:
        return str(self.digest.result())

    def state(self, recorded: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """As ``freshness.file_state`` gives it for a file, but of the bytes read; the
        recorded sha256 is trusted (not waited for) when the file read had the recorded
        size and mtime."""
        trusted = recorded and recorded.get("size") == self.size and recorded.get("mtime_ns") == self.mtime_ns
        sha = recorded.get("sha256") if recorded and trusted else None
        return {"sha256": sha or self.sha256, "size": self.size, "mtime_ns": self.mtime_ns}


def _hash(path: Path, st: os.stat_result, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    remember_sha256(path, st, data)  # a later sha256_file of the unchanged file reads nothing
    return digest


def read_file(path: Path, what: str, *, hash_now: bool = False) -> tuple[bytes, ReadFile]:
    """The bytes of a regular file and their identity; a FIFO, a device or a folder is
    refused before anything is read (the open does not wait for a FIFO's writer).

    The sha256 is taken at once with ``hash_now``, else on a thread of its own (ready
    when the record asks for it).
    """
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UserError(f"{what} {path} is not a regular file")
            data = fh.read()
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is not a regular file") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    digest: Future[str] = Future()
    if hash_now:
        digest.set_result(_hash(path, st, data))
    else:
        def work() -> None:
            try:
                digest.set_result(_hash(path, st, data))
            except BaseException as exc:  # noqa: BLE001  # handed to whoever asks for the digest
                digest.set_exception(exc)
        threading.Thread(target=work, name="sha256").start()
    return data, ReadFile(path=Path(path), size=st.st_size, mtime_ns=st.st_mtime_ns, digest=digest)


def read_regular_text(path: Path) -> str:
    """A small text file (a sidecar, a manifest, a sentinel) without ever waiting on a FIFO:
    a path that is not a regular file raises OSError saying what it is."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{path} is {special_kind(st)}, not a regular file")
        return fh.read().decode()


def special_kind(st: os.stat_result) -> str:
    """What a file that is not a regular file is, in words."""
    mode = st.st_mode
    return ("a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a special file")


def not_regular(path: Path) -> str | None:
    """Why ``path``, which is there (perhaps as a link to nothing), cannot be read as a file;
    None for a regular file or a path with nothing there."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a symbolic link to nothing" if os.path.islink(path) else None
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None if stat.S_ISREG(st.st_mode) else special_kind(st)


def source_state(path: Path, files: Sequence[ReadFile]) -> dict[str, Any]:
    """The identity of a latent source as read: a file's own, or for a folder of shards
    the shards read, their names and contents together (as ``freshness.file_state``)."""
    if len(files) == 1 and files[0].path == Path(path):
        return files[0].state()
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.path.relative_to(path)}\0{f.sha256}\n".encode())
    return {"sha256": h.hexdigest(), "size": sum(f.size for f in files), "mtime_ns": None}
