"""Build06 merge phase: latents to df02 rows, with hygiene, duplicates and coverage.

Nothing is copied row by row: df02 stays raw text (see ``morphseq_build06.csvtext``),
and the merge is an index from each df02 row to a latent row (-1: none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import structlog

from .generate import GenerateReport
from .index import UNUSABLE, LatentIndex, index_latents, log_index, odd_rows_warning
from .plan import (
    Build06Plan,
    as_generated,
    coverage,
    coverage_warnings,
    in_memory_prefix,
    recorded_coverage,
    settle,
    strict_failure,
)
from .store import StoreRead, read_store

log = structlog.get_logger()


@attrs.frozen(kw_only=True)
class MergeResult:
    latents: LatentIndex
    take: np.ndarray  # per df02 row
    keep: np.ndarray  # df02 rows that go into df03 (all, unless --qc-filter)
    reasons: np.ndarray  # per df02 row: "" when embedded
    report: dict[str, Any]
    warnings: tuple[str, ...]
    generated: GenerateReport
    plan: Build06Plan = attrs.field(repr=False)  # as generation left the disk (see plan.settle)


def load_latents(plan: Build06Plan) -> tuple[StoreRead, LatentIndex, dict[str, Any]]:
    """The latent files as the merge read them, and their rows as it matches them: the
    plan's read and index, unless generation (or another job) changed the files since."""
    opts = plan.options
    for exp in plan.experiments:
        if not exp.latent_path.exists():
            log.warning("latents.missing", path=str(exp.latent_path), experiment=exp.experiment)
    read = read_store({e.experiment: e.latent_path for e in plan.experiments if not e.left_out}, opts.z_schema,
                      opts.include_sigma, previous=plan.latents)
    index, info = plan.matching.index, plan.matching.info
    if read is not plan.latents:
        index, info = index_latents(read, [e.experiment for e in plan.experiments])
    log_index(read, [e.experiment for e in plan.experiments], info,
              frozenset(e.experiment for e in plan.experiments if e.stale))
    return read, index, info


def row_reasons(plan: Build06Plan, take: np.ndarray, unusable: np.ndarray, generated: GenerateReport) -> np.ndarray:
    """Per df02 row, why df03 holds no embedding for it ("" when it does)."""
    reasons = np.full(len(plan.df02), "", dtype=object)
    with_file = set(plan.latents.rows)  # as the merge read them
    folders = {e.experiment: e.image_dir for e in plan.experiments}
    left_out = {e.experiment: e.left_out for e in plan.experiments if e.left_out}
    recorded = [(str(p), err) for e in plan.experiments for p, err in e.unreadable]
    unreadable = {Path(p).stem: p for p, _ in [*recorded, *generated.unreadable_images]}
    missing = np.flatnonzero(take < 0)
    for i, key in zip(missing, plan.row_keys.take(pa.array(missing, pa.int64())).to_pylist(), strict=True):
        exp = plan.row_experiments[i]
        if not exp:
            reasons[i] = "no experiment (empty experiment_date, and the snip_id names none)"
        elif unusable[i]:
            reasons[i] = UNUSABLE[int(unusable[i])]
        elif not plan.has_image[i]:
            reasons[i] = f"no image at {folders[exp] / (key + '.jpg')}"
        elif key in unreadable:
            reasons[i] = f"unreadable image {unreadable[key]}"
        elif exp in left_out:
            reasons[i] = left_out[exp]
        elif exp not in with_file:
            reasons[i] = "no latent file"
        else:
            reasons[i] = "no latent row although the image exists"
    if plan.options.qc_filter:
        reasons[~plan.keep] = "excluded by --qc-filter"
    return reasons


def _category(reason: str) -> str:
    """A reason without its path, for counting."""
    for prefix in ("no image", "unreadable image"):
        if reason.startswith(prefix):
            return prefix
    return reason


def _findings(info: dict[str, Any]) -> list[str]:
    warnings = []
    if info["duplicates"]["conflicting_keys"]:
        warnings.append(f"{info['duplicates']['conflicting_keys']} snip_id(s) have conflicting latent rows "
                        f"(first kept), e.g. {', '.join(info['duplicates']['examples'])}")
    hygiene = info["hygiene"]
    bad_rows = hygiene["rows_with_nan"] + hygiene["rows_with_inf"]
    if bad_rows:
        warnings.append(f"{bad_rows} latent row(s) hold NaN or Inf and were treated as missing")
    if hygiene["rows_not_one_number"]:
        warnings.append(odd_rows_warning(hygiene, "were left unembedded"))
    return warnings


def _coverage_warnings(plan: Build06Plan, cov: dict[str, Any]) -> list[str]:
    """Coverage warnings about df03 as on disk after the run: this merge's when it is
    written (or current); else the file's, as its sidecar recorded them, and what a rewrite
    would give."""
    low = plan.options.min_coverage
    prefix = in_memory_prefix(plan.output("df03"), plan.experiments)
    warnings = [] if prefix is None else coverage_warnings(cov, low, prefix)
    if prefix != "":
        disk = recorded_coverage(plan)
        warnings += coverage_warnings(disk, low, "df03 on disk (not rewritten): ") if disk else []
    return warnings


def merge(plan: Build06Plan, generated: GenerateReport | None = None) -> MergeResult:
    generated = generated or GenerateReport()
    plan = settle(plan, generated.written)
    read, latents, info = load_latents(plan)
    if read is not plan.latents:  # the outputs record the files as this read found them
        plan = attrs.evolve(plan, latents=read, inputs=attrs.evolve(plan.inputs, read=read))
    if generated.written:
        plan = as_generated(plan)
    matching = plan.matching
    take, rules, unusable = (matching.take, matching.rules, matching.unusable) if latents is matching.index \
        else latents.match_keys(plan.row_keys, plan.key_rules)
    reasons = row_reasons(plan, take, unusable, generated)
    cov = coverage(take >= 0, plan.keep, plan.row_codes, [e.experiment for e in plan.experiments],
                   set(plan.selected))
    log.info("coverage", coverage=cov["overall"], coverage_selected=cov["selected"], rows=cov["rows"],
             matched=cov["matched"], per_experiment=cov["per_experiment"])
    warnings = list(plan.warnings) + _coverage_warnings(plan, cov) + _findings(info)
    if generated.unreadable_images:
        path, error = generated.unreadable_images[0]
        warnings.append(f"{len(generated.unreadable_images)} snip image(s) could not be read, e.g. {path} ({error}); "
                        f"listed in {plan.manifest_path}, not tried again until they change")
    for w in warnings:
        log.warning("build06.warning", message=w)
    if plan.options.strict and warnings:
        written = list(generated.written) + ([str(plan.manifest_path)] if generated.manifest else [])
        raise strict_failure(warnings, written)
    listed = [_category(r) for r in reasons[reasons != ""]]
    report = {
        "df02_rows": len(plan.df02), "df03_rows": int(plan.keep.sum()), "rows_counted": cov["rows"],
        "rows_matched": cov["matched"], "coverage": cov["overall"], "coverage_selected": cov["selected"],
        "per_experiment": cov["per_experiment"], "key_rules_df02": rules, **info,
        # from the reasons, which know the images this run found unreadable (the plan does not)
        "rows_never_embeddable": listed.count("no image") + listed.count("unreadable image"),
        "unembedded": {r: listed.count(r) for r in sorted(set(listed))},
    }
    return MergeResult(latents=latents, take=take, keep=plan.keep, reasons=reasons, report=report,
                       warnings=tuple(warnings), generated=generated, plan=plan)
