"""Build06 export phase: df03, the unembedded list, the training join, analysis
copies and the provenance sidecar; each atomically, none replaced without --overwrite."""

from __future__ import annotations

import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import structlog

from morphseq_stages import __version__
from morphseq_stages.errors import UserError
from morphseq_stages.files import atomic_write, atomic_write_json, sha256_files_in_background

from .csvtext import (
    TextTable,
    header_with,
    read_columns,
    read_text_table,
    write_rows,
    write_string_table,
)
from .formats import EXTRA_KINDS, write_extras
from .merge import MergeResult
from .parquet_store import shards
from .plan import Build06Plan, OutputPlan

log = structlog.get_logger()


def _dist_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _write_table(out: OutputPlan, table, rows: np.ndarray, merged: MergeResult, take: np.ndarray) -> int:
    """Write ``table``'s records ``rows`` with their z columns; return the row count."""
    whole = len(rows) == len(table) and (len(rows) == 0 or rows[-1] == len(rows) - 1)
    records = table.records if whole else table.records.take(pa.array(rows, pa.int64()))
    header = header_with(table.header, merged.latents.columns)
    picked = take[rows]
    atomic_write(out.path, lambda fh: write_rows(
        fh, header, records, table.newline, lambda a, b: merged.latents.cells(picked[a:b])))
    return len(rows)


def _inputs(plan: Build06Plan) -> list[Path]:
    paths = [plan.df02_path] + [f for e in plan.experiments if e.latent_path.exists() for f in shards(e.latent_path)[0]]
    train = plan.output("training")
    if train is not None and train.action != "skip":
        paths.append(train.path.with_name("embryo_metadata_df_train.csv"))
    return paths


def export(plan: Build06Plan, merged: MergeResult) -> dict[str, Any]:
    generated = merged.generated
    wants_sidecar = plan.output("sidecar") is not None and plan.output("df03").action != "skip"
    wants_provenance = wants_sidecar or any(o.action != "skip" for o in plan.outputs if o.kind in EXTRA_KINDS)
    hashes = sha256_files_in_background(_inputs(plan)) if wants_provenance else None
    written, skipped = [], []

    def run(out: OutputPlan | None, write) -> None:
        if out is None:
            return
        if out.action == "skip":
            skipped.append({"path": str(out.path), "reason": out.reason})
            log.info("write.skipped", path=str(out.path), what=out.kind, reason=out.reason)
            return
        rows = write()
        written.append(str(out.path))
        log.info("write.done", path=str(out.path), what=out.kind, rows=rows, action=out.action)

    df03_rows = np.flatnonzero(merged.keep)
    for out in (o for o in plan.outputs if o.kind == "analysis"):
        exp_rows = df03_rows[plan.row_experiments[df03_rows] == out.experiment]
        run(out, lambda out=out, exp_rows=exp_rows: _write_table(out, plan.df02, exp_rows, merged, merged.take))

    train = plan.output("training")
    run(train, lambda: _write_training(plan, train, merged))

    missing = df03_rows[merged.take[df03_rows] < 0]
    run(plan.output("unembedded"), lambda: _write_unembedded(plan, merged, missing))
    run(plan.output("df03"), lambda: _write_table(plan.output("df03"), plan.df02, df03_rows, merged, merged.take))
    provenance = _provenance(plan, merged, hashes.result()) if wants_provenance else {}
    write_extras(plan, merged, df03_rows, provenance, run, lambda: _training_join(plan, merged))

    summary = {
        "stage": "build06",
        "df03": str(plan.df03_path),
        "coverage": merged.report["coverage"],
        "rows": {"df02": merged.report["df02_rows"], "df03": merged.report["df03_rows"],
                 "matched": merged.report["rows_matched"], "unembedded": int(len(missing))},
        "generated": {"files": list(generated.written), "rows": generated.embedded,
                      "unreadable_images": len(generated.unreadable_images),
                      "not_topped_up": list(generated.skipped)},
        "written": written,
        "skipped": skipped,
        "warnings": list(merged.warnings),
    }
    sidecar = plan.output("sidecar")
    report = plan.output("report")
    if report is not None and str(report.path) in written:
        summary["report"] = str(report.path)
    if wants_sidecar:
        run(sidecar, lambda: _write_sidecar(plan, merged, provenance, summary) or 0)
    elif sidecar is not None:
        run(OutputPlan(kind="sidecar", path=sidecar.path, action="skip", reason="df03 was not written"), lambda: 0)
    summary["written"], summary["skipped"] = written, skipped
    return summary


