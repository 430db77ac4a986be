"""Typed copies of df03, the analysis copies and the training join: Parquet and AnnData.

Columns follow the rule of :mod:`morphseq_build06.typed`; z columns are float64 parsed
from the very text df03.csv holds (NaN where a row has no embedding), so every value
equals what ``pandas.read_csv`` reads from the CSV.

- Parquet: the typed table columns then the z columns; the run's provenance (the
  sidecar's content) as JSON under the key-value metadata key ``morphseq``.
- AnnData (``.h5ad``): one observation per row, named by ``snip_id`` (a repeated id gets
  ``-1``, ``-2``, as ``AnnData.obs_names_make_unique`` names them); ``obs`` = the typed
  table columns (identifiers as plain text; other text columns with repeated values, and
  text with missing values, as categoricals, the way scanpy keeps groupings; column names
  as :func:`obs_keys` makes them acceptable to HDF5 and anndata) plus
  ``obs["morphseq_embedded"]`` (the rows with an embedding: scanpy takes no NaN);
  ``obsm["X_morph"]`` = the z_mu matrix; ``obsm["X_morph_logvar"]`` = the z_sigma
  (log-variance) matrix with ``--include-sigma``; ``uns["morphseq"]`` = the provenance
  (lists and empty values as JSON text, which HDF5 attributes cannot hold otherwise). A
  NUL byte, which HDF5 text cannot hold, is refused (one line naming the cell).
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from morphseq_stages.errors import UserError
from morphseq_stages.files import (
    atomic_write,
    atomic_write_json,
    staged_path,
)

from .freshness import file_state, load_sidecar
from .latents import parse_z
from .paths import TYPED_RECORD
from .typed import TypedColumns, is_identifier, unique_names, z_matrix

if TYPE_CHECKING:
    import pandas as pd

    from .merge import MergeResult
    from .options import Build06Options
    from .outputs import OutputPlan
    from .plan import Build06Plan


FORMATS = ("csv", "parquet", "h5ad")
EXTRA = {"parquet": ("pyarrow.parquet", "parquet"), "h5ad": ("anndata", "anndata")}
SUFFIX = {"parquet": ".parquet", "h5ad": ".h5ad"}


def parse_formats(value: str | Any) -> tuple[str, ...]:
    """``"csv,parquet"`` -> ("csv", "parquet"); csv is always written (df03.csv is canonical)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    asked = [str(v).strip().lower() for v in items if str(v).strip()]
    for f in asked:
        if f not in FORMATS:
            raise UserError(f"unknown format {f!r} in --formats (choose from {', '.join(FORMATS)})")
    return tuple(f for f in FORMATS if f == "csv" or f in asked)


def require(fmt: str) -> None:
    """A clear one-line error naming the extra when a format's library is missing."""
    module, extra = EXTRA[fmt]
    try:
        __import__(module)
    except ImportError:
        raise UserError(f"--formats {fmt} needs {module.split('.')[0]}: pip install 'morphseq-stages[{extra}]'") from None


def sibling(path: Path, fmt: str) -> Path:
    return path.with_suffix(SUFFIX[fmt])


def stale_copy(path: Path, csv: Path, made_with: Mapping[str, Any] | None = None) -> tuple[str, str] | None:
    """(what, reason) when the typed copy ``path`` may not hold what ``csv`` holds now, as
    :data:`TYPED_RECORD` says (size and mtime unchanged: no file is hashed); None when it
    does. ``what``: "unrecorded" (not written by this tool), "edited" or "out-of-date".
    ``made_with``: what else its content depends on (the report's options), as recorded."""
    entry = load_sidecar(path.parent / TYPED_RECORD).get("files", {}).get(path.name)
    made = entry.get("made_from") if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or "sha256" not in entry or not isinstance(made, dict):
        return "unrecorded", f"no record of it in {TYPED_RECORD}"
    if file_state(path, entry)["sha256"] != entry["sha256"]:
        return "edited", "edited since this tool wrote it"
    if not csv.is_file() or file_state(csv, made)["sha256"] != made.get("sha256"):
        return "out-of-date", f"not made from {csv.name} as it is now"
    if made_with is not None and entry.get("made_with") != dict(made_with):
        was = entry.get("made_with") or {}
        changed = [k for k in made_with if was.get(k) != made_with[k]]
        return "out-of-date", "made with other options: " + "; ".join(
            f"{_option_name(k)} {_shown(was.get(k))} -> {_shown(made_with[k])}" for k in changed)
    return None


