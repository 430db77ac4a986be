"""Which outputs a Build06 run writes, replaces or skips, and why.

df03 (with its unembedded list and sidecar), the training join and each analysis copy
is compared with what its sidecar says it was built from (see ``freshness``): a new
output is written, a current one skipped, and an out-of-date or foreign one replaced
only with ``--overwrite`` (a warning otherwise, naming the flag).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
import numpy as np
import pyarrow as pa

from morphseq_stages.embedders import ModelInfo
from morphseq_stages.errors import UserError

from . import keys, manifest, paths
from .csvtext import TextTable, read_table_columns
from .formats import extra_outputs, stale_copy
from .freshness import (
    Freshness,
    built_from,
    content_options,
    df02_parts,
    file_state,
    load_sidecar,
    status,
)
from .inputs import ReadFile
from .latents import parse_z
from .options import Build06Options
from .store import StoreRead

if TYPE_CHECKING:
    from .plan import ExperimentPlan, MissingModel

#: what a generating action does to a latent file, as the out-of-date reasons say it
CHANGES = {"generate": "written", "top-up": "topped up", "regenerate": "re-embedded"}
UPDATE_HINT = "pass --overwrite to update it (nothing is re-embedded)"


OutputKind = Literal["df03", "unembedded", "sidecar", "training", "analysis", "manifest", "report"]


@attrs.frozen(kw_only=True)
class OutputPlan:
    kind: OutputKind | str  # str: a typed sibling, "<csv kind>.<format>" (see ``formats``)
    path: Path
    action: Literal["write", "overwrite", "skip"]
    reason: str = ""
    experiment: str | None = None
    freshness: Freshness = Freshness(status="new")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "action": self.action, "reason": self.reason,
                "experiment": self.experiment, "status": self.freshness.status,
                "status_reasons": list(self.freshness.reasons)}


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
            options=content_options(self.opts, self.model.name), only=only, training=train_state,
            odd_rows={e: int(r.odd_rows.sum()) for e, r in self.read.rows.items() if e in latents})


def decide(kind: Any, path: Path, fresh: Freshness, overwrite: bool, experiment: str | None = None) -> OutputPlan:
    if fresh.status == "new":
        return OutputPlan(kind=kind, path=path, action="write", experiment=experiment, freshness=fresh)
    if fresh.status == "current":
        return OutputPlan(kind=kind, path=path, action="skip", reason="current", experiment=experiment,
                          freshness=fresh)
    if overwrite:
        return OutputPlan(kind=kind, path=path, action="overwrite", reason=f"{fresh.describe()}; --overwrite",
                          experiment=experiment, freshness=fresh)
    hint = UPDATE_HINT if fresh.status == "out-of-date" else "pass --overwrite to replace it"
    return OutputPlan(kind=kind, path=path, action="skip", reason=f"{fresh.describe()}; {hint}",
                      experiment=experiment, freshness=fresh)


def nothing_to_merge(experiments: Sequence[ExperimentPlan]) -> bool:
    """No latent file exists or will be written: a rewrite would only remove embeddings."""
    return not any(e.latent_exists or e.action in CHANGES for e in experiments)


def _fresh(path: Path, sidecar: Path, data: Mapping[str, Any], current: Callable[[Mapping], dict],
           changing: Mapping[str, str], now: InputsNow | None = None, held: Collection[str] | None = None
           ) -> Freshness:
    """``now``: for an output whose records are df02's (df03, an analysis copy), to count
    the df02 rows changed since it was built; ``held``: the only experiments whose latent
    files the output is built from (a record that lists others was made before that rule)."""
    entry = data.get("files", {}).get(path.name)
    recorded = entry.get("built_from") if isinstance(entry, dict) else None
    if held is not None and isinstance(recorded, dict) and isinstance(recorded.get("latents"), dict):
        recorded = {**recorded, "latents": {e: v for e, v in recorded["latents"].items() if e in held}}
        entry = {**entry, "built_from": recorded}
        changing = {e: how for e, how in changing.items() if e in held}
    qc = (recorded or {}).get("options", {}).get("qc_filter")
    counter = None if now is None or qc else functools.partial(row_changes, path, now)
    return status(path, sidecar, entry, lambda: current(recorded or {}), changing, counter)


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
    dates = cols["experiment_date"].to_pylist() if "experiment_date" in cols else [""] * len(ids)
    rows: dict[str, list[tuple[str, bytes]]] = {}
    for snip, date, record in zip(ids, dates, records, strict=True):
        exp = (date or "").strip() or keys.experiment_of(snip)
        if exp in wanted:
            rows.setdefault(exp, []).append((snip, record.rsplit(b",", z)[0] if z else record))
    return rows


def plan_outputs(opts: Build06Options, *, now: InputsNow, store: Path
                 ) -> tuple[list[OutputPlan], dict[str, Any], list[str]]:
    """(outputs, the sidecars found by output kind, warnings for the outputs left out of date)."""
    changing = {e.experiment: CHANGES[e.action] for e in now.experiments if e.action in CHANGES}
    df03 = paths.df03(opts.root)
    records = {"df03": load_sidecar(paths.sidecar(df03))}
    fresh = _fresh(df03, paths.sidecar(df03), records["df03"], now.record, changing, now)
    listing = _fresh(paths.unembedded(df03), paths.sidecar(df03), records["df03"], now.record, changing)
    if fresh.status == "current" and listing.status != "current":
        fresh = Freshness(status="out-of-date", reasons=(f"{paths.unembedded(df03).name} is {listing.describe()}",))
    main = decide("df03", df03, fresh, opts.overwrite)
    if fresh.status in ("out-of-date", "foreign") and nothing_to_merge(now.experiments):
        # a mistyped --model-name or --data-root must not replace a df03 that has embeddings
        main = attrs.evolve(main, action="skip", reason=f"{fresh.describe()}; but this run has no latent file to "
                            "merge (check --model-name and --data-root); df03 kept")
    follow = f"kept with df03, which is {fresh.describe().split(':')[0]}" if main.action == "skip" else ""
    outputs = [main] + [
        OutputPlan(kind=k, path=p, action="skip" if follow else ("overwrite" if p.exists() else "write"),
                   reason=follow, freshness=fresh)
        for k, p in (("unembedded", paths.unembedded(df03)), ("sidecar", paths.sidecar(df03)))]
    warnings = [f"df03 {df03} is {fresh.describe()}; not updated: {main.reason[len(fresh.describe()) + 2:]}"
                if main.action == "skip" and fresh.status != "current" else ""]
    if opts.train_name:
        out, warning = _training(opts, now, records, changing)
        outputs.append(out)
        warnings.append(warning)
    if opts.export_analysis_copies:
        copies, warning = _copies(opts, now, records, changing)
        outputs += copies
        warnings.append(warning)
    else:
        warnings.append(_stale_copies(opts, now, changing))
    if opts.report:
        from .report import check_color_by

        check_color_by(opts.report_color_by, now.df02.names, now.df02_path)
    extra, extra_warnings = extra_outputs(outputs, opts, _sibling_of(outputs))
    outputs += extra
    warnings += extra_warnings
    if changing:
        path = store / manifest.MANIFEST_NAME
        what = "; ".join(f"{e} {how}" for e, how in changing.items())
        fresh = (Freshness(status="out-of-date", reasons=(f"latent files to record: {what}",)) if path.exists()
                 else Freshness(status="new"))
        outputs.append(OutputPlan(kind="manifest", path=path, action="overwrite" if path.exists() else "write",
                                  reason="updated for each latent file written", freshness=fresh))
    return outputs, records, [w for w in warnings if w]


def _sibling_of(outputs: list[OutputPlan]) -> Callable[..., OutputPlan]:
    """How a typed sibling (Parquet, h5ad) or the report is decided: with the CSV it comes from."""
    def make(kind: str, path: Path, overwrite: bool, experiment: str | None = None,
             made_with: Mapping[str, Any] | None = None) -> OutputPlan:
        base = "df03" if kind == "report" else kind.partition(".")[0]
        csv = next(o for o in outputs if o.kind == base and o.experiment == experiment)
        if csv.action == "skip" and csv.freshness.status != "current":
            # the CSV is kept as it is, and this run's merge does not hold its rows: a typed copy
            # made from the merge would not match it, nor would a report describe df03 on disk
            return OutputPlan(kind=kind, path=path, action="skip", experiment=experiment, freshness=csv.freshness,
                              reason=f"kept with {csv.path.name}, which is {csv.freshness.describe().split(':')[0]}")
        if not path.exists():
            return OutputPlan(kind=kind, path=path, action="write", experiment=experiment)
        if csv.action != "skip":
            return OutputPlan(kind=kind, path=path, action="overwrite", reason=f"with {csv.path.name}",
                              experiment=experiment, freshness=csv.freshness)
        # the CSV stays: its typed copy is as current as it only if this tool made it from it as it is
        stale = stale_copy(path, csv.path, made_with)
        if stale is None:
            return OutputPlan(kind=kind, path=path, action="skip", reason=f"as {csv.path.name}: {csv.reason}",
                              experiment=experiment, freshness=csv.freshness)
        fresh = Freshness(status="out-of-date" if stale[0] == "out-of-date" else "foreign", reasons=(stale[1],))
        if csv.freshness.status != "current":  # this run's merge is not what the CSV holds: rewrite neither
            return OutputPlan(kind=kind, path=path, action="skip", experiment=experiment, freshness=fresh,
                              reason=f"kept with {csv.path.name}, which is {csv.freshness.describe().split(':')[0]}")
        return decide(kind, path, fresh, overwrite, experiment)
    return make


def _training(opts: Build06Options, now: InputsNow, records: dict[str, Any],
              changing: Mapping[str, str]) -> tuple[OutputPlan, str]:
    train_in, train_out = paths.training_input(opts.root, str(opts.train_name)), paths.training_output(opts.root, str(opts.train_name))
    if not train_in.is_file():
        return (OutputPlan(kind="training", path=train_out, action="skip", reason=f"{train_in} not found"),
                f"training metadata not found: {train_in}")
    side = paths.sidecar(train_out)
    records["training"] = load_sidecar(side)
    fresh = _fresh(train_out, side, records["training"], lambda rec: now.record(rec, training=train_in), changing,
                   held=now.held_by(train_in))
    out = decide("training", train_out, fresh, opts.overwrite)
    skipped = out.action == "skip" and fresh.status != "current"
    return out, f"training join {train_out} is {fresh.describe()}; not updated: {UPDATE_HINT}" if skipped else ""


def _copies(opts: Build06Options, now: InputsNow, records: dict[str, Any],
            changing: Mapping[str, str]) -> tuple[list[OutputPlan], str]:
    folder = paths.analysis_dir(opts.data_root, now.model.name)
    side = folder / paths.COPIES_SIDECAR
    records["analysis"] = load_sidecar(side)
    out = []
    for e in now.experiments:
        if not (e.selected and e.df02_rows):
            continue
        path = paths.analysis_copy(opts.data_root, now.model.name, e.experiment)
        mine = {e.experiment: changing[e.experiment]} if e.experiment in changing else {}
        fresh = _fresh(path, side, records["analysis"], functools.partial(now.record, only=e.experiment), mine,
                       now)
        out.append(decide("analysis", path, fresh, opts.overwrite, e.experiment))
    stale = [str(o.experiment) for o in out if o.action == "skip" and o.freshness.status != "current"]
    warning = (f"{len(stale)} analysis cop{'y is' if len(stale) == 1 else 'ies are'} out of date or not written by "
               f"this tool ({', '.join(stale)}); not updated: pass --overwrite to update them" if stale else "")
    return out, warning


def _stale_copies(opts: Build06Options, now: InputsNow, changing: Mapping[str, str]) -> str:
    """A run without --export-analysis-copies still says which copies written before no
    longer match what df03 holds (or will hold after this run), so that none goes stale unsaid."""
    folder = paths.analysis_dir(opts.data_root, now.model.name)
    side = folder / paths.COPIES_SIDECAR
    data = load_sidecar(side)
    stale = []
    for e in now.experiments:
        path = paths.analysis_copy(opts.data_root, now.model.name, e.experiment)
        if path.name not in data.get("files", {}):
            continue
        mine = {e.experiment: changing[e.experiment]} if e.experiment in changing else {}
        if _fresh(path, side, data, functools.partial(now.record, only=e.experiment), mine).status == "out-of-date":
            stale.append(e.experiment)
    if not stale:
        return ""
    return (f"{len(stale)} analysis cop{'y is' if len(stale) == 1 else 'ies are'} out of date in {folder} "
            f"({', '.join(stale)}): not built from df02 and the latent files as they are now; pass "
            "--export-analysis-copies --overwrite to update them")
