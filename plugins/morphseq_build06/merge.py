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
import pyarrow.compute as pc
import structlog

from . import keys
from .generate import GenerateReport
from .plan import (
    Build06Plan,
    coverage,
    coverage_warnings,
    in_memory_prefix,
    recorded_coverage,
    settle,
    strict_failure,
)
from .store import read_store

log = structlog.get_logger()
EXAMPLES = 5


@attrs.frozen(kw_only=True)
class LatentIndex:
    """Unique, finite latent rows by normalised key, their z cells kept as text."""

    columns: tuple[str, ...]
    lines: pa.Array  # large_binary: each latent row's z cells, comma-joined, as its file wrote them
    rows: np.ndarray  # the row of ``lines`` behind each ``index`` entry
    index: pa.Array  # unique normalised keys
    channel_index: pa.Array
    channel_rows: np.ndarray
    bad_keys: pa.Array  # keys whose only latent rows are non-finite

    def match(self, snip_ids: pa.Array) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
        """(latent row per id or -1, rules that fired, whether the id's rows are all non-finite)."""
        return self.match_keys(*keys.normalise(snip_ids))

    def match_keys(self, k: pa.Array, rules: dict[str, int]) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
        """The same for ids already normalised (``rules``: the rules that fired on them)."""
        pos, by_channel = keys.match(k, self.index, self.channel_index, self.channel_rows)
        return pos, {**rules, "channel_token": by_channel}, pc.is_in(k, value_set=self.bad_keys).to_numpy(zero_copy_only=False)

    def cells(self, take: np.ndarray) -> list[pa.Array]:
        """The z cells for rows ``take`` (-1: empty cells), as one text column to append."""
        if not self.columns:
            return []
        missing = take < 0
        if len(self.rows):
            rows = self.rows[np.where(missing, 0, take)]
            picked = self.lines.take(pa.array(rows, pa.int64(), mask=missing)).cast(pa.binary())
        else:
            picked = pa.nulls(len(take), pa.binary())
        return [picked.fill_null(pa.scalar(b"," * (len(self.columns) - 1), pa.binary()))]


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


def _parse_lines(lines: pa.Array) -> list[np.ndarray]:
    return [np.array([float(v) if v else np.nan for v in ln.split(b",")]) for ln in lines.to_pylist()]