def _option_name(key: str) -> str:
    return "layout version" if key.endswith("layout") else "--" + key.replace("_", "-")


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "(none)"
    return "(none)" if value is None else str(value)


#: where a typed copy keeps the sha256 of the CSV it was made with (Parquet metadata key, h5ad uns key)
MADE_FROM = "morphseq_made_from"


def write_typed(path: Path, fmt: str, typed: TypedColumns, rows: np.ndarray, z_names: tuple[str, ...],
                z: np.ndarray, provenance: Mapping[str, Any], made_from: str) -> None:
    if fmt == "parquet":
        write_parquet(path, typed, rows, z_names, z, provenance, made_from)
    else:
        write_h5ad(path, typed, rows, z_names, z, provenance, made_from)


def typed_table(typed: TypedColumns, rows: np.ndarray, z_names: tuple[str, ...], z: np.ndarray) -> pa.Table:
    arrays = typed.arrays(rows) + [pa.array(z[:, j], pa.float64()) for j in range(len(z_names))]
    # a df02 column named like a z column keeps its name; the z column is suffixed
    return pa.Table.from_arrays(arrays, names=unique_names(list(typed.names) + list(z_names)))


def write_parquet(path: Path, typed: TypedColumns, rows: np.ndarray, z_names: tuple[str, ...], z: np.ndarray,
                  provenance: Mapping[str, Any], made_from: str) -> None:
    import pyarrow.parquet as pq

    table = typed_table(typed, rows, z_names, z)
    table = table.replace_schema_metadata({b"morphseq": json.dumps(provenance, default=str).encode(),
                                           MADE_FROM.encode(): made_from.encode()})
    atomic_write(path, lambda fh: pq.write_table(table, fh))


#: the obs column that tells which rows have an embedding (``X_morph`` is NaN on the others)
EMBEDDED = "morphseq_embedded"
#: obs column names anndata reserves for itself
_RESERVED = ("_index",)


def obs_keys(names: Sequence[str]) -> list[str]:
    """Column names as HDF5 and anndata take them: ``/`` becomes ``_``; an empty name (the
    index column pandas writes) becomes ``Unnamed: <position>``, the name ``pandas.read_csv``
    gives it; anndata's reserved ``_index`` becomes ``_index_``."""
    keys = []
    for i, name in enumerate(names):
        key = name.replace("/", "_") or f"Unnamed: {i}"
        keys.append(f"{key}_" if key in _RESERVED else key)
    return unique_names(keys)


def obs_frame(typed: TypedColumns, rows: np.ndarray) -> pd.DataFrame:
    """The typed columns as an AnnData ``obs`` frame, named by snip_id."""
    import pandas as pd

    keys = obs_keys(typed.names)
    nullable = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    obs = pa.Table.from_arrays(typed.arrays(rows), names=keys).to_pandas(types_mapper=nullable.get)
    for name, key, kind in zip(typed.names, keys, typed.kinds, strict=True):
        if kind != "text":
            continue
        # missing text: only categoricals hold it in an h5ad that every anndata reads
        if (not is_identifier(name) and obs[key].nunique() < len(obs)) or obs[key].isna().any():
            obs[key] = obs[key].astype("category")
    ids = typed.text[typed.names.index("snip_id")]
    obs.index = pd.Index(unique_names([s or "" for s in ids.take(pa.array(rows, pa.int64())).to_pylist()], "-"))
    return obs


def refuse_nul(path: Path, typed: TypedColumns, rows: np.ndarray) -> None:
    """HDF5 strings end at a NUL byte: a cell or column name holding one is refused, naming
    it, before anything is written (Parquet and the CSV hold it as it is)."""
    for name, text in zip(typed.names, typed.text, strict=True):
        if "\0" in name:
            raise UserError(f"{path} not written: the column name {name!r} holds a NUL byte, which an h5ad "
                            "cannot hold; leave h5ad out of --formats or remove the byte")
        cells = text.take(pa.array(rows, pa.int64()))
        hits = pc.match_substring(cells, "\0")
        if pc.any(hits).as_py():
            row = int(rows[pc.index(hits, True).as_py()])
            raise UserError(f"{path} not written: column {name!r} of data row {row + 1} holds a NUL byte, "
                            "which an h5ad cannot hold; leave h5ad out of --formats or remove the byte")


