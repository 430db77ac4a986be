"""Build06 export phase: df03, the unembedded list, the training join, analysis copies and
their provenance sidecars; each atomically, as the run decided (see ``outputs``, ``settled``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import structlog

from morphseq_stages.errors import UserError
from morphseq_stages.files import (
    atomic_write,
    atomic_write_json,
    staged_path,
    staged_writes,
)

from . import manifest, paths
from .coverage import recorded_coverage
from .csvtext import (
    TextTable,
    header_with,
    read_columns,
    read_text_table,
    write_rows,
    write_string_table,
)
from .export_typed import write_extras
from .freshness import file_state
from .inputs import ReadFile
from .latents import parse_z
from .merge import MergeResult
from .outputs import sidecar_of
from .plan import Build06Plan
from .provenance import plain, run_facts, versions
from .records import Df03State, ExperimentPlan, Output, OutputKind, RunSummary, Skipped, the
from .settled import Settled

log = structlog.get_logger()


def _write_table(out: Output, table: TextTable, rows: np.ndarray, merged: MergeResult, take: np.ndarray) -> int:
    """Write ``table``'s records ``rows`` with their z columns; return the row count."""
    whole = len(rows) == len(table) and (len(rows) == 0 or rows[-1] == len(rows) - 1)
    records = table.records if whole else table.records.take(pa.array(rows, pa.int64()))
    header = header_with(table.header, merged.latents.columns)
    picked = take[rows]
    atomic_write(out.path, lambda fh: write_rows(
        fh, header, records, table.newline, lambda a, b: merged.latents.cells(picked[a:b])))
    return len(rows)


def _inputs(plan: Build06Plan, settled: Settled, training: ReadFile | None) -> list[dict[str, str]]:
    """Every file the run read, with the sha256 of the bytes it read (none is hashed again)."""
    read = [plan.df02.source, *settled.latents.files(), training]
    return [{"path": str(f.path), "sha256": f.sha256} for f in read if f is not None]


class _Writer:
    """Runs each planned write (or logs its skip), keeping the lists the summary reports."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.skipped: list[dict[str, str]] = []
        self.rows: dict[str, int] = {}

    def __call__(self, out: Output | None, write: Callable[[], int | None]) -> bool:
        """``write`` returns the table's row count, or None for a file that is not a table."""
        if out is None:
            return False
        if not out.writes:
            self.skipped.append({"path": str(out.path), "reason": out.reason})
            log.info("write.skipped", path=str(out.path), what=out.name, reason=out.reason)
            return False
        rows = write()
        if rows is not None:
            self.rows[str(out.path)] = rows
        self.written.append(str(out.path))
        log.info("write.staged", path=str(out.path), what=out.name, action=out.action,
                 **({"rows": rows} if rows is not None else {}))
        return True


def export(plan: Build06Plan, merged: MergeResult) -> RunSummary:
    # the outputs change together: all staged, then renamed folder by folder (docs/safety.md, "Write order")
    with staged_writes():
        return _export(plan, merged)


