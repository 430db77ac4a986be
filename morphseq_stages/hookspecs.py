"""Every hook of the host, grouped by phase.

Registration hooks are called once per plugin when the plugin manager is built, with a
``register`` callback (as in ``llm`` and tox); registering a name twice is an error.

Phase hooks go to the plugin that owns the stage. The registry knows which plugin
registered each stage, so the host calls a phase through a subset of the hook that
leaves out every other plugin's plain implementation (pluggy's ``subset_hook_caller``):
an implementation of another plugin that forgets to decline, or answers for every
stage, cannot take over a stage it did not register. Wrappers stay in: any plugin can
observe or change any stage's phase with ``@hookimpl(wrapper=True)`` (``result = yield``
gives what the owner returned). The hooks remain ``firstresult`` with a ``stage``
argument, so that a plugin owning several stages answers for the one asked and returns
``None`` for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .context import StageContext
from .embedders import EmbedderSpec
from .markers import hookspec
from .stages import Stage, StageOutcome, StagePlan

# -- registration -------------------------------------------------------------------


@hookspec
def morphseq_register_stages(register: Callable[[Stage], None]) -> None:
    """Register stages by calling ``register(Stage(...))`` once per stage.

    Called for every plugin when the plugin manager is built; results are ignored.

    .. versionadded:: 0.1
    """


@hookspec
def morphseq_register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    """Register embedders by calling ``register(EmbedderSpec(...))`` once per embedder.

    Called for every plugin when the plugin manager is built; results are ignored.

    .. versionadded:: 0.1
    """


# -- stage phases (called on the owning plugin and on every wrapper) ------------------


@hookspec(firstresult=True)
def morphseq_stage_plan(stage: str, context: StageContext) -> StagePlan | None:
    """Resolve inputs and decide what the run will read, generate and write.

    Must not write anything: ``--dry-run`` stops after this phase and prints the plan.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def morphseq_stage_generate(stage: str, context: StageContext, plan: StagePlan) -> Any | None:
    """Produce missing intermediate data (for example, latent files).

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def morphseq_stage_merge(
    stage: str, context: StageContext, plan: StagePlan, generated: Any
) -> Any | None:
    """Combine inputs into the stage's product, in memory, with its report.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def morphseq_stage_export(
    stage: str, context: StageContext, plan: StagePlan, merged: Any
) -> StageOutcome | None:
    """Write the products and return the run's outcome.

    .. versionadded:: 0.1
    """