def h5_safe(value: Any) -> Any:
    """The provenance in a form HDF5 attributes hold: nested dicts of text and numbers."""
    if isinstance(value, Mapping):
        return {str(k).replace("/", "_"): h5_safe(v) for k, v in value.items()}
    if isinstance(value, bool | int | float | str) and not isinstance(value, np.generic):
        return value
    return json.dumps(value, default=str)


def write_h5ad(path: Path, typed: TypedColumns, rows: np.ndarray, z_names: tuple[str, ...], z: np.ndarray,
               provenance: Mapping[str, Any], made_from: str) -> None:
    import anndata as ad

    refuse_nul(path, typed, rows)
    kinds = [parse_z(n) for n in z_names]
    mu = [j for j, k in enumerate(kinds) if k and k[0] == "mu"]
    sigma = [j for j, k in enumerate(kinds) if k and k[0] == "sigma"]
    obsm = {"X_morph": z[:, mu]}
    if sigma:
        obsm["X_morph_logvar"] = z[:, sigma]
    uns = {"morphseq": h5_safe({**provenance, "z_mu_columns": [z_names[j] for j in mu],
                                "z_sigma_columns": [z_names[j] for j in sigma]}), MADE_FROM: made_from}
    obs = obs_frame(typed, rows)
    # scanpy's neighbours and UMAP take no NaN: this selects the rows they can use
    obs[unique_names([*obs.columns, EMBEDDED])[-1]] = (np.isfinite(obsm["X_morph"]).all(axis=1)
                                                       if mu else np.zeros(len(obs), bool))
    data = _h5ad_bytes(ad.AnnData(obs=obs, obsm=obsm, uns=uns))
    atomic_write(path, lambda fh: fh.write(data))


def _h5ad_bytes(adata: Any) -> bytes:
    """The h5ad file's bytes, made in memory: h5py writes a file in place, and on a full
    disk it fails half way (or crashes); a plain write of these bytes fails cleanly."""
    import h5py

    try:
        from anndata.io import write_elem
    except ImportError:  # anndata < 0.11
        from anndata.experimental import write_elem
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        # identifiers stay plain text (write_h5ad would make every repeated string a categorical)
        write_elem(f, "/", adata)
    return buf.getvalue()


#: the plan's output kinds this module writes: ``<csv output kind>.<format>``, and the report
EXTRA_KINDS = tuple(f"{k}.{f}" for k in ("df03", "analysis", "training") for f in SUFFIX) + ("report",)
REPORT_NAME = "embryo_metadata_df03_report.html"


def extra_outputs(outputs: Sequence[OutputPlan], opts: Build06Options, make: Callable[..., OutputPlan]
                  ) -> tuple[list[OutputPlan], list[str]]:
    """The typed siblings of each CSV output, and the report; ``make`` is the plan's
    ``_output`` (write / overwrite / skip, as for any output). Also the warnings about
    typed copies this run leaves behind their CSV."""
    extra, warnings = [], []
    for o in outputs:
        if o.kind not in ("df03", "analysis", "training"):
            continue
        for fmt in SUFFIX:
            path = sibling(o.path, fmt)
            if fmt not in opts.formats:
                if path.exists() and o.action != "skip":
                    warnings.append(f"{path} is not rewritten by this run (--formats has no {fmt}): it will no "
                                    f"longer match {o.path.name}; add {fmt} to --formats to update it")
                elif path.exists() and (stale := stale_copy(path, o.path)) and stale[0] != "unrecorded":
                    warnings.append(f"{path} is out of date ({stale[1]}); add {fmt} to --formats and pass "
                                    "--overwrite to update it")
                continue
            if o.action == "skip" and not o.path.exists():  # skipped for want of input: so is its sibling
                extra.append(attrs.evolve(o, kind=f"{o.kind}.{fmt}", path=path))
                continue
            out = make(f"{o.kind}.{fmt}", path, opts.overwrite, o.experiment)
            extra.append(out)
            if out.action == "skip" and out.freshness.status != "current":
                state = out.freshness.describe()
                warnings.append(f"{path} is {out.reason}" if out.reason.startswith(state)
                                else f"{path} is {state}; not updated: {out.reason}")
    if opts.report:
        from .report import made_with

        df03 = next(o.path for o in outputs if o.kind == "df03")
        # the report describes df03 as on disk: current while df03 and the report's options are
        out = make("report", df03.with_name(REPORT_NAME), opts.overwrite, made_with=made_with(opts.report_color_by))
        extra.append(out)
        if out.action == "skip" and out.freshness.status in ("out-of-date", "foreign") and out.path.exists():
            warnings.append(f"{out.path} is {out.reason}")
    return extra, warnings


