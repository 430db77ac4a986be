"""Parquet latent files: the lab's newer contract (SPEC §11), read and written.

A Parquet latent table holds ``snip_id`` (text, unique, non-null), ``z_mu_*`` (at least
one; numeric, non-null), optionally ``z_sigma_*`` (log-variance, named as in the CSVs),
and ``embedding_model_name`` (text, non-null: the model that produced the vectors).
Every ``z_*`` name must map to a dimension (``z_mu_07``, ``z_mu_b_20``); nothing else is
required. Any breach is one error naming the file.

A path is a file, or a folder of ``*_latents.parquet`` shards (found at any depth); a
shard is read once its ``<file>.validated`` sentinel holds ``ok`` (the lab's pipeline
writes it when the shard is complete); a shard without one is reported and skipped.

z values reach df03 as the shortest text that reads back as the same value, in the
column's own precision (float32 columns as float32), exactly as the CSV writer writes
them: df03 built from a Parquet store is byte for byte the one built from the CSV store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from morphseq_stages.errors import UserError
from morphseq_stages.files import atomic_write

from . import latents
from .inputs import ReadFile, not_regular, read_file, read_regular_text
from .latents import LatentRows

log = structlog.get_logger()
MODEL_COLUMN = "embedding_model_name"
SHARD_SUFFIX = "_latents.parquet"
SENTINEL_SUFFIX = ".validated"


def is_parquet(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".parquet"


def validated(path: Path) -> bool:
    return skip_reason(path) is None


def skip_reason(path: Path) -> str | None:
    """Why a shard (or lab merged file) is not read, in words naming it; None when it is a
    regular file whose ``.validated`` sentinel, a regular file, holds ``ok``. Neither is
    ever opened unless it is a regular file: a FIFO would hang the run."""
    odd = not_regular(path)
    if odd is not None:
        return f"latent file {path} is {odd}, not a regular file; skipped"
    sentinel = path.with_name(path.name + SENTINEL_SUFFIX)
    odd = not_regular(sentinel)
    if odd is not None:
        return f"{path}: its sentinel {sentinel.name} is {odd}, not a file holding ok; skipped"
    try:
        text = read_regular_text(sentinel)
    except FileNotFoundError:
        return f"{path} has no {sentinel.name} sentinel; skipped"
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path}: cannot read its sentinel {sentinel.name} ({exc}); skipped"
    return None if text.strip() == "ok" else f"{path}: its sentinel {sentinel.name} does not say ok; skipped"


def shards(path: Path) -> tuple[list[Path], list[Path]]:
    """(files to read, shards skipped: no sentinel, or not a regular file) of a file or folder."""
    if not path.is_dir():
        return [path], []
    found = sorted(p for p in path.rglob(f"*{SHARD_SUFFIX}") if not p.is_dir())
    skipped = {p for p in found if not validated(p)}
    return [p for p in found if p not in skipped], [p for p in found if p in skipped]


def _schema(path: Path) -> pa.Schema:
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(f"cannot read latent file {path}: {str(exc).strip().splitlines()[0]}") from None


def check_names(names: Sequence[str], path: Path) -> None:
    """The column-level part of the contract."""
    latents.check_names(names, path)
    if MODEL_COLUMN not in names:
        raise UserError(f"latent file {path} has no {MODEL_COLUMN} column (the model that produced the vectors)")
    twice = [n for n in names if names.count(n) > 1]
    if twice:
        raise UserError(f"latent file {path} repeats column {twice[0]!r}")
    if not any(n.startswith("z_mu_") for n in names):
        raise UserError(f"latent file {path} has no z_mu_* columns")


def header(path: Path) -> tuple[str, ...]:
    """The columns of a Parquet latent file, or of the first shard of a folder, whose every
    shard must have the same z columns (else which one counts would depend on their order)."""
    files, _ = shards(path)
    if not files:
        raise UserError(f"no validated *{SHARD_SUFFIX} shard in {path}")
    first: tuple[str, ...] = ()
    for f in files:
        names = tuple(_schema(f).names)
        check_names(names, f)
        if not first:
            first = names
        elif _z_names(names) != _z_names(first):
            a, b = _z_names(first), _z_names(names)
            raise UserError(f"the shards in {path} differ in their z columns: {files[0].relative_to(path)} has "
                            f"{len(a)} ({_differ(a, b)}), {f.relative_to(path)} has {len(b)} ({_differ(b, a)})")
    return first


def _z_names(names: Sequence[str]) -> set[str]:
    return {n for n in names if n.startswith(("z_mu_", "z_sigma_"))}


def _differ(mine: set[str], theirs: set[str]) -> str:
    only = sorted(mine - theirs)
    return f"{', '.join(only[:3])}{' ...' if len(only) > 3 else ''} only there" if only else "no others"


def _read(path: Path, columns: Sequence[str]) -> tuple[pa.Table | None, ReadFile]:
    """One file's rows (None: it has none), from bytes read once (their identity is what the run read)."""
    import pyarrow.parquet as pq

    data, source = read_file(path, "latent file", hash_now=True)
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(f"cannot read latent file {path}: {str(exc).strip().splitlines()[0]}") from None
    names = parquet.schema_arrow.names
    check_names(names, path)
    missing = [c for c in columns if c not in names]
    if missing:
        raise UserError(f"latent file {path} lacks column {missing[0]!r} that other shards have")
    if parquet.metadata.num_rows == 0:  # a shard of a well with no snips: its columns may not even be typed
        log.warning("latents.empty_file", path=str(path), reason="it has no rows: nothing is merged from it")
        return None, source
    try:
        table = parquet.read(columns=["snip_id", MODEL_COLUMN, *columns])
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(f"cannot read latent file {path}: {str(exc).strip().splitlines()[0]}") from None
    validate(table, path)
    return table.select(["snip_id", *columns]), source


