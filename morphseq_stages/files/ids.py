"""Safe identifiers: refuse an id that would escape its folder or break a file name."""

from __future__ import annotations

from ..errors import UserError

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
