"""Runs one stage through its phases: plan -> generate -> merge -> export."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Mapping
from typing import Any

import attrs
import structlog

from . import logs
from .context import StageContext
from .errors import UserError
from .files import exclusive_lock, recover_if_free
from .manager import Host
from .options import validate
from .stages import HoldsLocks, KnowsIfCurrent, ReadsFolders, StageOutcome, StagePlan

log = structlog.get_logger()


#: version of :attr:`RunResult.summary`'s layout; raised when a key changes meaning or goes
SUMMARY_SCHEMA_VERSION = 1
#: the summary keys every stage's run has (a stage may add its own beside them)
SUMMARY_KEYS = ("schema_version", "run_id", "stage", "exit_code", "dry_run", "written", "skipped",
                "warnings", "sidecar", "timings_s")


@attrs.frozen(kw_only=True)
class RunResult:
    """What :func:`run_stage` returns: the plan, the stage's outcome, and a stable summary."""

    plan: StagePlan
    outcome: StageOutcome
    run_id: str
    stage: str
    dry_run: bool = False
    timings_s: Mapping[str, float] = attrs.field(factory=dict)

    @property
    def exit_code(self) -> int:
        """The process exit code the stage's outcome asks for."""
        return self.outcome.exit_code

    @property
    def summary(self) -> dict[str, Any]:
        """The versioned, JSON-able summary (``--json`` prints it); no console text.

        ``written``: paths written; ``skipped``: ``{"path", "reason"}`` of outputs left as
        they were; ``warnings``: one line each; ``sidecar``: the provenance file written,
        or None; ``timings_s``: seconds per phase and in total. The stage's own keys
        (its products, coverage, counts) come with them.
        """
        own = dict(self.outcome.summary)
        if self.dry_run:
            own.setdefault("warnings", list(self.plan.as_dict().get("warnings", [])))
        return {
            **own,
            "schema_version": SUMMARY_SCHEMA_VERSION, "run_id": self.run_id, "stage": self.stage,
            "exit_code": self.exit_code, "dry_run": self.dry_run,
            "written": list(own.get("written", [])), "skipped": list(own.get("skipped", [])),
            "warnings": list(own.get("warnings", [])), "sidecar": own.get("sidecar"),
            "timings_s": dict(self.timings_s),
        }


def run_stage(
    host: Host,
    stage: str,
    options: Mapping[str, Any],
    *,
    dry_run: bool = False,
    run_id: str | None = None,
) -> RunResult:
    """Run ``stage``; with ``dry_run`` (the argument, or ``"dry_run": True`` among the
    options, as ``--dry-run`` on the command line) stop after the plan (nothing is written).

    ``options`` are checked against the stage's option schema first (unknown keys,
    types, choices, bounds: a :class:`UserError` naming the option), as the CLI's are.

    A plan may name lock files (:class:`~.stages.HoldsLocks`, ``plan.locks() -> [(path,
    what)]``): they are held from generate to the end of export, so that a second run on
    the same outputs stops at once (:class:`~.files.LockBusy`, exit 75). A plan that can
    tell whether it is still current (:class:`~.stages.KnowsIfCurrent`) is made again,
    under the locks, when a run that held them meanwhile changed its inputs or outputs.
    The locks of folders a plan only reads (:class:`~.stages.ReadsFolders`) are taken for
    a moment, when free, so that what a killed run left there is recovered.
    """
    logs.library_default()
    schema = host.registry.stage(stage).options  # an unknown stage is a clear error
    options = dict(options)
    if "dry_run" in options:  # the CLI's --dry-run, passed among the options as a notebook user would
        asked = options.pop("dry_run")
        if not isinstance(asked, bool):
            raise UserError(f"dry_run must be True or False, got {asked!r}")
        dry_run = dry_run or asked
    checked = validate(schema, options, stage) if schema is not None else dict(options)
    run_id = run_id or uuid.uuid4().hex[:12]
    context = StageContext(run_id=run_id, stage=stage, options=checked, registry=host.registry)
    timings: dict[str, float] = {}
    start = last = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal last
        now = time.monotonic()
        timings[phase], last = round(now - last, 3), now

    with structlog.contextvars.bound_contextvars(run_id=run_id, stage=stage):
        plan = _plan(host, stage, context)
        lap("plan")
        if dry_run:
            log.info("run.dry_run", message="plan only; nothing written")
            timings["total"] = round(time.monotonic() - start, 3)
            return RunResult(plan=plan, outcome=StageOutcome(exit_code=0), run_id=run_id, stage=stage,
                             dry_run=True, timings_s=timings)
        with contextlib.ExitStack() as held:
            taken: set[str] = set()
            _hold(held, plan, taken)
            for path, what in plan.reads() if isinstance(plan, ReadsFolders) else ():
                recover_if_free(path, what)
            if isinstance(plan, KnowsIfCurrent) and not plan.still_current():
                log.info("plan.remade", reason="another run changed its inputs or outputs before the locks were taken")
                plan = _plan(host, stage, context)
                _hold(held, plan, taken)
            generated = host.generate(stage, context, plan)
            lap("generate")
            merged = host.merge(stage, context, plan, generated)
            lap("merge")
            outcome = host.export(stage, context, plan, merged) or StageOutcome()
            lap("export")
    timings["total"] = round(time.monotonic() - start, 3)
    return RunResult(plan=plan, outcome=outcome, run_id=run_id, stage=stage, timings_s=timings)


def _plan(host: Host, stage: str, context: StageContext) -> StagePlan:
    plan = host.plan(stage, context)
    if plan is None:
        raise UserError(f"no installed plugin implements the plan phase of stage {stage!r}")
    return plan


def _hold(held: contextlib.ExitStack, plan: StagePlan, taken: set[str]) -> None:
    """Take the plan's locks not yet held, in path order (so two runs contend on the same first lock)."""
    locks = plan.locks() if isinstance(plan, HoldsLocks) else ()
    for path, what in sorted(locks, key=lambda lock: str(lock[0])):
        if str(path) not in taken:
            held.enter_context(exclusive_lock(path, what))
            taken.add(str(path))
