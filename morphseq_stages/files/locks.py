"""Run locks: an ``flock`` per output folder, taken over from a killed run, whose folder is then recovered."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

from ..errors import UserError
from .staged import JOURNAL, _make_folders, _remove_empty, recover_folder

log = structlog.get_logger()


def utc_now() -> str:
    """The current time as every record of ours writes it: ISO 8601, UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or a device: not a lock any run of ours made
            os.close(fd)
            raise UserError(f"cannot take lock {path}: it is not a regular file; remove it")
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
