"""Coverage of df03, and its wording: what a merge gives, what the plan predicts, what the
sidecar of a df03 left on disk recorded, and the warnings each gives below --min-coverage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .records import CHANGES, GENERATING, Coverage, ExperimentCoverage, ExperimentPlan, Output


def coverage(matched: np.ndarray, keep: np.ndarray, codes: np.ndarray, experiments: Sequence[str],
             selected: set[str]) -> Coverage:
    """Coverage over the df03 rows (``keep``); ``codes``: each row's index in ``experiments``, -1: none."""
    def share(mask: np.ndarray) -> float | None:
        n = int(mask.sum())
        return float((mask & matched).sum() / n) if n else None

    in_sel = np.isin(codes, [k for k, e in enumerate(experiments) if e in selected])
    rows = np.bincount(codes[keep & (codes >= 0)], minlength=len(experiments))
    hits = np.bincount(codes[keep & matched & (codes >= 0)], minlength=len(experiments))
    per_exp = {e: ExperimentCoverage(rows=int(rows[k]), matched=int(hits[k])) for k, e in enumerate(experiments)}
    return Coverage(overall=share(keep), selected=share(keep & in_sel), rows=int(keep.sum()),
                    matched=int((keep & matched).sum()), per_experiment=per_exp)


def coverage_warnings(cov: Coverage, min_coverage: float, prefix: str = "") -> list[str]:
    out = []
    if cov.overall is not None and cov.overall < min_coverage:
        out.append(f"{prefix}coverage {cov.overall:.1%} is below --min-coverage {min_coverage:.1%}")
    low = [f"{e} ({c.coverage:.1%})" for e, c in cov.per_experiment.items()
           if c.coverage is not None and c.coverage < min_coverage]
    if low and len(cov.per_experiment) > 1:
        out.append(f"{prefix}experiments below --min-coverage: {', '.join(low)}")
    return out


def nothing_to_merge(experiments: Sequence[ExperimentPlan]) -> bool:
    """No latent file exists or will be written: a rewrite would only remove embeddings."""
    return not any(e.latent_exists or e.action in CHANGES for e in experiments)


def in_memory_prefix(df03: Output, experiments: Sequence[ExperimentPlan], prefix: str = "") -> str | None:
    """How the coverage warnings of this run's merge must be worded: ``prefix`` when df03 is
    written (or current: the merge is the file), a rewrite's "if" naming the flag when df03
    is left out of date, None when no run would rewrite it (there is nothing to merge)."""
    if df03.writes or df03.freshness.status in ("current", "new"):
        return prefix
    if nothing_to_merge(experiments):
        return None
    flag = "if df03 were rewritten (--overwrite), its "
    return f"{prefix.rstrip()}, {flag}" if prefix else flag


def recorded_coverage(df03: Output, sidecar: Mapping[str, Any], selected: Sequence[str]) -> Coverage | None:
    """The coverage of df03 as on disk, from its sidecar (whose sha256 of df03 was checked:
    an out-of-date df03 is the file the sidecar describes); the selected experiments' share
    recomputed for this run's selection. None when the sidecar does not describe df03."""
    if df03.freshness.status != "out-of-date":
        return None
    recorded = sidecar.get("coverage", {})
    per_exp = recorded.get("per_experiment") if isinstance(recorded, Mapping) else None
    if not isinstance(per_exp, Mapping) or "overall" not in recorded:
        return None
    per = {e: ExperimentCoverage(rows=int(v["rows"]), matched=int(v["matched"])) for e, v in per_exp.items()}
    picked = [v for e, v in per.items() if e in set(selected)]
    rows, hits = sum(v.rows for v in picked), sum(v.matched for v in picked)
    counts = sidecar.get("counts", {})
    return Coverage(overall=recorded["overall"], selected=hits / rows if rows else None,
                    rows=counts.get("df03_rows"), matched=counts.get("rows_matched"),
                    never_embeddable=counts.get("rows_never_embeddable"), per_experiment=per)


def predict(plans: Sequence[ExperimentPlan], codes: np.ndarray, matched: np.ndarray, has_image: np.ndarray,
            keep: np.ndarray) -> Coverage:
    """Coverage after this run's generation, if every image decodes (``never_embeddable``:
    rows with neither an embedding nor a readable image)."""
    after = matched.copy()
    for k, p in enumerate(plans):
        rows = codes == k
        if p.action == "regenerate":
            after[rows] = has_image[rows]
        elif p.action in GENERATING:
            after[rows] |= has_image[rows]
    cov = coverage(after, keep, codes, [p.experiment for p in plans], {p.experiment for p in plans if p.selected})
    never = int((keep & ~has_image & ~matched).sum())
    return Coverage(overall=cov.overall, selected=cov.selected, rows=cov.rows, matched=cov.matched,
                    per_experiment=cov.per_experiment, never_embeddable=never)


def prediction_dict(cov: Coverage) -> dict[str, Any]:
    """The plan's ``prediction`` (``--dry-run --json``)."""
    rows, matched = cov.rows or 0, cov.matched or 0
    return {"coverage": cov.overall, "coverage_selected": cov.selected,
            "rows_never_embeddable": cov.never_embeddable, "rows_unembedded": rows - matched}
