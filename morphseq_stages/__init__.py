"""morphseq-stages: a pluggy host for morphseq pipeline stages (Build06 first).

Plugin authors need only the names exported here; see ``hookspecs`` for the hooks and
``embedders`` for the embedder contract. Pipeline runners use :func:`get_host` and
:func:`run_stage`.
"""

from ._version import __version__
from .embedders import (
    Embedder,
    EmbedderRequest,
    EmbedderSpec,
    ModelInfo,
    ModelUnavailable,
    column_names,
    nuisance_dims,
)
from .errors import PluginError, StrictFailure, UserError
from .manager import Host, get_host
from .markers import PROJECT_NAME, hookimpl, hookspec
from .runner import RunResult, run_stage
from .stages import Stage, StageContext, StageOutcome, StagePlan

__all__ = [
    "PROJECT_NAME",
    "PluginError",
    "Embedder",
    "EmbedderRequest",
    "EmbedderSpec",
    "Host",
    "ModelInfo",
    "ModelUnavailable",
    "RunResult",
    "Stage",
    "StageContext",
    "StageOutcome",
    "StagePlan",
    "StrictFailure",
    "UserError",
    "__version__",
    "column_names",
    "get_host",
    "hookimpl",
    "hookspec",
    "nuisance_dims",
    "run_stage",
]