def models_by_file(path: Path) -> dict[Path, list[str]]:
    """The model names each Parquet latent file (each shard of a folder) records in its
    rows; {} for a CSV file, which records none."""
    if not is_parquet(path):
        return {}
    import pyarrow.parquet as pq  # not for a CSV: it loads pyarrow's cloud filesystems too

    found = {}
    for f in shards(path)[0]:
        try:
            column = pq.read_table(f, columns=[MODEL_COLUMN]).column(0)
        except (OSError, KeyError, pa.ArrowInvalid):
            continue  # reading the file for the merge names what is wrong with it
        found[f] = sorted(str(v) for v in pc.unique(column).drop_null().to_pylist())
    return found


def validate(table: pa.Table, path: Path) -> None:
    """The value-level part of the contract, one error naming the file."""
    ids = table.column("snip_id")
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        raise UserError(f"latent file {path}: snip_id must be text, found {ids.type}")
    if ids.null_count:
        raise UserError(f"latent file {path}: snip_id has {ids.null_count} empty value(s)")
    if len(pc.unique(ids)) != len(ids):
        dup = pc.value_counts(ids).filter(pc.greater(pc.value_counts(ids).field("counts"), 1))[0]["values"]
        raise UserError(f"latent file {path}: snip_id {dup.as_py()!r} appears more than once")
    model = table.column(MODEL_COLUMN)
    if model.null_count or (pa.types.is_string(model.type) and pc.any(pc.equal(model, "")).as_py()):
        raise UserError(f"latent file {path}: {MODEL_COLUMN} is empty in some rows")
    for name in table.column_names:
        if not name.startswith(("z_mu_", "z_sigma_")):
            continue
        col = table.column(name)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise UserError(f"latent file {path}: column {name!r} is not numeric ({col.type})")
        if col.null_count:
            raise UserError(f"latent file {path}: column {name!r} has {col.null_count} empty value(s)")


def read_rows(path: Path, columns: Sequence[str], order: Sequence[str], names: dict[str, str]) -> LatentRows:
    """Like ``latents.read_latent_rows`` for a Parquet file or a folder of shards;
    ``names`` maps each name of ``order`` to this file's column for that dimension."""
    files, _ = shards(path)
    read = [_read(f, columns) for f in files]
    tables = [t for t, _ in read if t is not None]
    table = pa.concat_tables(tables) if tables else pa.table({"snip_id": pa.array([], pa.string())})
    n = table.num_rows
    nan_rows, inf_rows = np.zeros(n, bool), np.zeros(n, bool)
    empty = pa.repeat(pa.scalar("", pa.string()), n)
    cells = []
    for c in order:
        if c not in names or names[c] not in table.column_names:  # (no table at all: every file was empty)
            cells.append(empty)
            continue
        col = table.column(names[c]).combine_chunks()
        values = col.to_numpy(zero_copy_only=False).astype(np.float64)
        nan_rows |= np.isnan(values)
        inf_rows |= np.isinf(values)
        if pa.types.is_floating(col.type):
            # the CSV writer leaves NaN cells empty; so does this (the row is set aside anyway)
            col = pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
        cells.append(pc.cast(col, pa.string()).fill_null(""))
    lines = pc.binary_join_element_wise(*cells, ",") if cells else empty
    return LatentRows(path=path, snip_ids=table.column("snip_id").combine_chunks().cast(pa.string()),
                      columns=tuple(columns), lines=pc.cast(lines, pa.binary()), nan_rows=nan_rows,
                      inf_rows=inf_rows, odd_rows=np.zeros(n, bool), sources=tuple(s for _, s in read))


def latent_table(snip_ids: Sequence[str], mu: np.ndarray, logvar: np.ndarray | None, mu_columns: Sequence[str],
                 sigma_columns: Sequence[str], model_name: str) -> pa.Table:
    """A table in the contract's layout; z values keep the embedder's precision."""
    data = {"snip_id": pa.array(list(snip_ids), pa.string())}
    data.update({c: pa.array(mu[:, j]) for j, c in enumerate(mu_columns)})
    if logvar is not None:
        data.update({c: pa.array(logvar[:, j]) for j, c in enumerate(sigma_columns)})
    data[MODEL_COLUMN] = pa.array([model_name] * len(snip_ids), pa.string())
    return pa.table(data)


def write_table(path: Path, table: pa.Table, existing: Path | None = None) -> int:
    """Write ``table`` (after the rows of ``existing``, a Parquet file being topped up),
    checked against the contract; return the rows written."""
    import pyarrow.parquet as pq

    if existing is not None:
        old = pq.read_table(existing)
        if old.schema.names != table.schema.names:
            raise UserError(f"cannot append to {existing}: its columns differ from what this embedder writes")
        table = pa.concat_tables([old, table.cast(old.schema)])
    validate(table, path)
    atomic_write(path, lambda fh: pq.write_table(table, fh))
    return table.num_rows