def _export(plan: Build06Plan, merged: MergeResult) -> RunSummary:
    settled = merged.settled
    df03 = settled.df03
    typed = any(o.writes for o in settled.outputs if o.fmt or o.kind is OutputKind.REPORT)
    training = functools.cache(lambda: _training_join(plan, merged))  # read once: the join and its record agree
    run = _Writer()
    df03_rows = np.flatnonzero(merged.keep)
    copies = [o for o in settled.outputs if o.kind is OutputKind.ANALYSIS and not o.fmt]
    for out in copies:
        exp_rows = df03_rows[plan.row_experiments[df03_rows] == out.experiment]
        run(out, functools.partial(_write_table, out, plan.df02, exp_rows, merged, merged.take))
    train = settled.output(OutputKind.TRAINING)
    if train is not None:
        run(train, functools.partial(_write_training, train, merged, training))
    listed = np.flatnonzero(merged.reasons != "")
    run(settled.output(OutputKind.UNEMBEDDED), lambda: _write_unembedded(plan, merged, listed))
    run(df03, lambda: _write_table(df03, plan.df02, df03_rows, merged, merged.take))
    train_read = training()[0].source if train is not None and train.writes else None
    record = _df03_record(plan, merged, _inputs(plan, settled, train_read)) if df03.writes or typed else {}
    entries = write_extras(plan, merged, df03_rows, record, run, training)
    # each table's record, with the entries of its typed copies (and df03's report) written beside it
    train_record = settled.output(OutputKind.TRAINING_SIDECAR)
    if train is not None and train_record is not None:
        made = entries.get(train_record.path, {})
        run(train_record, functools.partial(_write_training_sidecar, plan, merged, train, run, training, made)
            if train.writes else lambda: _add_to_record(train_record.path, settled.records.get(OutputKind.TRAINING, {}), made))
    copies_record = settled.output(OutputKind.ANALYSIS_SIDECAR)
    if copies_record is not None:
        run(copies_record, functools.partial(_write_copies_sidecar, plan, merged, copies, run,
                                             entries.get(copies_record.path, {})))
    report = settled.output(OutputKind.REPORT)
    sidecar = the(settled.outputs, OutputKind.SIDECAR)
    made = entries.get(sidecar.path, {})
    if df03.writes:
        run(sidecar, functools.partial(_write_sidecar, plan, merged, record, run, made))
    else:  # df03 stays: its record gains what was written beside it, if anything
        run(sidecar, lambda: _add_to_record(sidecar.path, settled.records.get(OutputKind.DF03, {}), made))
    generated = settled.generated
    latents = [*generated.written, *([str(plan.manifest_path)] if generated.manifest else [])]
    return RunSummary(df03=_df03_state(plan, merged), df02_rows=len(plan.df02), selected=plan.selected,
                      generated=generated, written=(*latents, *run.written),
                      skipped=tuple(Skipped(path=s["path"], reason=s["reason"]) for s in run.skipped),
                      warnings=merged.warnings,
                      report=str(report.path) if report is not None and str(report.path) in run.written else None,
                      sidecar=str(sidecar.path) if str(sidecar.path) in run.written else None)


def _df03_state(plan: Build06Plan, merged: MergeResult) -> Df03State:
    """df03 as on disk after the run: as written, or as it was (never an unwritten merge)."""
    settled = merged.settled
    out, cov = settled.df03, merged.coverage
    state = Df03State(path=out.path, written=out.writes, exists=out.path.exists(), status=out.freshness.status,
                      reason=out.reason or out.freshness.describe())
    if out.writes or out.freshness.status == "current":  # current: built from these very inputs
        return attrs.evolve(state, rows=int(cov.rows or 0), matched=int(cov.matched or 0), coverage=cov.overall,
                            coverage_selected=cov.selected, never_embeddable=cov.never_embeddable)
    disk = recorded_coverage(out, settled.records.get(OutputKind.DF03, {}), plan.selected)
    if disk is None:
        return state
    return attrs.evolve(state, rows=disk.rows, matched=disk.matched, coverage=disk.overall,
                        coverage_selected=disk.selected, never_embeddable=disk.never_embeddable)


def _training_join(plan: Build06Plan, merged: MergeResult) -> tuple[TextTable, np.ndarray]:
    """The training metadata and the latent row of each of its rows."""
    train_in = paths.training_input(plan.options.root, str(plan.options.train_name))
    table = read_text_table(train_in, what="training metadata")
    if "snip_id" not in table.names:
        raise UserError(f"training metadata {train_in} has no snip_id column")
    take, _, _ = merged.latents.match(read_columns(table, ["snip_id"])["snip_id"])
    return table, take


def _write_training(out: Output, merged: MergeResult, join: Callable[[], tuple[TextTable, np.ndarray]]) -> int:
    table, take = join()
    return _write_table(out, table, np.arange(len(table)), merged, take)


