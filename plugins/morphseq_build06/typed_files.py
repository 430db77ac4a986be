"""Writers of the typed copies of df03, the analysis copies and the training join: Parquet and AnnData.

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

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from morphseq_stages.errors import UserError
from morphseq_stages.files import atomic_write

from .latents import parse_z
from .typed import TypedColumns, is_identifier, unique_names

if TYPE_CHECKING:
    import pandas as pd


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
