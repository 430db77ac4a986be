"""What an output is built from, as the inputs are now: the record its sidecar keeps
(``built_from``: df02 and its rows per experiment, each latent file's sha256, the model's
fingerprint, the options that change its content) and the df02 rows changed since."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import pyarrow as pa

from morphseq_stages.embedders import ModelInfo
from morphseq_stages.errors import UserError

from . import keys
from .csvtext import TextTable, read_table_columns, value_bytes
from .freshness import CELLS_CHECKED, CONTENT_OPTIONS, Z_COLUMNS, file_state
from .inputs import ReadFile
from .latents import parse_z
from .records import ExperimentPlan, MissingModel
from .store import StoreRead

if TYPE_CHECKING:
    from .options import Build06Options

@attrs.define
class InputsNow:
    """What df03 and its copies would be built from now; each part computed once, when asked."""

    opts: Build06Options
    df02_path: Path
    df02: TextTable
    snip_ids: pa.Array  # df02's snip_id column, as the plan parsed it
    row_codes: np.ndarray  # each df02 row's index in ``experiments`` (-1: none)
    experiments: Sequence[ExperimentPlan]
    model: ModelInfo | MissingModel
    read: StoreRead  # the latent files as read (by the plan, or by the merge when generation changed them)
    _parts: dict | None = None
    _df02_state: dict | None = None
    _rows: dict = attrs.Factory(dict)
    _held: dict = attrs.Factory(dict)

    def rows_of(self, experiments: Sequence[str]) -> dict[str, list[tuple[str, bytes]]]:
        """These experiments' df02 rows as (snip_id, record bytes); each read once, when asked."""
        names = [e.experiment for e in self.experiments]
        todo = [names.index(e) for e in experiments if e not in self._rows and e in names]
        if todo:
            rows = np.flatnonzero(np.isin(self.row_codes, todo))
            ids = self.snip_ids.take(pa.array(rows, pa.int64())).to_pylist()
            records = self.df02.records.take(pa.array(rows, pa.int64())).to_pylist()
            for k in todo:
                self._rows[names[k]] = []
            for i, snip, record in zip(rows, ids, records, strict=True):
                self._rows[names[self.row_codes[i]]].append((snip, record))
        return {e: self._rows.get(e, []) for e in experiments}

    def parts(self) -> dict[str, list]:
        if self._parts is None:
            self._parts = df02_parts(self.df02, self.row_codes, [e.experiment for e in self.experiments])
        return self._parts

    def held_by(self, training: Path) -> frozenset[str]:
        """The experiments of a training set's rows (read once): its join is built from
        their latent files only, so another experiment's file leaves it current."""
        if training not in self._held:
            _, cols = read_table_columns(training, ["snip_id", "experiment_date"], what="training metadata")
            self._held[training] = (frozenset(keys.row_experiments(cols["snip_id"], cols.get("experiment_date")))
                                    if "snip_id" in cols else frozenset())
        return self._held[training]

    def record(self, recorded: Mapping[str, Any] | None = None, *, only: str | None = None,
               training: Path | ReadFile | None = None) -> dict[str, Any]:
        """``built_from`` of an output made from these inputs, each as read: df02 and the
        latent files as the run read them; ``training``, the training metadata as read (a
        plan, which does not read it, passes its path: the file as it is now)."""
        recorded = recorded or {}
        if self._df02_state is None:
            source = self.df02.source
            self._df02_state = source.state(recorded.get("df02")) if source is not None \
                else file_state(self.df02_path, recorded.get("df02"))
        if isinstance(training, Path):
            train_state: dict[str, Any] | None = file_state(training, recorded.get("training"))
        else:
            train_state = training.state() if training is not None else None
        latents = self.read.identities()
        if training is not None:  # a training join: only the latent files of the experiments it holds
            held = self.held_by(training if isinstance(training, Path) else training.path)
            latents = {e: v for e, v in latents.items() if e in held}
        return built_from(
            df02={k: self._df02_state[k] for k in ("sha256", "size", "mtime_ns")}, parts=self.parts(),
            latents=latents, fingerprint=self.model.fingerprint,
            options=content_options(self.opts, self.model.name), z_columns=self.read.columns, only=only,
            training=train_state,
            odd_rows={e: int(r.odd_rows.sum()) for e, r in self.read.rows.items() if e in latents})