def _write_unembedded(plan: Build06Plan, merged: MergeResult, listed: np.ndarray) -> int:
    ids = plan.snip_ids.take(pa.array(listed, pa.int64())).to_pylist() if len(listed) else []
    columns = {"snip_id": ids, "experiment": plan.row_experiments[listed].tolist(),
               "reason": merged.reasons[listed].tolist()}
    atomic_write(the(merged.settled.outputs, OutputKind.UNEMBEDDED).path, lambda fh: write_string_table(fh, columns))
    return len(ids)


def _file_entry(path: Path, rows: int, record: dict[str, Any], **extra: Any) -> dict[str, Any]:
    # the file as staged: it is renamed into place when the whole set is (files.staged_writes)
    return {**file_state(staged_path(path)), "rows": rows, **extra, "built_from": record}


def _z(merged: MergeResult, schema: str) -> dict[str, Any]:
    kinds = {(parse_z(c) or ("", "?", 0))[1] for c in merged.latents.columns}
    naming = None if not kinds else "flat" if kinds == {""} else "bio_nuisance" if kinds <= {"b", "n"} else "mixed"
    return {"columns": list(merged.latents.columns), "schema": schema, "resolved": naming}


def _latent_files(plan: Build06Plan, settled: Settled, only: set[str] | None = None) -> dict[str, Any]:
    """The latent files the merge read, as it read them."""
    recorded = manifest.load(plan.manifest_path)["files"]
    read = settled.latents.identities()
    out = {}
    for e in settled.experiments:
        if e.experiment in read and (only is None or e.experiment in only):
            entry = recorded.get(e.latent_path.name)
            out[e.experiment] = {
                "path": str(e.latent_path.resolve()), **read[e.experiment],
                "model_fingerprint": entry.get("model_fingerprint") if entry else None,
                "model_name": entry.get("model_name") if entry else None,
                "origin": _origin(e, entry)}
    return out


def _origin(experiment: ExperimentPlan, entry: dict[str, Any] | None) -> str:
    """Where the model of a latent file is known from (see sources)."""
    if experiment.left_out:
        return f"not merged: {experiment.left_out}"
    if experiment.changed_since_recorded:
        return f"unknown origin (changed since {manifest.MANIFEST_NAME} recorded it)"
    return "manifest" if entry else "unknown origin (no manifest entry)"


def _provenance(plan: Build06Plan, merged: MergeResult, only: set[str] | None = None) -> dict[str, Any]:
    opts, gen = plan.options, merged.settled.generated
    return plain({
        "stage": "build06",
        **run_facts(opts.root),
        "versions": versions(),
        "paths": {"root": str(opts.root.resolve()), "data_root": str(opts.data_root.resolve()),
                  "df02": str(plan.df02_path.resolve()), "df03": str(plan.df03_path.resolve()),
                  "latent_store": str(plan.store.resolve())},
        "embedder": {"name": opts.embedder, "plugin": plan.embedder_provider.plugin,
                     "distribution": plan.embedder_provider.distribution,
                     "version": plan.embedder_provider.version, **(gen.embedder or {})},
        "model": {"name": plan.model.name,
                  "folder": str(Path(plan.model.location).resolve()) if plan.model.location else None,
                  "weights_sha256": plan.model.fingerprint, "config_sha256": plan.model.config_sha256,
                  **({"error": plan.model_error} if plan.model_error else {})},
        "latent_files": _latent_files(plan, merged.settled, only),
        "z": _z(merged, opts.z_schema),
        "options": {f.name: getattr(opts, f.name) for f in opts.__attrs_attrs__},
    })


