"""Build06 merge phase: latents to df02 rows, with hygiene, duplicates and coverage.

Nothing is copied row by row: df02 stays raw text (see ``morphseq_build06.csvtext``),
and the merge is an index from each df02 row to a latent row (-1: none), made from the
inputs as generation left them (``settled``).
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import structlog

from .coverage import coverage, coverage_warnings, in_memory_prefix, recorded_coverage
from .index import UNUSABLE, LatentIndex, odd_rows_warning
from .plan import Build06Plan, strict_failure
from .records import Coverage, IndexCounts, OutputKind
from .settled import Settled

log = structlog.get_logger()


@attrs.frozen(kw_only=True)
class MergeResult:
    """df03 in memory: for each df02 row its latent row, or why it has none; and what the
    merge found, for the sidecar and the summary."""

    settled: Settled  # the inputs it was made from, and the outputs it goes to
    latents: LatentIndex
    take: np.ndarray  # per df02 row
    keep: np.ndarray  # df02 rows that go into df03 (all, unless --qc-filter)
    reasons: np.ndarray  # per df02 row: "" when embedded
    coverage: Coverage  # with ``never_embeddable`` from the reasons
    key_rules: dict[str, int]  # the key normalisation rules that fired on df02's snip ids
    unembedded: dict[str, int]  # rows without an embedding, by reason
    warnings: tuple[str, ...]


def row_reasons(plan: Build06Plan, settled: Settled, take: np.ndarray, unusable: np.ndarray) -> np.ndarray:
    """Per df02 row, why df03 holds no embedding for it ("" when it does)."""
    reasons = np.full(len(plan.df02), "", dtype=object)
    with_file = set(settled.latents.rows)  # as the merge read them
    folders = {e.experiment: e.image_dir for e in settled.experiments}
    left_out = {e.experiment: e.left_out for e in settled.experiments if e.left_out}
    recorded = [(str(p), err) for e in settled.experiments for p, err in e.unreadable]
    unreadable = {Path(p).stem: p for p, _ in [*recorded, *settled.generated.unreadable_images]}
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


def _findings(info: IndexCounts) -> list[str]:
    warnings = []
    if info.duplicates.conflicting_keys:
        warnings.append(f"{info.duplicates.conflicting_keys} snip_id(s) have conflicting latent rows "
                        f"(first kept), e.g. {', '.join(info.duplicates.examples)}")
    hygiene = info.hygiene
    if hygiene.non_finite:
        warnings.append(f"{hygiene.non_finite} latent row(s) hold NaN or Inf and were treated as missing")
    if hygiene.rows_not_one_number:
        warnings.append(odd_rows_warning(hygiene, "were left unembedded"))
    return warnings


def _coverage_warnings(plan: Build06Plan, settled: Settled, cov: Coverage) -> list[str]:
    """Coverage warnings about df03 as on disk after the run: this merge's when it is
    written (or current); else the file's, as its sidecar recorded them, and what a rewrite
    would give."""
    low = plan.options.min_coverage
    prefix = in_memory_prefix(settled.df03, settled.experiments)
    warnings = [] if prefix is None else coverage_warnings(cov, low, prefix)
    if prefix != "":
        disk = recorded_coverage(settled.df03, settled.records.get(OutputKind.DF03, {}), plan.selected)
        warnings += coverage_warnings(disk, low, "df03 on disk (not rewritten): ") if disk else []
    return warnings


def merge(plan: Build06Plan, settled: Settled) -> MergeResult:
    generated, latents, matching = settled.generated, settled.index, plan.matching
    take, rules, unusable = (matching.take, matching.rules, matching.unusable) if latents is matching.index \
        else latents.match_keys(plan.row_keys, plan.key_rules)
    reasons = row_reasons(plan, settled, take, unusable)
    cov = coverage(take >= 0, plan.keep, plan.row_codes, [e.experiment for e in settled.experiments],
                   set(plan.selected))
    log.info("coverage", coverage=cov.overall, coverage_selected=cov.selected, rows=cov.rows,
             matched=cov.matched, per_experiment=cov.per_experiment_dict())
    warnings = list(settled.warnings) + _coverage_warnings(plan, settled, cov) + _findings(settled.info)
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
    # from the reasons, which know the images this run found unreadable (the plan does not)
    never = listed.count("no image") + listed.count("unreadable image")
    return MergeResult(settled=settled, latents=latents, take=take, keep=plan.keep, reasons=reasons,
                       coverage=attrs.evolve(cov, never_embeddable=never), key_rules=rules,
                       unembedded={r: listed.count(r) for r in sorted(set(listed))}, warnings=tuple(warnings))
