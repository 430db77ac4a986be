"""Build06's hook implementations: registration, and the run as a straight pipeline.

plan (latents, and the outputs forecast) -> generate (latent files) -> settle (the inputs
as generation left them; the outputs decided once) and merge -> export. ``--generate-only``
is a path of its own: its jobs embed and write latent files, and nothing is merged.

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
    from .declared import Build06StagePlan
    from .merge import MergeResult
    from .records import GenerateReport

NAME = "build06"


@hookimpl
def morphseq_register_stages(register: Callable[[Stage], None]) -> None:
    register(Stage(name=NAME, help="attach VAE embeddings to df02, giving df03", options=opts_mod.Build06Options,
                   demo=_demo))


def _demo(folder: Path) -> list[str]:
    from .demo import build_demo

    return build_demo(folder)


@hookimpl
def morphseq_stage_plan(stage: str, context: StageContext) -> Build06StagePlan | None:
    if stage != NAME:
        return None
    import structlog

    from .declared import Build06StagePlan
    from .plan import make_plan

    plan = Build06StagePlan.of(make_plan(opts_mod.Build06Options.from_mapping(context.options), context.registry))
    df03 = plan.df03
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
def morphseq_stage_generate(stage: str, context: StageContext, plan: Build06StagePlan) -> GenerateReport | None:
    if stage != NAME:
        return None
    if plan.options.generate_only:
        from . import generate_only

        return generate_only.generate(plan, context.registry)
    from .generate import generate

    return generate(plan, context.registry)


@hookimpl
def morphseq_stage_merge(
    stage: str, context: StageContext, plan: Build06StagePlan, generated: GenerateReport
) -> MergeResult | GenerateReport | None:
    if stage != NAME:
        return None
    if plan.options.generate_only:
        return generated  # its product is the latent files: nothing to merge
    from .merge import merge
    from .settled import settle

    return merge(plan, settle(plan, generated))


@hookimpl
def morphseq_stage_export(
    stage: str, context: StageContext, plan: Build06StagePlan, merged: MergeResult | GenerateReport
) -> StageOutcome | None:
    if stage != NAME:
        return None
    import structlog

    from .merge import MergeResult

    if not isinstance(merged, MergeResult):
        from . import generate_only

        summary = generate_only.summary(plan, merged)
    else:
        from .export import export

        summary = export(plan, merged)
    from .console import render_summary

    structlog.get_logger().info("build06.summary", **summary.as_dict())
    return StageOutcome(exit_code=0, summary=summary.as_dict(), text=render_summary(summary))