def _training_join(plan: Build06Plan, merged: MergeResult) -> tuple[TextTable, np.ndarray]:
    """The training metadata and the latent row of each of its rows."""
    train_in = plan.output("training").path.with_name("embryo_metadata_df_train.csv")
    table = read_text_table(train_in, what="training metadata")
    if "snip_id" not in table.names:
        raise UserError(f"training metadata {train_in} has no snip_id column")
    take, _, _ = merged.latents.match(read_columns(table, ["snip_id"])["snip_id"])
    return table, take


def _write_training(plan: Build06Plan, out: OutputPlan, merged: MergeResult) -> int:
    table, take = _training_join(plan, merged)
    return _write_table(out, table, np.arange(len(table)), merged, take)


def _write_unembedded(plan: Build06Plan, merged: MergeResult, missing: np.ndarray) -> int:
    ids = plan.snip_ids.take(pa.array(missing, pa.int64())).to_pylist() if len(missing) else []
    columns = {"snip_id": ids, "experiment": plan.row_experiments[missing].tolist(),
               "reason": merged.reasons[missing].tolist()}
    atomic_write(plan.output("unembedded").path, lambda fh: write_string_table(fh, columns))
    return len(ids)


def _provenance(plan: Build06Plan, merged: MergeResult, hashes: dict[str, str]) -> dict[str, Any]:
    """What the run was built from: the sidecar's content, and the typed outputs' metadata."""
    opts = plan.options
    generated = merged.generated
    return {
        "stage": "build06",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"morphseq-stages": __version__, "python": platform.python_version(),
                     "pandas": _dist_version("pandas"), "pyarrow": _dist_version("pyarrow"),
                     "torch": _dist_version("torch")},
        "embedder": {"name": opts.embedder, "plugin": plan.embedder_provider.plugin,
                     "distribution": plan.embedder_provider.distribution,
                     "version": plan.embedder_provider.version, **(generated.embedder or {})},
        "model": {"name": plan.model.name, "folder": plan.model.location,
                  "weights_sha256": plan.model.fingerprint},
        "inputs": [{"path": path, "sha256": sha} for path, sha in hashes.items()],
        "options": {f.name: _jsonable(getattr(opts, f.name)) for f in opts.__attrs_attrs__},
        "coverage": {"overall": merged.report["coverage"], "per_experiment": merged.report["per_experiment"]},
        "counts": {k: merged.report[k] for k in ("df02_rows", "df03_rows", "rows_counted", "rows_matched",
                                                   "latent_rows", "z_columns", "unembedded")},
        "hygiene": merged.report["hygiene"],
        "duplicates": merged.report["duplicates"],
        "key_rules": {"df02": merged.report["key_rules_df02"], "latents": merged.report["key_rules_latents"]},
        "warnings": list(merged.warnings),
    }


def _write_sidecar(plan: Build06Plan, merged: MergeResult, provenance: dict[str, Any], summary: dict[str, Any]) -> None:
    data = {
        **provenance,
        "generated": summary["generated"],
        "outputs": {"written": summary["written"], "skipped": summary["skipped"]},
        "timings_s": {"generate": merged.generated.seconds, "total": round(time.monotonic() - plan.started, 3)},
    }
    atomic_write_json(plan.output("sidecar").path, data)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if v is None or isinstance(v, bool | int | float | str | list):
        return v
    return str(v)
