"""morphseq-stages: a pluggy host for morphseq pipeline stages.

Plugin authors need only the names exported here; see ``hookspecs`` for the hooks and
``embedders`` for the embedder contract. Pipeline runners use :func:`get_host` and
:func:`run_stage`.
"""

from ._version import __version__
from .context import StageContext
from .embedders import (
    Embedder,
    EmbedderRequest,
    EmbedderSpec,
    ModelInfo,
    ModelUnavailable,
)
from .errors import PluginError, StrictFailure, UserError
from .manager import Host, get_host
from .markers import PROJECT_NAME, hookimpl, hookspec
from .runner import RunResult, run_stage
from .stages import (
    HoldsLocks,
    KnowsIfCurrent,
    ReadsFolders,
    Stage,
    StageOutcome,
    StagePlan,
)

__all__ = [
    "PROJECT_NAME",
    "PluginError",
    "Embedder",
    "EmbedderRequest",
    "EmbedderSpec",
    "HoldsLocks",
    "Host",
    "KnowsIfCurrent",
    "ModelInfo",
    "ModelUnavailable",
    "ReadsFolders",
    "RunResult",
    "Stage",
    "StageContext",
    "StageOutcome",
    "StagePlan",
    "StrictFailure",
    "UserError",
    "__version__",
    "get_host",
    "hookimpl",
    "hookspec",
    "run_stage",
]
