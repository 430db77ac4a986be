"""Export of the typed copies (Parquet, h5ad) and the report. Each is recorded in the
sidecar of the table it is made from (df03's for the report), with what it was made from:
that table as staged (its sha256) and, for the report, the options it was drawn with."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from morphseq_stages.files import staged_path

from .freshness import file_state
from .merge import MergeResult
from .outputs import sidecar_of
from .plan import Build06Plan
from .records import Output, OutputKind, the
from .report.write import write_report
from .report_spec import made_with as report_made_with
from .typed import TypedColumns, type_table, z_matrix
from .typed_files import write_typed

#: per sidecar, the entries of the typed copies (and report) written beside its table
Entries = dict[Path, dict[str, dict[str, Any]]]


def write_extras(plan: Build06Plan, merged: MergeResult, df03_rows: np.ndarray, provenance: Mapping[str, Any],
                 run: Callable, training: Callable) -> Entries:
    """Write the run's typed outputs and report through the export's ``run``; return their
    entries for the sidecars of their tables."""
    typed_df02 = functools.cache(lambda: type_table(plan.df02))
    train = functools.cache(training)
    typed_train = functools.cache(lambda: type_table(train()[0]))
    columns = merged.latents.columns
    # every df02 row's z values, parsed once for df03 and all the analysis copies
    z_df02 = functools.cache(lambda: z_matrix(merged.latents, merged.take))
    tables = {(o.kind, o.experiment): o for o in merged.settled.outputs if not o.fmt}
    entries: Entries = {}

    def state(table: Output) -> dict[str, Any]:
        # the table is written (staged) before its typed copies; renaming it keeps its mtime.
        # A table left as it is: its recorded sha256 holds while its size and mtime do
        recorded = merged.settled.records.get(table.kind, {}).get("files", {}).get(table.path.name)
        return file_state(staged_path(table.path), None if table.writes or not isinstance(recorded, dict) else recorded)

    def record(out: Output, table: Output, made: Mapping[str, Any], made_with: Mapping[str, Any] | None = None) -> None:
        entries.setdefault(sidecar_of(table), {})[out.path.name] = {
            **file_state(staged_path(out.path)),
            "built_from": {"made_from": {"name": table.path.name, **made},
                           **({"made_with": dict(made_with)} if made_with else {})}}

    def one(out: Output, typed: TypedColumns, rows: np.ndarray, z: np.ndarray) -> int:
        table = tables[(out.kind, out.experiment)]
        made = state(table)
        write_typed(out.path, out.fmt, typed, rows, columns, z, provenance, made["sha256"])
        record(out, table, made)
        return len(rows)

    for out in merged.settled.outputs:
        if not out.fmt:
            continue
        if out.kind is OutputKind.TRAINING:
            run(out, lambda out=out: one(out, typed_train(), np.arange(len(train()[0])),
                                         z_matrix(merged.latents, train()[1])))
        else:
            rows = (df03_rows if out.kind is OutputKind.DF03
                    else df03_rows[plan.row_experiments[df03_rows] == out.experiment])
            run(out, lambda out=out, rows=rows: one(out, typed_df02(), rows, z_df02()[rows]))
    report = merged.settled.output(OutputKind.REPORT)
    if report is not None:
        df03 = the(merged.settled.outputs, OutputKind.DF03)

        def draw() -> int:
            covered = _write_report(plan, merged, report.path, provenance)
            record(report, df03, state(df03), report_made_with(plan.options.report_color_by))
            return covered
        run(report, draw)
    return entries


def _write_report(plan: Build06Plan, merged: MergeResult, path: Path, provenance: Mapping[str, Any]) -> int:
    """The report, with df03's provenance: this run's record when it writes df03, else what
    df03's sidecar holds (the run that wrote it)."""
    df03 = merged.settled.df03
    if df03.writes:
        note = "df03 was written by this run."
    else:
        recorded = merged.settled.records.get(OutputKind.DF03, {})
        provenance = {k: v for k, v in recorded.items() if k not in ("files", "outputs")}
        note = "df03 was not rewritten by this run (it is current); its provenance as its sidecar records it."
    return write_report(path, plan, merged, provenance, note)
