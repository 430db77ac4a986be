"""The latent rows a merge matches df02 against: unique, finite, by normalised key.

Built once from the latent files as read (``store.StoreRead``): the plan builds it to
predict coverage, and the merge uses the same index unless generation changed the files.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from . import keys
from .records import Duplicates, Hygiene, IndexCounts
from .store import StoreRead

log = structlog.get_logger()
EXAMPLES = 5
NON_FINITE, ODD = 1, 2  # why a key's latent rows are all unusable
#: the reason each code gives a df02 row in the unembedded list
UNUSABLE = {NON_FINITE: "non-finite latent values",
            ODD: "latent row holds a cell that is not one number (text, a comma, a line break)"}


@attrs.frozen(kw_only=True)
class LatentIndex:
    """Unique, finite latent rows by normalised key, their z cells kept as text."""

    columns: tuple[str, ...]
    lines: pa.Array  # large_binary: each latent row's z cells, comma-joined, as its file wrote them
    rows: np.ndarray  # the row of ``lines`` behind each ``index`` entry
    index: pa.Array  # unique normalised keys
    channel_index: pa.Array
    channel_rows: np.ndarray
    bad_keys: pa.Array  # keys whose only latent rows are non-finite or hold a cell that is not one number
    odd_keys: pa.Array = pa.array([], pa.string())  # those of ``bad_keys`` with a cell that is not one number

    def match(self, snip_ids: pa.Array) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
        """(latent row per id or -1, rules that fired, why the id's rows are all unusable:
        ``UNUSABLE`` codes, 0 when they are not)."""
        return self.match_keys(*keys.normalise(snip_ids))

    def match_keys(self, k: pa.Array, rules: dict[str, int]) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
        """The same for ids already normalised (``rules``: the rules that fired on them)."""
        pos, by_channel = keys.match(k, self.index, self.channel_index, self.channel_rows)
        unusable = pc.is_in(k, value_set=self.bad_keys).to_numpy(zero_copy_only=False).astype(np.int8)
        if len(self.odd_keys) and unusable.any():
            unusable[pc.is_in(k, value_set=self.odd_keys).to_numpy(zero_copy_only=False)] = ODD
        return pos, {**rules, "channel_token": by_channel}, unusable

    def cells(self, take: np.ndarray) -> list[pa.Array]:
        """The z cells for rows ``take`` (-1: empty cells), as one text column to append."""
        if not self.columns:
            return []
        missing = take < 0
        if len(self.rows):
            rows = self.rows[np.where(missing, 0, take)]
            picked = self.lines.take(pa.array(rows, pa.int64(), mask=missing)).cast(pa.binary())
        else:
            picked = pa.nulls(len(take), pa.binary())
        return [picked.fill_null(pa.scalar(b"," * (len(self.columns) - 1), pa.binary()))]


@attrs.frozen(kw_only=True)
class LatentMatch:
    """An index and how df02's rows match it (see :meth:`LatentIndex.match_keys`)."""

    index: LatentIndex
    info: IndexCounts
    take: np.ndarray
    rules: dict[str, int]
    unusable: np.ndarray  # per df02 row: an ``UNUSABLE`` code, 0 when its latent rows are not all unusable


