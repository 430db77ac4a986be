"""Build06 merge phase: latents to df02 rows, with hygiene, duplicates and coverage.

Nothing is copied row by row: df02 stays raw text (see ``morphseq_stages.csvtext``),
and the merge is an index from each df02 row to a latent row (-1: none).
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pandas as pd
import pyarrow as pa
import structlog

from morphseq_stages.errors import StrictFailure
from morphseq_stages.latents import read_latents, select_z_columns

from . import keys
from .generate import GenerateReport
from .plan import Build06Plan

log = structlog.get_logger()
EXAMPLES = 5
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0", ""}


@attrs.frozen(kw_only=True)
class LatentIndex:
    """Unique, finite latent rows by normalised key."""

    columns: tuple[str, ...]
    values: np.ndarray
    index: pd.Index
    channel_index: pd.Index
    channel_rows: np.ndarray
    bad_keys: frozenset[str]

    def match(self, snip_ids: pa.Array) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
        """(latent row per id or -1, rules that fired, normalised keys)."""
        k, counts = keys.normalise(snip_ids)
        pos, by_channel = keys.match(k, self.index, self.channel_index, self.channel_rows)
        counts["channel_token"] = by_channel
        return pos, counts, k.to_numpy(zero_copy_only=False)

    def rows(self, take: np.ndarray) -> np.ndarray:
        out = np.full((len(take), len(self.columns)), np.nan)
        hit = take >= 0
        out[hit] = self.values[take[hit]]
        return out


@attrs.frozen(kw_only=True)
class MergeResult:
    latents: LatentIndex
    take: np.ndarray  # per df02 row
    keep: np.ndarray  # df02 rows that go into df03 (all, unless --qc-filter)
    reasons: np.ndarray  # per df02 row: "" when embedded
    report: dict[str, Any]
    warnings: tuple[str, ...]
    generated: GenerateReport


def parse_flags(values: pa.Array) -> tuple[np.ndarray, int]:
    text = pd.Series(values.to_numpy(zero_copy_only=False), dtype=object).str.strip().str.lower()
    true = text.isin(_TRUE).to_numpy()
    unknown = int((~text.isin(_TRUE | _FALSE)).sum())
    return true, unknown


def load_latents(plan: Build06Plan) -> tuple[LatentIndex, dict[str, Any]]:
    opts = plan.options
    tables = []
    for exp in plan.experiments:
        with structlog.contextvars.bound_contextvars(experiment=exp.experiment):
            if exp.latent_path.is_file():
                t = read_latents(exp.latent_path, opts.z_schema, opts.include_sigma)
                tables.append(t)
                log.info("latents.stale" if exp.stale else "latents.found", path=str(exp.latent_path),
                         rows=len(t.snip_ids), z_columns=len(t.columns))
            else:
                log.warning("latents.missing", path=str(exp.latent_path))
    columns = tuple(select_z_columns([c for t in tables for c in t.columns], "auto", True))
    where = {c: j for j, c in enumerate(columns)}
    total = sum(len(t.snip_ids) for t in tables)
    values = np.full((total, len(columns)), np.nan)
    key_parts, finite = [], np.ones(total, bool)
    hygiene = {"rows_with_nan": 0, "rows_with_inf": 0, "unparseable_cells": 0, "examples": []}
    rules: dict[str, int] = {}
    at = 0
    for t in tables:
        n = len(t.snip_ids)
        values[at : at + n, [where[c] for c in t.columns]] = t.values
        nan_rows = np.isnan(t.values).any(axis=1)
        inf_rows = np.isinf(t.values).any(axis=1)
        finite[at : at + n] = ~(nan_rows | inf_rows)
        hygiene["rows_with_nan"] += int(nan_rows.sum())
        hygiene["rows_with_inf"] += int(inf_rows.sum())
        hygiene["unparseable_cells"] += t.unparseable
        bad = np.flatnonzero(nan_rows | inf_rows)[: EXAMPLES - len(hygiene["examples"])]
        hygiene["examples"] += [{"file": t.path.name, "snip_id": t.snip_ids[int(i)].as_py()} for i in bad]
        k, counts = keys.normalise(t.snip_ids)
        for r, c in counts.items():
            rules[r] = rules.get(r, 0) + c
        key_parts.append(k.to_numpy(zero_copy_only=False))
        at += n
    all_keys = np.concatenate(key_parts) if key_parts else np.empty(0, object)
    if (~finite).any():
        log.warning("hygiene.non_finite", rows=int((~finite).sum()), **hygiene)

    good_keys, good_values = all_keys[finite], values[finite]
    s = pd.Series(good_keys)
    dup_any = s.duplicated(keep=False).to_numpy()
    dups = {"identical_dropped": 0, "conflicting_keys": 0, "examples": []}
    if dup_any.any():
        sub = pd.DataFrame(good_values[dup_any])
        sub.insert(0, "_key", good_keys[dup_any])
        distinct = sub.drop_duplicates()
        per_key = distinct.groupby("_key", sort=False).size()
        conflicting = per_key[per_key > 1]
        dups["identical_dropped"] = int(len(sub) - len(distinct))
        dups["conflicting_keys"] = int(len(conflicting))
        dups["examples"] = [str(k) for k in conflicting.index[:EXAMPLES]]
        log.warning("latents.duplicates", **dups) if len(conflicting) else log.info("latents.duplicates", **dups)
    first = ~s.duplicated(keep="first").to_numpy()
    idx_keys = pa.array(good_keys[first], pa.string())
    channel_index, channel_rows = keys.channel_free_index(idx_keys)
    index = LatentIndex(
        columns=columns, values=good_values[first], index=pd.Index(good_keys[first]),
        channel_index=channel_index, channel_rows=channel_rows,
        bad_keys=frozenset(all_keys[~finite].tolist()) - frozenset(good_keys.tolist()),
    )
    info = {"files": len(tables), "latent_rows": int(total), "z_columns": len(columns),
            "hygiene": hygiene, "duplicates": dups, "key_rules_latents": rules}
    return index, info


def merge(plan: Build06Plan, generated: GenerateReport | None = None) -> MergeResult:
    opts = plan.options
    latents, info = load_latents(plan)
    take, rules, row_keys = latents.match(plan.snip_ids)
    n = len(plan.df02)
    keep = np.ones(n, bool)
    warnings: list[str] = []
    if plan.qc is not None:
        keep, unknown = parse_flags(plan.qc)
        if unknown:
            warnings.append(f"{unknown} use_embryo_flag value(s) are not true/false; treated as false")
    selected = set(e.experiment for e in plan.experiments)
    with_file = {e.experiment for e in plan.experiments if e.latent_path.is_file()}
    in_sel = np.array([e in selected for e in plan.row_experiments], bool) if n else np.zeros(0, bool)
    reasons = np.full(n, "", dtype=object)
    unmatched = take < 0
    for i in np.flatnonzero(unmatched):
        exp = plan.row_experiments[i]
        if exp not in selected:
            reasons[i] = "experiment not selected" if exp else "no experiment"
        elif exp not in with_file:
            reasons[i] = "no latent file"
        elif row_keys[i] in latents.bad_keys:
            reasons[i] = "non-finite"
        else:
            reasons[i] = "no latent row"

    counted = keep & in_sel
    matched = counted & ~unmatched
    coverage = float(matched.sum() / counted.sum()) if counted.sum() else 0.0
    per_exp = {}
    for e in plan.experiments:
        m = counted & (plan.row_experiments == e.experiment)
        per_exp[e.experiment] = {"rows": int(m.sum()), "matched": int((m & ~unmatched).sum()),
                                 "coverage": float((m & ~unmatched).sum() / m.sum()) if m.sum() else None}
    log.info("coverage", coverage=round(coverage, 6), rows=int(counted.sum()), matched=int(matched.sum()),
             per_experiment=per_exp)
    if counted.sum() and coverage < opts.min_coverage:
        warnings.append(f"coverage {coverage:.1%} is below --min-coverage {opts.min_coverage:.1%}")
    low = [f"{e} ({v['coverage']:.1%})" for e, v in per_exp.items() if v["coverage"] is not None and v["coverage"] < opts.min_coverage]
    if low and len(per_exp) > 1:
        warnings.append(f"experiments below --min-coverage: {', '.join(low)}")
    if info["duplicates"]["conflicting_keys"]:
        warnings.append(f"{info['duplicates']['conflicting_keys']} snip_id(s) have conflicting latent rows "
                        f"(first kept), e.g. {', '.join(info['duplicates']['examples'])}")
    bad_rows = info["hygiene"]["rows_with_nan"] + info["hygiene"]["rows_with_inf"]
    if bad_rows:
        warnings.append(f"{bad_rows} latent row(s) hold NaN or Inf and were treated as missing")
    warnings = list(plan.warnings) + warnings
    for w in warnings:
        log.warning("build06.warning", message=w)
    if opts.strict and warnings:
        raise StrictFailure(f"{warnings[0]} (--strict; {len(warnings)} warning(s), nothing written)")
    report = {
        "df02_rows": n, "df03_rows": int(keep.sum()), "rows_counted": int(counted.sum()),
        "rows_matched": int(matched.sum()), "coverage": coverage, "per_experiment": per_exp,
        "key_rules_df02": rules, **info,
        "unembedded": {r: int(((reasons == r) & keep).sum()) for r in sorted(set(reasons[keep]) - {""})},
    }
    return MergeResult(latents=latents, take=take, keep=keep, reasons=reasons, report=report, warnings=tuple(warnings),
                       generated=generated or GenerateReport())