def write_extras(plan: Build06Plan, merged: MergeResult, df03_rows: np.ndarray, provenance: Mapping[str, Any], run: Callable,
                 training: Callable) -> list[str]:
    """Write the plan's typed outputs and report through the export's ``run``; the
    records of typed copies written (``typed_copies.json``) are returned."""
    from .typed import type_table

    typed_df02 = functools.cache(lambda: type_table(plan.df02))
    train = functools.cache(training)
    typed_train = functools.cache(lambda: type_table(train()[0]))
    columns = merged.latents.columns
    # every df02 row's z values, parsed once for df03 and all the analysis copies
    z_df02 = functools.cache(lambda: z_matrix(merged.latents, merged.take))

    made: dict[Path, dict[str, Any]] = {}  # each typed copy written, and the state of the CSV it was made from
    made_with: dict[Path, dict[str, Any]] = {}  # and what else it was made with (the report's options)

    def one(out: OutputPlan, fmt: str, typed: TypedColumns, rows: np.ndarray, z: np.ndarray) -> int:
        # the CSV is written (staged) before its typed copies; renaming it keeps its mtime
        made[out.path] = file_state(staged_path(out.path.with_suffix(".csv")))
        write_typed(out.path, fmt, typed, rows, columns, z, provenance, made[out.path]["sha256"])
        return len(rows)

    for out in plan.outputs:
        base, _, fmt = out.kind.partition(".")
        if not fmt:
            continue
        if base == "training":
            run(out, lambda out=out, fmt=fmt: one(out, fmt, typed_train(), np.arange(len(train()[0])),
                                                  z_matrix(merged.latents, train()[1])))
        else:
            rows = df03_rows if base == "df03" else df03_rows[plan.row_experiments[df03_rows] == out.experiment]
            run(out, lambda out=out, fmt=fmt, rows=rows: one(out, fmt, typed_df02(), rows, z_df02()[rows]))
    report = plan.output("report")
    if report is not None:
        run(report, lambda: _write_report(plan, merged, report.path, provenance, made, made_with))
    records: list[str] = []
    for folder in sorted({p.parent for p in made}):
        record = folder / TYPED_RECORD
        files = {**load_sidecar(record).get("files", {}),
                 **{p.name: {**file_state(staged_path(p)), "made_from": csv,
                             **({"made_with": made_with[p]} if p in made_with else {})}
                    for p, csv in made.items() if p.parent == folder}}
        atomic_write_json(record, {"files": files})
        records.append(str(record))
    return records


def _write_report(plan: Build06Plan, merged: MergeResult, path: Path, provenance: Mapping[str, Any],
                  made: dict[Path, dict[str, Any]], made_with: dict[Path, dict[str, Any]]) -> int:
    """The report, with df03's provenance: this run's record when it writes df03, else what
    df03's sidecar holds (the run that wrote it); recorded in ``made`` like a typed copy."""
    from .report import made_with as report_made_with
    from .report import write_report

    df03 = plan.output("df03")
    if df03.action != "skip":
        note = "df03 was written by this run."
    else:
        recorded = plan.records.get("df03", {})
        provenance = {k: v for k, v in recorded.items() if k not in ("files", "outputs")}
        note = "df03 was not rewritten by this run (it is current); its provenance as its sidecar records it."
    entry = plan.records.get("df03", {}).get("files", {}).get(df03.path.name) if df03.action == "skip" else None
    # named: unlike a typed copy, the report is not made from the CSV of its own name
    made[path] = {**file_state(staged_path(df03.path), entry if isinstance(entry, dict) else None),
                  "name": df03.path.name}
    made_with[path] = report_made_with(plan.options.report_color_by)
    return write_report(path, plan, merged, provenance, note)
