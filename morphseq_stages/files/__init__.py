"""Safe file handling, by concern: staged sets, atomic writes, run locks, hashing, safe identifiers.

The public names are importable from here; each lives in the module of its concern.
"""

from .atomic import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_path,
    check_writable,
)
from .hashing import HashingWriter, remember_sha256, sha256_file, sha256_files_in_background
from .ids import MAX_ID_BYTES, check_safe_id
from .locks import LockBusy, exclusive_lock, recover_if_free, utc_now
from .staged import JOURNAL, OutputSet, recover_folder, staged_path, staged_writes

__all__ = [
    "JOURNAL",
    "MAX_ID_BYTES",
    "HashingWriter",
    "LockBusy",
    "OutputSet",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_path",
    "check_safe_id",
    "check_writable",
    "exclusive_lock",
    "recover_folder",
    "recover_if_free",
    "remember_sha256",
    "sha256_file",
    "sha256_files_in_background",
    "staged_path",
    "staged_writes",
    "utc_now",
]