def row_changes(output: Path, now: InputsNow, experiments: Sequence[str]) -> dict[str, tuple[int, int, int]] | None:
    """Per experiment: df02 rows (new, edited, removed) since ``output`` was built.

    ``output`` holds every df02 row of its experiments as it was then (no --qc-filter),
    each followed by its z cells (numbers: no comma, no quote); a row is matched by its
    snip_id. None when the output cannot be read so.
    """
    try:
        old, cols = read_table_columns(output, ["snip_id", "experiment_date"], what="output")
    except UserError:
        return None
    z = next((i for i, n in enumerate(reversed(old.names)) if not parse_z(n)), len(old.names))  # trailing z columns
    if "snip_id" not in old.names[:len(old.names) - z]:
        return None
    old_rows = _by_experiment(cols, old.records.to_pylist(), z, set(experiments))
    new_rows = now.rows_of(experiments)
    out = {}
    for exp in experiments:
        a, b = Counter(old_rows.get(exp, [])), Counter(new_rows.get(exp, []))
        ids_a, ids_b = Counter(k for k, _ in a.elements()), Counter(k for k, _ in b.elements())
        kept = sum((ids_a & ids_b).values())
        out[exp] = (sum((ids_b - ids_a).values()), kept - sum((a & b).values()), sum((ids_a - ids_b).values()))
    return out


def _by_experiment(cols: Mapping[str, Any], records: list[bytes], z: int, wanted: set[str]
                   ) -> dict[str, list[tuple[str, bytes]]]:
    """An output's rows of the ``wanted`` experiments as (snip_id, record without its ``z`` cells)."""
    ids = cols["snip_id"].to_pylist()
    rows: dict[str, list[tuple[str, bytes]]] = {}
    for snip, exp, record in zip(ids, keys.row_experiments(cols["snip_id"], cols.get("experiment_date")), records,
                                 strict=True):
        if exp in wanted:
            rows.setdefault(exp, []).append((snip, record.rsplit(b",", z)[0] if z else record))
    return rows


def df02_parts(table: TextTable, codes: np.ndarray, experiments: Sequence[str]) -> dict[str, list]:
    """Per experiment: [row count, sha256 of the header and its records].

    ``codes``: each row's index in ``experiments`` (-1: none). The records are grouped
    by experiment once (a stable sort), then each group is hashed as one run of bytes.
    """
    order = np.argsort(codes, kind="stable")
    grouped = bool((order == np.arange(len(order))).all())  # df02 is usually in experiment order: no copy then
    offsets, data = value_bytes(table.records if grouped else table.records.take(pa.array(order, pa.int64())))
    ends = np.searchsorted(codes[order], np.arange(len(experiments) + 1), side="left")
    out: dict[str, list] = {}
    for k, exp in enumerate(experiments):
        a, b = ends[k], ends[k + 1]
        h = hashlib.sha256(table.header)
        h.update((offsets[a:b + 1] - offsets[a]).tobytes())
        h.update(data[offsets[a]:offsets[b]])
        out[exp] = [int(b - a), h.hexdigest()]
    return out


def content_options(opts: Any, model_name: str) -> dict[str, Any]:
    """The options that change an output's content; ``model_name`` as the embedder resolved
    it (``--model-name`` may be unset, or stand beside a ``--model-dir`` that names the model)."""
    return {**{k: getattr(opts, k) for k in CONTENT_OPTIONS}, "model_name": model_name}


def built_from(*, df02: Mapping[str, Any], parts: Mapping[str, list], latents: Mapping[str, Mapping[str, Any]],
               fingerprint: str | None, options: Mapping[str, Any], z_columns: Sequence[str],
               only: str | None = None, training: Mapping[str, Any] | None = None,
               odd_rows: Mapping[str, int] | None = None) -> dict[str, Any]:
    """What an output is built from; ``z_columns``: those it holds (an analysis copy holds
    every latent file's, not only its experiment's); ``only``: the one experiment of an
    analysis copy; ``odd_rows``: per experiment, its latent rows holding a cell that is not
    one number."""
    odd = {e: int(n) for e, n in (odd_rows or {}).items() if n}
    if only is not None:
        parts = {only: parts[only]} if only in parts else {}
        df02 = {"sha256": parts[only][1] if only in parts else ""}
        latents = {only: latents[only]} if only in latents else {}
        odd = {only: odd[only]} if only in odd else {}
    record: dict[str, Any] = {
        "df02": {**df02, "experiments": dict(parts)},
        "latents": {e: dict(s) for e, s in latents.items()},
        "model_fingerprint": fingerprint,
        "options": dict(options),
        CELLS_CHECKED: odd,
        Z_COLUMNS: list(z_columns),
    }
    if training is not None:  # a training join is built from its own metadata, not from df02
        record["training"] = dict(training)
        del record["df02"]
    return record
