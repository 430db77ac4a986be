"""Build06's hook implementations: registration and the four phases.

The host calls a phase only on the plugin that registered the stage (and on wrappers);
each phase still declines (returns None) for any other stage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from morphseq_stages import Stage, StageContext, StageOutcome, hookimpl

from . import options as opts_mod

if TYPE_CHECKING:  # the phases import their modules when they run
    from .generate import GenerateReport
    from .merge import MergeResult
    from .plan import Build06Plan

NAME = "build06"


@hookimpl
def morphseq_register_stages(register: Callable[[Stage], None]) -> None:
    register(Stage(name=NAME, help="attach VAE embeddings to df02, giving df03", options=opts_mod.Build06Options,
                   demo=_demo))


def _demo(folder: Path) -> list[str]:
    from .demo import build_demo

    return build_demo(folder)


@hookimpl
def morphseq_stage_plan(stage: str, context: StageContext) -> Build06Plan | None:
    if stage != NAME:
        return None
    from .plan import make_plan

    plan = make_plan(opts_mod.Build06Options.from_mapping(context.options), context.registry)
    import structlog

    df03 = plan.output("df03")
    structlog.get_logger().info(
        "plan.summary",
        df02_rows=len(plan.df02),
        experiments={e.experiment: e.action for e in plan.experiments},
        selected=list(plan.selected),
        images_to_embed=sum(len(e.to_embed) for e in plan.experiments),
        df03={"status": df03.freshness.status, "reasons": list(df03.freshness.reasons), "action": df03.action},
        outputs={str(o.path): {"action": o.action, "status": o.freshness.status, "reasons": list(o.freshness.reasons)}
                 for o in plan.outputs},
        prediction=plan.prediction,
        warnings=list(plan.warnings) + list(plan.predicted),
    )
    return plan


@hookimpl
def morphseq_stage_generate(stage: str, context: StageContext, plan: Build06Plan) -> GenerateReport | None:
    if stage != NAME:
        return None
    from .generate import generate

    return generate(plan, context.registry)


@hookimpl
def morphseq_stage_merge(
    stage: str, context: StageContext, plan: Build06Plan, generated: GenerateReport
) -> MergeResult | GenerateReport | None:
    if stage != NAME:
        return None
    if plan.options.generate_only:
        return generated  # nothing to merge: the export hook reports what was generated
    from .merge import merge

    return merge(plan, generated)


@hookimpl
def morphseq_stage_export(
    stage: str, context: StageContext, plan: Build06Plan, merged: MergeResult | GenerateReport
) -> StageOutcome | None:
    if stage != NAME:
        return None
    import structlog

    from .console import render_summary
    from .export import export
    from .generate import GenerateReport

    if isinstance(merged, GenerateReport):  # --generate-only: the merge phase passed the report through
        from .declared import summary as generate_only_summary

        summary = generate_only_summary(plan, merged)
        structlog.get_logger().info("build06.summary", **summary)
        return StageOutcome(exit_code=0, summary=summary, text="\n".join(
            [f"generated: {merged.embedded} latent rows in {len(merged.written)} file(s) (--generate-only)"]
            + [f"wrote    {w}" for w in summary["written"]] + [f"warning: {w}" for w in summary["warnings"]]))
    plan = merged.plan  # as generation left the disk
    summary = export(plan, merged)
    side = plan.output("sidecar")
    summary["sidecar"] = str(side.path) if side is not None and str(side.path) in summary["written"] else None
    structlog.get_logger().info("build06.summary", **summary)
    return StageOutcome(exit_code=0, summary=summary, text=render_summary(summary))
