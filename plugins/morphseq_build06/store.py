"""Reading the latent files of a run, side by side, once, whatever their format (CSV, a
Parquet file, a folder of Parquet shards).

The plan reads them (its counts need their snip ids); the merge reuses what the plan
read unless a file changed since (generation wrote it) or the set of z columns grew.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pyarrow as pa

from morphseq_stages.errors import UserError

from . import keys, parquet_store
from .csvtext import value_bytes
from .inputs import ReadFile, source_state
from .latents import (
    LatentRows,
    check_names,
    dimension_columns,
    dimension_key,
    read_csv_header,
    read_csv_rows,
    select_z_columns,
)


def read_latent_header(path: Path) -> tuple[str, ...]:
    if parquet_store.is_parquet(path):
        return parquet_store.header(path)
    return read_csv_header(path)


def latent_z_columns(path: Path, schema: str = "auto", include_sigma: bool = False) -> tuple[str, ...]:
    """The z columns of a latent file that a schema keeps; an error if there are none."""
    names = read_latent_header(path)
    check_names(names, path)
    zcols = select_z_columns(names, schema, include_sigma)
    if not zcols:
        raise UserError(f"latent file {path} has no z columns for --z-schema {schema} (columns: {', '.join(names[:8])}...)")
    keys = [dimension_key(c) for c in zcols]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise UserError(f"latent file {path} names dimension {twice[1] if twice else '?'} twice (flat and b/n)")
    return tuple(zcols)


def read_latent_rows(path: Path, columns: Sequence[str], order: Sequence[str]) -> LatentRows:
    """Read ``snip_id`` and ``columns`` (text, nothing parsed away) of a latent file;
    each name of ``order`` takes this file's column for the same dimension."""
    by_dim = {dimension_key(c): c for c in columns}
    names = {o: by_dim[dimension_key(o)] for o in order if dimension_key(o) in by_dim}
    if parquet_store.is_parquet(path):
        return parquet_store.read_rows(path, columns, order, names)
    return read_csv_rows(path, columns, order, names)


@attrs.frozen(kw_only=True)
class StoreRead:
    columns: tuple[str, ...]  # the z columns of all files together, in dimension order
    rows: Mapping[str, LatentRows]  # by experiment, in the order asked for
    lines: pa.Array  # large_binary: every file's z text in one buffer; each ``rows[e].lines`` is a slice of it
    stamps: Mapping[str, tuple[int, int] | None]  # (mtime_ns, size) of each file as read
    keys: Mapping[str, tuple[pa.Array, dict[str, int]]]  # normalised snip ids of each file, rules that fired

    def identities(self) -> dict[str, dict[str, Any]]:
        """Each experiment's latent file (or folder of shards) as read: what an output built
        from this read records, whatever the files hold by the time it is written."""
        return {e: source_state(r.path, r.sources) for e, r in self.rows.items()}

    def files(self) -> list[ReadFile]:
        """Every file read (each shard of a folder), in the order read."""
        return [f for r in self.rows.values() for f in r.sources]


def stamp(path: Path) -> tuple[int, int] | None:
    """(mtime, size) of a latent file, or of a folder of shards (its newest shard, their
    total size): how a later look tells that it changed since it was read. None: not there."""
    try:
        if path.is_dir():
            stats = [os.stat(p) for p in parquet_store.shards(path)[0]]
            return max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats)
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def read_store(paths: Mapping[str, Path], schema: str, include_sigma: bool, previous: StoreRead | None = None) -> StoreRead:
    existing = {e: p for e, p in paths.items() if p.is_file() or p.is_dir()}
    zcols = {e: latent_z_columns(p, schema, include_sigma) for e, p in existing.items()}
    columns = tuple(dimension_columns([c for cols in zcols.values() for c in cols]))
    stamps = {e: stamp(p) for e, p in existing.items()}
    rows = {e: previous.rows[e] for e in existing
            if e in previous.rows and previous.stamps.get(e) == stamps[e]} \
        if previous is not None and previous.columns == columns else {}
    todo = [e for e in existing if e not in rows]
    if previous is not None and not todo and list(previous.rows) == list(existing):
        return previous
    # one buffer for all files (so that the merge indexes it without copying it again),
    # filled file by file while the next files are still being read
    data = bytearray()
    offsets = [np.zeros(1, np.int64)]
    sliced = {}
    with ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1))) as pool:
        # Arrow releases the GIL: files are read and checked side by side
        fresh = pool.map(lambda e: read_latent_rows(existing[e], zcols[e], columns), todo)
        for e in existing:
            got = rows[e] if e in rows else next(fresh)
            off, values = value_bytes(got.lines)
            offsets.append(off[1:] + len(data))
            data += values
            sliced[e] = got
    bounds = np.concatenate(offsets)
    lines = pa.Array.from_buffers(pa.large_binary(), len(bounds) - 1, [None, pa.py_buffer(bounds), pa.py_buffer(data)])
    at = 0
    for e, got in sliced.items():
        sliced[e] = attrs.evolve(got, lines=lines.slice(at, len(got.lines)))
        at += len(got.lines)
    normalised = {e: previous.keys[e] if previous is not None and e in rows else keys.normalise(got.snip_ids)
                  for e, got in sliced.items()}
    return StoreRead(columns=columns, rows=sliced, lines=lines, stamps=stamps, keys=normalised)
