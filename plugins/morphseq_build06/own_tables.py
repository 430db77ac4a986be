"""Tables of the caller's own, in the API: a latents DataFrame as the merge's index of
latent rows, and what is joined or copied from it byte for byte. Unlike the stage's
outputs these have no record: the stage takes them for files it did not write."""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from morphseq_stages.errors import UserError
from morphseq_stages.files import atomic_write, check_safe_id, exclusive_lock

from . import keys, paths
from .csvtext import TextTable, float_text, header_with, read_columns, read_text_table, write_rows
from .formats import SUFFIX
from .freshness import load_sidecar
from .index import LatentIndex, index_latents
from .latents import LatentRows, select_z_columns
from .store import StoreRead

log = structlog.get_logger()


class OutputExists(UserError):
    """An existing output is not current and was left as it is: pass ``overwrite=True``
    to replace it. The message names the file; other outputs of the call may be written."""


def kept(out: Path, data: bytes, what: str, overwrite: bool) -> bool:
    """Whether ``out``, which exists, is kept: when it already holds ``data`` (identical), or
    (:class:`OutputExists`) when it differs and ``overwrite`` is off."""
    if out.read_bytes() != data:
        if overwrite:
            return False
        raise OutputExists(f"{what} {out} exists and differs from what this call would write; "
                           "pass overwrite=True to replace it")
    log.info("write.skipped", path=str(out), what=what, reason="current (identical)")
    return True


def index_of_frame(latents_df: Any) -> LatentIndex:
    """A latents DataFrame (``snip_id`` + z columns) as the merge's index of latent rows."""
    import pandas as pd

    if not isinstance(latents_df, pd.DataFrame) or "snip_id" not in latents_df.columns:
        raise UserError("latents_df must be a DataFrame with a snip_id column and z columns (see load_latents)")
    columns = select_z_columns([str(c) for c in latents_df.columns], "auto", include_sigma=True)
    if not columns:
        raise UserError("latents_df has no z columns (z_mu_NN, z_mu_b_NN, z_mu_n_NN)")
    try:
        values = latents_df[columns].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UserError(f"latents_df z columns must be numbers: {exc}") from None
    ids = pa.array([str(s) for s in latents_df["snip_id"]], pa.string())
    cells = [float_text(values[:, j]) for j in range(len(columns))]
    lines = pc.binary_join_element_wise(*cells, b",", null_handling="replace", null_replacement=b"")
    rows = LatentRows(path=Path("latents_df"), snip_ids=ids, columns=tuple(columns),
                      lines=pc.cast(lines, pa.large_binary()), nan_rows=np.isnan(values).any(axis=1),
                      inf_rows=np.isinf(values).any(axis=1), odd_rows=np.zeros(len(ids), bool))
    # indexed as a latent file is: the same hygiene and duplicate rules
    read = StoreRead(columns=tuple(columns), rows={"": rows}, lines=rows.lines, stamps={}, keys={"": keys.normalise(ids)})
    return index_latents(read, [""])[0]


def join(table: TextTable, index: LatentIndex, out: Path, overwrite: bool, what: str) -> bool:
    """Write ``table`` (bytes unchanged) plus its z cells to ``out``; False if ``out`` was
    kept as identical; :class:`OutputExists` if it differs and ``overwrite`` is off."""
    if "snip_id" not in table.names:
        raise UserError(f"{what} {table.path} has no snip_id column")
    take, _, _ = index.match(read_columns(table, ["snip_id"])["snip_id"])
    matched = int((take >= 0).sum())
    log.info("coverage", what=what, rows=len(table), matched=matched,
             coverage=round(matched / len(table), 6) if len(table) else 0.0)
    header = header_with(table.header, index.columns)

    def write(fh: Any) -> None:
        write_rows(fh, header, table.records, table.newline, lambda a, b: index.cells(take[a:b]))

    with exclusive_lock(*paths.output_lock(out)):
        if out.exists() and kept(out, bytes_of(write), what, overwrite):
            return False
        atomic_write(out, write)
    log.info("write.staged", path=str(out), what=what, rows=len(table))
    left_behind(out, load_sidecar(paths.sidecar(out)).get("files", {}))
    return True


