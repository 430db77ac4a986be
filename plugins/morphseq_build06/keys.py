"""Join keys: snip ids normalised for matching (values are never changed).

Rules, each counted when it fires: surrounding whitespace, a file extension, the
historic ``_s<NNNN>`` for ``_t<NNNN>``, and (only for rows that match no other way) a
channel token such as ``_BF`` or ``_ch00`` before the time index.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .csvtext import value_bytes

RULES = ("whitespace", "extension", "s_to_t")
_EXT = r"(?i)\.(jpe?g|png|tiff?)$"
_S_TO_T = r"_s(\d{4})$"
_CHANNEL = r"_(?:BF|bf|ch\d+)(_t\d{4})$"
_EXPERIMENT = re.compile(r"^(.+?)_[A-Za-z]\d{2}_e\d+(?:_[A-Za-z0-9]+)?_[ts]\d{4}$")


def _apply(keys: pa.Array, counts: dict[str, int], rule: str, out: pa.Array) -> pa.Array:
    counts[rule] = counts.get(rule, 0) + int(pc.sum(pc.not_equal(keys, out)).as_py() or 0)
    return out


def _maybe(keys: pa.Array, *needles: bytes) -> bool:
    """Whether any key holds one of ``needles``: a rule's regular expression runs only then
    (most runs need none, and a search of the keys' bytes costs a tenth of it)."""
    data = bytes(value_bytes(keys)[1])
    return any(n in data for n in needles)


def normalise(snip_ids: pa.Array) -> tuple[pa.Array, dict[str, int]]:
    counts: dict[str, int] = {}
    k = _apply(snip_ids, counts, "whitespace", pc.utf8_trim_whitespace(snip_ids))
    k = _apply(k, counts, "extension", pc.replace_substring_regex(k, _EXT, "") if _maybe(k, b".") else k)
    k = _apply(k, counts, "s_to_t", pc.replace_substring_regex(k, _S_TO_T, r"_t\1") if _maybe(k, b"_s") else k)
    return k, counts


def without_channel(keys: pa.Array) -> pa.Array:
    if not _maybe(keys, b"_BF", b"_bf", b"_ch"):
        return keys
    return pc.replace_substring_regex(keys, _CHANNEL, r"\1")


def experiment_of(snip_id: str) -> str:
    m = _EXPERIMENT.match(snip_id.strip())
    return m.group(1) if m else ""


def row_experiments(snip_ids: pa.Array, dates: pa.Array | None) -> np.ndarray:
    """Each row's experiment: its ``experiment_date`` (trimmed), else the one its snip id
    names; the one rule for df02, df03, the training metadata and the analysis copies."""
    if dates is None:
        out = np.array([""] * len(snip_ids), dtype=object)
    else:
        out = pc.fill_null(pc.utf8_trim_whitespace(pc.cast(dates, pa.string())), "").to_numpy(
            zero_copy_only=False).astype(object)
    blank = np.flatnonzero(out == "")
    if len(blank):
        out[blank] = [experiment_of(s or "") for s in snip_ids.take(pa.array(blank, pa.int64())).to_pylist()]
    return out


def first_of(keys: pa.Array) -> np.ndarray:
    """For each key, the position of its first occurrence (hash based, no sorting)."""
    return pc.index_in(keys, value_set=keys).to_numpy(zero_copy_only=False)


def repeats(keys: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(position of each key's first occurrence, whether the key occurs more than once)."""
    first = first_of(keys)
    at = np.arange(len(keys))
    later = first != at
    return first, later | np.isin(at, first[later])


def positions(left: pa.Array, unique_right: pa.Array) -> np.ndarray:
    """Row of ``unique_right`` holding each left key, or -1."""
    return pc.index_in(left, value_set=unique_right).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def match(left: pa.Array, right: pa.Array, channel_free: pa.Array | None = None,
          channel_rows: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Row of the unique keys ``right`` for each left key (-1: none), and how many matched
    only once a channel token was dropped."""
    pos = positions(left, right)
    by_channel = 0
    missing = np.flatnonzero(pos < 0)
    if len(missing) and channel_free is not None and channel_rows is not None and len(channel_free):
        alt = positions(without_channel(left.take(pa.array(missing))), channel_free)
        hit = alt >= 0
        pos[missing[hit]] = channel_rows[alt[hit]]
        by_channel = int(hit.sum())
    return pos, by_channel


def channel_free_index(keys: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The channel-free keys that stay unique, with the rows they point to."""
    stripped = without_channel(keys)
    _, shared = repeats(stripped)
    rows = np.flatnonzero(~shared)
    return stripped.take(pa.array(rows, pa.int64())), rows