def index_latents(read: StoreRead, experiments: Sequence[str]) -> tuple[LatentIndex, IndexCounts]:
    """The index of the files of ``experiments`` (those that exist), with its counts."""
    files = [read.rows[e] for e in experiments if e in read.rows]
    examples: list[dict[str, str]] = []
    rules: dict[str, int] = {}
    for t in files:
        examples += [{"file": t.path.name, "snip_id": t.snip_ids[int(i)].as_py(),
                      **({"cell": t.odd_cells[int(i)]} if int(i) in t.odd_cells else {})}
                     for i in np.flatnonzero(t.unusable)[:EXAMPLES - len(examples)]]
    hygiene = Hygiene(rows_with_nan=sum(int(t.nan_rows.sum()) for t in files),
                      rows_with_inf=sum(int(t.inf_rows.sum()) for t in files),
                      rows_not_one_number=sum(int(t.odd_rows.sum()) for t in files), examples=tuple(examples))
    for e in experiments:
        for r, c in read.keys[e][1].items() if e in read.keys else ():
            rules[r] = rules.get(r, 0) + c
    all_keys = pa.concat_arrays([read.keys[e][0] for e in experiments if e in read.rows]) if files \
        else pa.array([], pa.string())
    finite = np.concatenate([~t.unusable for t in files]) if files else np.empty(0, bool)
    odd = np.concatenate([t.odd_rows for t in files]) if files else np.empty(0, bool)
    good = np.flatnonzero(finite)
    good_keys = all_keys.take(pa.array(good, pa.int64()))
    first, dups = _duplicates(good_keys, read.lines, good)
    bad_keys = pc.unique(all_keys.filter(pa.array(~finite)))
    bad_keys = bad_keys.filter(pc.invert(pc.is_in(bad_keys, value_set=good_keys)))
    odd_keys = pc.unique(all_keys.filter(pa.array(odd))) if odd.any() else pa.array([], pa.string())
    idx_keys = good_keys.filter(pa.array(first))
    channel_index, channel_rows = keys.channel_free_index(idx_keys)
    index = LatentIndex(columns=read.columns, lines=read.lines, rows=good[first], index=idx_keys,
                        channel_index=channel_index, channel_rows=channel_rows, bad_keys=bad_keys, odd_keys=odd_keys)
    return index, IndexCounts(files=len(files), latent_rows=int(len(all_keys)), z_columns=len(read.columns),
                              hygiene=hygiene, duplicates=dups, key_rules=rules)


def _parse_lines(lines: pa.Array) -> list[np.ndarray]:
    return [np.array([float(v) if v else np.nan for v in ln.split(b",")]) for ln in lines.to_pylist()]


def _duplicates(keys_: pa.Array, lines: pa.Array, rows: np.ndarray) -> tuple[np.ndarray, Duplicates]:
    """Keep the first row of each key; count identical repeats and conflicting keys.

    ``keys_[i]`` is the key of ``lines[rows[i]]``.
    """
    first_of, shared = keys.repeats(keys_)
    first = first_of == np.arange(len(keys_))
    if first.all():
        return first, Duplicates()
    identical, conflicting, examples = 0, 0, list[str]()
    dup = np.flatnonzero(shared)
    groups: dict[int, list[np.ndarray]] = {}
    for g, v in zip(first_of[dup], _parse_lines(lines.take(pa.array(rows[dup], pa.int64()))), strict=True):
        groups.setdefault(int(g), []).append(v)
    for g, values in groups.items():
        distinct: list[np.ndarray] = []
        for v in values:
            if any(np.array_equal(v, d, equal_nan=True) for d in distinct):
                identical += 1
            else:
                distinct.append(v)
        if len(distinct) > 1:
            conflicting += 1
            if len(examples) < EXAMPLES:
                examples.append(keys_[g].as_py())
    return first, Duplicates(identical_dropped=identical, conflicting_keys=conflicting, examples=tuple(examples))


def log_index(read: StoreRead, experiments: Sequence[str], info: IndexCounts,
              stale: frozenset[str] = frozenset()) -> None:
    """The events of an index: each file found, rows left out as non-finite, duplicates."""
    bad_rows = 0
    for e in experiments:
        if e in read.rows:
            t = read.rows[e]
            log.info("latents.stale" if e in stale else "latents.found", path=str(t.path), experiment=e,
                     rows=len(t.snip_ids), z_columns=len(t.columns))
            bad_rows += int(t.unusable.sum())
    if bad_rows:
        log.warning("hygiene.non_finite", rows=bad_rows, **info.hygiene.as_dict())
    dups = info.duplicates
    if dups.identical_dropped or dups.conflicting_keys:
        (log.warning if dups.conflicting_keys else log.info)("latents.duplicates", **dups.as_dict())


def odd_rows_warning(hygiene: Hygiene, outcome: str) -> str:
    """The warning about latent rows holding a cell that is not one number, with examples."""
    cells = [f"{e['file']} {e['snip_id']}: {e['cell']}" for e in hygiene.examples if "cell" in e]
    return (f"{hygiene.rows_not_one_number} latent row(s) hold a cell that is not one number and {outcome}"
            + (f", e.g. {'; '.join(cells[:3])}" if cells else ""))
