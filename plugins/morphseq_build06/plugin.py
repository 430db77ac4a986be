"""Build06's hook implementations: registration and the four phases.

Each phase declines (returns None) for any other stage, so that the host's
``firstresult`` phase calls reach the plugin that owns the active stage.
"""

from __future__ import annotations

from morphseq_stages import Stage, StageContext, StageOutcome, hookimpl

from . import options as opts_mod

NAME = "build06"


@hookimpl
def morphseq_register_stages(register) -> None:
    register(Stage(name=NAME, help="attach VAE embeddings to df02, giving df03", options=opts_mod.Build06Options,
                   demo=_demo))


def _demo(folder):
    from .demo import build_demo

    return build_demo(folder)


@hookimpl
def morphseq_stage_plan(stage: str, context: StageContext):
    if stage != NAME:
        return None
    from .plan import make_plan

    plan = make_plan(opts_mod.Build06Options.from_mapping(context.options), context.registry)
    import structlog

    structlog.get_logger().info(
        "plan.summary",
        df02_rows=len(plan.df02),
        experiments={e.experiment: e.action for e in plan.experiments},
        images_to_embed=sum(len(e.to_embed) for e in plan.experiments),
        outputs={str(o.path): o.action for o in plan.outputs},
    )
    return plan


@hookimpl
def morphseq_stage_generate(stage: str, context: StageContext, plan):
    if stage != NAME:
        return None
    from .generate import generate

    return generate(plan, context.registry)


@hookimpl
def morphseq_stage_merge(stage: str, context: StageContext, plan, generated):
    if stage != NAME:
        return None
    from .merge import merge

    return merge(plan, generated)


@hookimpl
def morphseq_stage_export(stage: str, context: StageContext, plan, merged):
    if stage != NAME:
        return None
    import structlog

    from .export import export

    summary = export(plan, merged)
    side = plan.output("sidecar")
    summary["sidecar"] = str(side.path) if side is not None and str(side.path) in summary["written"] else None
    structlog.get_logger().info("build06.summary", **summary)
    return StageOutcome(exit_code=0, summary=summary, text=_text(summary))


def _text(s: dict) -> str:
    lines = [f"df03: {s['df03']}",
             f"coverage: {s['coverage']:.1%} ({s['rows']['matched']} of the counted rows; "
             f"{s['rows']['unembedded']} without an embedding)"]
    if s["generated"]["files"]:
        lines.append(f"generated: {s['generated']['rows']} latent rows in {len(s['generated']['files'])} file(s)")
    if s.get("report"):
        lines.append(f"report: {s['report']}")
    for w in s["written"]:
        lines.append(f"wrote    {w}")
    for k in s["skipped"]:
        lines.append(f"skipped  {k['path']} ({k['reason']})")
    for w in s["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