def _duplicates(keys_: pa.Array, lines: pa.Array, rows: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Keep the first row of each key; count identical repeats and conflicting keys.

    ``keys_[i]`` is the key of ``lines[rows[i]]``.
    """
    first_of, shared = keys.repeats(keys_)
    first = first_of == np.arange(len(keys_))
    report: dict[str, Any] = {"identical_dropped": 0, "conflicting_keys": 0, "examples": []}
    if first.all():
        return first, report
    dup = np.flatnonzero(shared)
    groups: dict[int, list[np.ndarray]] = {}
    for g, v in zip(first_of[dup], _parse_lines(lines.take(pa.array(rows[dup], pa.int64()))), strict=True):
        groups.setdefault(int(g), []).append(v)
    for g, values in groups.items():
        distinct: list[np.ndarray] = []
        for v in values:
            if any(np.array_equal(v, d, equal_nan=True) for d in distinct):
                report["identical_dropped"] += 1
            else:
                distinct.append(v)
        if len(distinct) > 1:
            report["conflicting_keys"] += 1
            if len(report["examples"]) < EXAMPLES:
                report["examples"].append(keys_[g].as_py())
    (log.warning if report["conflicting_keys"] else log.info)("latents.duplicates", **report)
    return first, report


def load_latents(plan: Build06Plan) -> tuple[LatentIndex, dict[str, Any]]:
    opts = plan.options
    for exp in plan.experiments:
        if not exp.latent_path.exists():
            log.warning("latents.missing", path=str(exp.latent_path), experiment=exp.experiment)
    read = read_store({e.experiment: e.latent_path for e in plan.experiments}, opts.z_schema, opts.include_sigma,
                      previous=plan.latents)
    columns = read.columns
    files = [(e, read.rows[e.experiment]) for e in plan.experiments if e.experiment in read.rows]
    hygiene: dict[str, Any] = {"rows_with_nan": 0, "rows_with_inf": 0, "unparseable_cells": 0, "examples": []}
    rules: dict[str, int] = {}
    key_parts, finite_parts = [], []
    for exp, t in files:
        log.info("latents.stale" if exp.stale else "latents.found", path=str(t.path), experiment=exp.experiment,
                 rows=len(t.snip_ids), z_columns=len(t.columns))
        bad = t.nan_rows | t.inf_rows
        hygiene["rows_with_nan"] += int(t.nan_rows.sum())
        hygiene["rows_with_inf"] += int(t.inf_rows.sum())
        hygiene["unparseable_cells"] += t.unparseable
        room = EXAMPLES - len(hygiene["examples"])
        hygiene["examples"] += [{"file": t.path.name, "snip_id": t.snip_ids[int(i)].as_py()}
                                for i in np.flatnonzero(bad)[:room]]
        k, counts = read.keys[exp.experiment]
        for r, c in counts.items():
            rules[r] = rules.get(r, 0) + c
        key_parts.append(k)
        finite_parts.append(~bad)
    all_keys = pa.concat_arrays(key_parts) if key_parts else pa.array([], pa.string())
    finite = np.concatenate(finite_parts) if finite_parts else np.empty(0, bool)
    lines = read.lines
    if (~finite).any():
        log.warning("hygiene.non_finite", rows=int((~finite).sum()), **hygiene)

    good = np.flatnonzero(finite)
    good_keys = all_keys.take(pa.array(good, pa.int64()))
    first, dups = _duplicates(good_keys, lines, good)
    bad_keys = pc.unique(all_keys.filter(pa.array(~finite)))
    bad_keys = bad_keys.filter(pc.invert(pc.is_in(bad_keys, value_set=good_keys)))
    idx_keys = good_keys.filter(pa.array(first))
    channel_index, channel_rows = keys.channel_free_index(idx_keys)
    index = LatentIndex(
        columns=columns, lines=lines, rows=good[first], index=idx_keys,
        channel_index=channel_index, channel_rows=channel_rows, bad_keys=bad_keys,
    )
    info = {"files": len(files), "latent_rows": int(len(all_keys)), "z_columns": len(columns),
            "hygiene": hygiene, "duplicates": dups, "key_rules_latents": rules}
    return index, info


def row_reasons(plan: Build06Plan, take: np.ndarray, non_finite: np.ndarray, generated: GenerateReport) -> np.ndarray:
    """Per df02 row, why df03 holds no embedding for it ("" when it does)."""
    reasons = np.full(len(plan.df02), "", dtype=object)
    with_file = {e.experiment for e in plan.experiments if e.latent_path.exists()}
    folders = {e.experiment: e.image_dir for e in plan.experiments}
    recorded = [(str(p), err) for e in plan.experiments for p, err in e.unreadable]
    unreadable = {Path(p).stem: p for p, _ in [*recorded, *generated.unreadable_images]}
    missing = np.flatnonzero(take < 0)
    for i, key in zip(missing, plan.row_keys.take(pa.array(missing, pa.int64())).to_pylist(), strict=True):
        exp = plan.row_experiments[i]
        if not exp:
            reasons[i] = "no experiment (empty experiment_date, and the snip_id names none)"
        elif non_finite[i]:
            reasons[i] = "non-finite latent values"
        elif not plan.has_image[i]:
            reasons[i] = f"no image at {folders[exp] / (key + '.jpg')}"
        elif key in unreadable:
            reasons[i] = f"unreadable image {unreadable[key]}"
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
    bad_rows = info["hygiene"]["rows_with_nan"] + info["hygiene"]["rows_with_inf"]
    if bad_rows:
        warnings.append(f"{bad_rows} latent row(s) hold NaN or Inf and were treated as missing")
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
    latents, info = load_latents(plan)
    take, rules, non_finite = latents.match_keys(plan.row_keys, plan.key_rules)
    reasons = row_reasons(plan, take, non_finite, generated)
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