def _df03_record(plan: Build06Plan, merged: MergeResult, inputs: list[dict[str, str]]) -> dict[str, Any]:
    """df03's provenance: the sidecar's content, and the typed outputs' metadata."""
    cov, info = merged.coverage, merged.settled.info
    return {
        **_provenance(plan, merged),
        "inputs": inputs,
        "coverage": {"overall": cov.overall, "selected": cov.selected, "per_experiment": cov.per_experiment_dict()},
        "counts": {"df02_rows": len(plan.df02), "df03_rows": int(merged.keep.sum()), "rows_counted": cov.rows,
                   "rows_matched": cov.matched, "latent_rows": info.latent_rows, "z_columns": info.z_columns,
                   "unembedded": merged.unembedded, "rows_never_embeddable": cov.never_embeddable},
        "hygiene": info.hygiene.as_dict(),
        "duplicates": info.duplicates.as_dict(),
        "key_rules": {"df02": merged.key_rules, "latents": dict(info.key_rules)},
        "warnings": list(merged.warnings),
    }


def _recorded(settled: Settled, kind: OutputKind, path: Path) -> dict[str, Any]:
    entry = settled.records.get(kind, {}).get("files", {}).get(path.name)
    return entry.get("built_from", {}) if isinstance(entry, dict) else {}


def _write_record(path: Path, data: dict[str, Any]) -> None:
    """Write a sidecar: every output's record is one JSON file beside it, staged with it."""
    atomic_write_json(path, data)


def _add_to_record(path: Path, recorded: Mapping[str, Any], entries: Mapping[str, Any]) -> None:
    """A sidecar as it was, with the entries of the files this run wrote beside its table."""
    _write_record(path, {**recorded, "files": {**recorded.get("files", {}), **entries}})


def _write_sidecar(plan: Build06Plan, merged: MergeResult, record: dict[str, Any], run: _Writer,
                   made: Mapping[str, Any]) -> None:
    """Write df03's provenance sidecar; ``made``: the entries of its typed copies and report."""
    settled = merged.settled
    built = settled.inputs.record(_recorded(settled, OutputKind.DF03, plan.df03_path))
    df03, listing = settled.df03.path, the(settled.outputs, OutputKind.UNEMBEDDED).path
    _write_record(the(settled.outputs, OutputKind.SIDECAR).path, {
        **record,
        "files": {**settled.records.get(OutputKind.DF03, {}).get("files", {}),
                  df03.name: _file_entry(df03, run.rows[str(df03)], built),
                  listing.name: _file_entry(listing, run.rows[str(listing)], built), **made},
        "generated": settled.generated.as_dict(),
        "outputs": {"written": run.written, "skipped": run.skipped},
        "timings_s": {"generate": settled.generated.seconds, "total": round(time.monotonic() - plan.started, 3)},
    })


def _write_copies_sidecar(plan: Build06Plan, merged: MergeResult, copies: list[Output], run: _Writer,
                          made: Mapping[str, Any]) -> None:
    settled = merged.settled
    files = {**settled.records.get(OutputKind.ANALYSIS, {}).get("files", {}), **made}
    for o in copies:
        if str(o.path) in run.rows:
            built = settled.inputs.record(_recorded(settled, OutputKind.ANALYSIS, o.path), only=o.experiment)
            files[o.path.name] = _file_entry(o.path, run.rows[str(o.path)], built, experiment=o.experiment)
    _write_record(sidecar_of(copies[0]),
                  {**_provenance(plan, merged, {str(o.experiment) for o in copies}), "files": files})


def _write_training_sidecar(plan: Build06Plan, merged: MergeResult, train: Output, run: _Writer,
                            training: Callable[[], tuple[TextTable, np.ndarray]], made: Mapping[str, Any]) -> None:
    settled = merged.settled
    train_in = paths.training_input(plan.options.root, str(plan.options.train_name))
    read = training()[0].source  # the training metadata as the join read it
    record = settled.inputs.record(_recorded(settled, OutputKind.TRAINING, train.path), training=read or train_in)
    _write_record(sidecar_of(train),
                  {**_provenance(plan, merged), "training_metadata": str(train_in.resolve()),
                   "files": {**settled.records.get(OutputKind.TRAINING, {}).get("files", {}),
                             train.path.name: _file_entry(train.path, run.rows[str(train.path)], record), **made}})
