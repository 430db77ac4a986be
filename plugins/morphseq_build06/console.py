"""Build06's console text: the plan table and the run summary."""

from __future__ import annotations

from collections.abc import Sequence

from .coverage import in_memory_prefix
from .plan import Build06Plan
from .records import RunSummary


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]


def render_plan(plan: Build06Plan) -> str:
    rows = [("experiment", "selected", "df02 rows", "images", "no image", "latent rows", "to embed", "action", "why")]
    for e in plan.experiments:
        rows.append((e.experiment, "yes" if e.selected else "no", str(e.df02_rows),
                     "-" if e.snip_images is None else str(e.snip_images), str(e.rows_without_image),
                     "-" if e.latent_rows is None else str(e.latent_rows), str(len(e.to_embed)), e.action, e.reason))
    selected = "all" if len(plan.selected) == len(plan.experiments) else ", ".join(plan.selected)
    df03 = plan.df03
    lines = [f"Build06 plan: {plan.df02_path} ({len(plan.df02)} rows, {len(plan.experiments)} experiments; "
             f"selected: {selected})",
             f"model: {plan.model.name} via embedder {plan.options.embedder!r}"
             + (f" ({plan.model.location})" if plan.model.location else " (model folder not found)"),
             f"latent store: {plan.store}" + _store_note(plan), "", *_table(rows),
             *[f"  {e.experiment} reads {e.latent_path.name}: {e.source_note}" for e in plan.experiments if e.source_note],
             "",
             f"df03: {df03.freshness.describe()} -> {df03.action}"
             + (f"; {df03.reason[len(df03.freshness.describe()) + 2:]}" if df03.action == "skip"
                and df03.reason != "current" else ""),
             _predicted(plan),
             "", "outputs:"]
    for e in plan.experiments:
        if e.generating:
            lines.append(f"  {e.action:<9} {e.latent_path}  ({len(e.to_embed)} image(s) to embed: {e.reason})")
    for o in plan.outputs:
        lines.append(f"  {o.action:<9} {o.path}" + (f"  ({o.reason})" if o.reason else ""))
    lines += [f"warning: {w}" for w in (*plan.warnings, *plan.predicted)]
    return "\n".join(lines)


def _predicted(plan: Build06Plan) -> str:
    p, which = plan.prediction, in_memory_prefix(plan.df03, plan.experiments)
    if plan.options.generate_only:
        return "df03 after this run: unchanged (--generate-only)"
    if which is None:
        return "df03 after this run: unchanged (nothing to merge)"
    head = "df03 after this run (predicted)" if which == "" else "df03 if it were rewritten with --overwrite (predicted)"
    return (f"{head}: coverage {_pct(p['coverage'])} overall, {_pct(p['coverage_selected'])} of the selected "
            f"experiments; {p['rows_unembedded']} row(s) without an embedding, {p['rows_never_embeddable']} of them "
            "can never be embedded (no image, or one that could not be read)")


def _store_note(plan: Build06Plan) -> str:
    if any(e.latent_exists for e in plan.experiments):
        return ""
    where = "in it" if plan.store.is_dir() else "(the folder does not exist)"
    return f" -- no latent files exist for model {plan.model.name!r} {where}"


def render_summary(s: RunSummary) -> str:
    """The run summary for a person; ``--generate-only``'s when it wrote no df03."""
    if s.df03 is None:
        return "\n".join([f"generated: {s.generated.embedded} latent rows in {len(s.generated.written)} file(s) "
                          "(--generate-only)"] + [f"wrote    {w}" for w in s.written]
                         + [f"warning: {w}" for w in s.warnings])
    d = s.df03
    if d.written:
        head = f"df03: wrote {d.path} ({d.rows} rows)"
    elif d.status == "current":
        head = f"df03: current, not rewritten: {d.path} ({d.rows} rows)"
    else:
        head = f"df03: NOT WRITTEN ({d.reason}); {d.path} " + (
            f"holds {d.rows} rows" if d.rows is not None else "is as it was" if d.exists else "does not exist")
    lines = [head]
    if d.coverage is not None:
        lines.append(f"coverage of df03 on disk: {_pct(d.coverage)} overall ({d.matched} of {d.rows} rows), "
                     f"{_pct(d.coverage_selected)} of the selected experiments; {d.unembedded} row(s) without "
                     f"an embedding, {d.never_embeddable} of them without a readable image")
    if s.generated.written:
        lines.append(f"generated: {s.generated.embedded} latent rows in {len(s.generated.written)} file(s)")
    if s.report:
        lines.append(f"report: {s.report}")
    lines += [f"wrote    {w}" for w in s.written]
    lines += [f"skipped  {k.path} ({k.reason})" for k in s.skipped]
    lines += [f"warning: {w}" for w in s.warnings]
    return "\n".join(lines)
