"""Runs one stage through its phases: plan -> generate -> merge -> export."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

import attrs
import structlog

from .errors import UserError
from .files import exclusive_lock
from .manager import Host
from .options import validate
from .stages import StageContext, StageOutcome, StagePlan

log = structlog.get_logger()


@attrs.frozen(kw_only=True)
class RunResult:
    plan: StagePlan
    outcome: StageOutcome


def run_stage(
    host: Host,
    stage: str,
    options: Mapping[str, Any],
    *,
    dry_run: bool = False,
    run_id: str | None = None,
) -> RunResult:
    """Run ``stage``; with ``dry_run`` stop after the plan (nothing is written).

    ``options`` are checked against the stage's option schema first (unknown keys,
    types, choices, bounds: a :class:`UserError` naming the option), as the CLI's are.

    A plan may name lock files (``plan.locks() -> [(path, what)]``): they are held from
    generate to the end of export, so that a second run on the same outputs stops at once
    (:class:`~.files.LockBusy`, exit 75). A plan that can tell whether it is still
    current (``plan.still_current() -> bool``) is made again, under the locks, when a
    run that held them meanwhile changed its inputs or outputs.
    """
    schema = host.registry.stage(stage).options  # an unknown stage is a clear error
    checked = validate(schema, options, stage) if schema is not None else dict(options)
    run_id = run_id or uuid.uuid4().hex[:12]
    context = StageContext(run_id=run_id, stage=stage, options=checked, registry=host.registry, dry_run=dry_run)
    with structlog.contextvars.bound_contextvars(run_id=run_id, stage=stage):
        plan = host.plan(stage, context)
        if plan is None:
            raise UserError(f"no installed plugin implements the plan phase of stage {stage!r}")
        if dry_run:
            log.info("run.dry_run", message="plan only; nothing written")
            return RunResult(plan=plan, outcome=StageOutcome(exit_code=0, summary={"dry_run": True}))
        with contextlib.ExitStack() as held:
            taken: set[str] = set()
            _hold(held, plan, taken)
            if not getattr(plan, "still_current", lambda: True)():
                log.info("plan.remade", reason="another run changed its inputs or outputs before the locks were taken")
                plan = host.plan(stage, context)
                _hold(held, plan, taken)
            generated = host.generate(stage, context, plan)
            merged = host.merge(stage, context, plan, generated)
            outcome = host.export(stage, context, plan, merged) or StageOutcome()
    return RunResult(plan=plan, outcome=outcome)


def _hold(held: contextlib.ExitStack, plan: StagePlan, taken: set[str]) -> None:
    """Take the plan's locks not yet held, in path order (so two runs contend on the same first lock)."""
    for path, what in sorted(getattr(plan, "locks", list)(), key=lambda lock: str(lock[0])):
        if str(path) not in taken:
            held.enter_context(exclusive_lock(path, what))
            taken.add(str(path))
