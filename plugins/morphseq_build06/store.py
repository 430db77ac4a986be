"""Reading the latent files of a run, side by side, once.

The plan reads them (its counts need their snip ids); the merge reuses what the plan
read unless a file changed since (generation wrote it) or the set of z columns grew.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import pyarrow as pa

from morphseq_stages.latents import LatentRows, latent_z_columns, read_latent_rows, select_z_columns


@attrs.frozen(kw_only=True)
class StoreRead:
    columns: tuple[str, ...]  # the z columns of all files together, in dimension order
    rows: Mapping[str, LatentRows]  # by experiment, in the order asked for
    lines: pa.Array  # every file's z text in one buffer; each ``rows[e].lines`` is a slice of it
    stamps: Mapping[str, tuple[int, int]]  # (mtime_ns, size) of each file as read


def _stamp(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def read_store(paths: Mapping[str, Path], schema: str, include_sigma: bool, previous: StoreRead | None = None) -> StoreRead:
    existing = {e: p for e, p in paths.items() if p.is_file()}
    zcols = {e: latent_z_columns(p, schema, include_sigma) for e, p in existing.items()}
    columns = tuple(select_z_columns([c for cols in zcols.values() for c in cols], "auto", True))
    stamps = {e: _stamp(p) for e, p in existing.items()}
    reusable = previous is not None and previous.columns == columns
    rows = {e: previous.rows[e] for e in existing
            if reusable and e in previous.rows and previous.stamps.get(e) == stamps[e]}
    todo = [e for e in existing if e not in rows]
    if previous is not None and not todo and list(previous.rows) == list(existing):
        return previous
    if todo:
        # Arrow releases the GIL: files are read and checked side by side
        with ThreadPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            rows.update(zip(todo, pool.map(lambda e: read_latent_rows(existing[e], zcols[e], columns), todo), strict=True))
    # one buffer for all files, so that the merge indexes it without copying it again
    lines = pa.concat_arrays([rows[e].lines for e in existing]) if existing else pa.array([], pa.binary())
    at, sliced = 0, {}
    for e in existing:
        n = len(rows[e].lines)
        sliced[e] = attrs.evolve(rows[e], lines=lines.slice(at, n))
        at += n
    return StoreRead(columns=columns, rows=sliced, lines=lines, stamps=stamps)
