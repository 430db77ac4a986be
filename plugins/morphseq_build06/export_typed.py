"""Export of the typed copies (Parquet, h5ad) and the report, with their record
(``typed_copies.json``: each copy's sha256 and that of the table it was made from)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from morphseq_stages.files import atomic_write_json, staged_path

from .freshness import file_state, load_sidecar
from .merge import MergeResult
from .paths import TYPED_RECORD
from .plan import Build06Plan
from .records import Output, OutputKind
from .report.write import write_report
from .report_spec import made_with as report_made_with
from .typed import TypedColumns, type_table, z_matrix
from .typed_files import write_typed


def write_extras(plan: Build06Plan, merged: MergeResult, df03_rows: np.ndarray, provenance: Mapping[str, Any], run: Callable,
                 training: Callable) -> list[str]:
    """Write the run's typed outputs and report through the export's ``run``; the
    records of typed copies written (``typed_copies.json``) are returned."""
    typed_df02 = functools.cache(lambda: type_table(plan.df02))
    train = functools.cache(training)
    typed_train = functools.cache(lambda: type_table(train()[0]))
    columns = merged.latents.columns
    # every df02 row's z values, parsed once for df03 and all the analysis copies
    z_df02 = functools.cache(lambda: z_matrix(merged.latents, merged.take))

    made: dict[Path, dict[str, Any]] = {}  # each typed copy written, and the state of the CSV it was made from
    made_with: dict[Path, dict[str, Any]] = {}  # and what else it was made with (the report's options)

    def one(out: Output, fmt: str, typed: TypedColumns, rows: np.ndarray, z: np.ndarray) -> int:
        # the CSV is written (staged) before its typed copies; renaming it keeps its mtime
        made[out.path] = file_state(staged_path(out.path.with_suffix(".csv")))
        write_typed(out.path, fmt, typed, rows, columns, z, provenance, made[out.path]["sha256"])
        return len(rows)

    for out in merged.settled.outputs:
        if not out.fmt:
            continue
        if out.kind is OutputKind.TRAINING:
            run(out, lambda out=out: one(out, out.fmt, typed_train(), np.arange(len(train()[0])),
                                         z_matrix(merged.latents, train()[1])))
        else:
            rows = (df03_rows if out.kind is OutputKind.DF03
                    else df03_rows[plan.row_experiments[df03_rows] == out.experiment])
            run(out, lambda out=out, rows=rows: one(out, out.fmt, typed_df02(), rows, z_df02()[rows]))
    report = merged.settled.output(OutputKind.REPORT)
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
    df03 = merged.settled.df03
    recorded = merged.settled.records.get(OutputKind.DF03, {})
    if df03.writes:
        note = "df03 was written by this run."
    else:
        provenance = {k: v for k, v in recorded.items() if k not in ("files", "outputs")}
        note = "df03 was not rewritten by this run (it is current); its provenance as its sidecar records it."
    entry = recorded.get("files", {}).get(df03.path.name) if not df03.writes else None
    # named: unlike a typed copy, the report is not made from the CSV of its own name
    made[path] = {**file_state(staged_path(df03.path), entry if isinstance(entry, dict) else None),
                  "name": df03.path.name}
    made_with[path] = report_made_with(plan.options.report_color_by)
    return write_report(path, plan, merged, provenance, note)