def left_behind(out: Path, recorded: Mapping[str, Any]) -> None:
    """Say what a file of the caller's own leaves behind it: typed copies beside it, made
    from what it replaced, and (when it replaced the stage's own output, one of the files
    ``recorded`` in its sidecar) the stage's record."""
    for suffix in SUFFIX.values():
        if (copy := out.with_suffix(suffix)).exists():
            log.warning("own_table.copy_left_behind", path=str(copy),
                        message=f"{copy} is left as it was and no longer matches {out.name}, joined from a table "
                                "of your own (typed copies are made by the stage only, from a latent store's table)")
    if out.name in recorded:
        log.warning("own_table.replaced_stage_output", path=str(out),
                    message=f"{out} was the stage's own output; joined from a table of your own, the stage's next "
                            "run calls it not written by this tool")


def bytes_of(write: Any) -> bytes:
    buf = io.BytesIO()
    write(buf)
    return buf.getvalue()


def by_experiment(df03: Any) -> dict[str, Any]:
    """experiment -> a writer of its rows (raw records for a file, CSV text for a DataFrame);
    a row's experiment as the stage derives it (``keys.row_experiments``)."""
    import pandas as pd

    if isinstance(df03, pd.DataFrame):
        if "snip_id" not in df03.columns:
            raise UserError("df03 must have a snip_id column")
        dates = pa.array([_date_text(v) for v in df03["experiment_date"]], pa.string()) if "experiment_date" in df03 else None
        exp = keys.row_experiments(pa.array([_date_text(v) for v in df03["snip_id"]], pa.string()), dates)
        return {e: functools.partial(_write_frame, df03[exp == e]) for e in dict.fromkeys(exp) if e}
    table = read_text_table(Path(df03), what="df03")
    if "snip_id" not in table.names:
        raise UserError(f"df03 {table.path} has no snip_id column")
    cols = read_columns(table, [c for c in ("snip_id", "experiment_date") if c in table.names])
    exp = keys.row_experiments(cols["snip_id"], cols.get("experiment_date"))
    return {e: functools.partial(_write_records, table, np.flatnonzero(exp == e)) for e in dict.fromkeys(exp) if e}


def _date_text(value: Any) -> str | None:
    """A cell of a DataFrame read by pandas as the CSV's text: an empty cell is NaN (and makes
    a column of dates float: 20231207.0)."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _write_frame(rows: Any, fh: Any) -> None:
    fh.write(rows.to_csv(index=False).encode())


def _write_records(table: TextTable, rows: np.ndarray, fh: Any) -> None:
    write_rows(fh, table.header, table.records.take(pa.array(rows, pa.int64())), table.newline)


def copy_by_experiment(df03: Any, folder: Path, model_name: str, overwrite: bool) -> list[Path]:
    """``df03_<experiment>.csv`` in ``folder`` for each experiment of ``df03`` (a file's rows
    byte for byte, or a DataFrame's); each checked before any is written (call holding the
    folder's lock). Existing copies are kept when identical, and refused
    (:class:`OutputExists`) when they differ, unless ``overwrite``: then replaced."""
    writers = {folder / paths.analysis_copy(Path(), model_name, check_safe_id(exp, "experiment")).name: write
               for exp, write in by_experiment(df03).items()}
    todo = {out: write for out, write in writers.items()
            if not (out.exists() and kept(out, bytes_of(write), "analysis copy", overwrite))}
    recorded = load_sidecar(folder / paths.COPIES_SIDECAR).get("files", {})
    for out, write in todo.items():
        atomic_write(out, write)
        log.info("write.staged", path=str(out), what="analysis")
        left_behind(out, recorded)
    return list(writers)
