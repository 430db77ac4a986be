"""Where a latents table in Python came from: :func:`morphseq_build06.api.load_latents`
stamps its table with the files it read, so that
:func:`~morphseq_build06.api.merge_df02_with_embeddings` can hand df03 to the stage
(the stage's own df03, sidecar and unembedded list) when the table is those files,
unchanged, and refuse to pass a table of another origin off as Build06's df03.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import pyarrow as pa

from .freshness import file_state
from .index import index_latents, log_index
from .store import read_store
from .typed import z_matrix

if TYPE_CHECKING:
    import pandas as pd

#: the key of a table's stamp in ``DataFrame.attrs``
STAMP = "morphseq_latents"


def digest(frame: pd.DataFrame) -> str:
    """The table's content: column names, snip ids and z values, in order."""
    h = hashlib.sha256()
    h.update("\0".join(map(str, frame.columns)).encode())
    h.update("\0".join(map(str, frame["snip_id"])).encode())
    z = [c for c in frame.columns if c != "snip_id"]
    h.update(np.ascontiguousarray(frame[z].to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()


def stamp(frame: pd.DataFrame, files: Mapping[str, Path], z_schema: str) -> None:
    """Record on ``frame`` the latent files it was read from (with their sha256) and its digest."""
    frame.attrs[STAMP] = {"files": {e: {"path": str(Path(p).resolve()), "sha256": file_state(p)["sha256"]}
                                    for e, p in files.items()},
                          "z_schema": z_schema, "digest": digest(frame)}


@attrs.frozen(kw_only=True)
class StoreTable:
    """A table that is a latent store's files, unchanged: the run that merges them."""

    data_root: Path
    embedder: str
    model_name: str
    z_schema: str
    latent_format: str
    files: Mapping[str, Path]


def store_table(frame: Any) -> tuple[StoreTable | None, str]:
    """(the store the table was read from, "") when ``frame`` is load_latents' table of
    files of one latent store, each as it is now; else (None, why not)."""
    record = getattr(frame, "attrs", {}).get(STAMP)
    if not isinstance(record, dict) or not record.get("files"):
        return None, "was not made by load_latents from latent files"
    if record.get("digest") != digest(frame):
        return None, "was changed since load_latents made it"
    files = {e: Path(f["path"]) for e, f in record["files"].items()}
    folders = {p.parent for p in files.values()}
    folder = next(iter(folders))
    if len(folders) != 1 or folder.parent.parent.name != "latent_embeddings" or folder.parents[2].name != "analysis":
        return None, "was not read from one latent store (<data_root>/analysis/latent_embeddings/<embedder>/<model>/)"
    for e, f in record["files"].items():
        p = files[e]
        if not p.is_file() or file_state(p)["sha256"] != f["sha256"]:
            return None, f"was read from {p}, which has changed since"
    suffixes = {p.suffix for p in files.values()}
    return StoreTable(data_root=folder.parents[3], embedder=folder.parent.name, model_name=folder.name,
                      z_schema=str(record.get("z_schema", "auto")),
                      latent_format="parquet" if suffixes == {".parquet"} else "csv", files=files), ""


def latents_frame(files: Mapping[str, Path], z_schema: str) -> pd.DataFrame:
    """The latent files as one table, as the merge reads them (snip_id, then the z columns
    as float64), stamped with what it was read from."""
    import pandas as pd

    read = read_store(files, z_schema, False)
    index, info = index_latents(read, list(files))
    log_index(read, list(files), info)
    ids = pa.concat_arrays([read.rows[e].snip_ids for e in files]) if files else pa.array([], pa.string())
    picked = ids.take(pa.array(index.rows, pa.int64())).to_pylist()
    frame = pd.DataFrame({"snip_id": pd.Series(picked, dtype=object)})
    values = z_matrix(index, np.arange(len(index.rows)))
    table = pd.concat([frame, pd.DataFrame(values, columns=list(index.columns))], axis=1)
    stamp(table, files, z_schema)  # what it was read from: df03 can then be the stage's own
    return table

