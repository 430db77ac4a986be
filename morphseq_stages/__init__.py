"""morphseq-stages: a pluggy host for morphseq pipeline stages (Build06 first).

Plugin authors need only the names exported here; see ``hookspecs`` for the hooks and
``embedders`` for the embedder contract.
"""

import pluggy

from ._version import __version__

PROJECT_NAME = "morphseq_stages"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

from .embedders import Embedder, EmbedderRequest, EmbedderSpec, ModelInfo  # noqa: E402
from .errors import StrictFailure, UserError  # noqa: E402
from .stages import Stage, StageContext, StageOutcome  # noqa: E402

__all__ = [
    "PROJECT_NAME",
    "Embedder",
    "EmbedderRequest",
    "EmbedderSpec",
    "ModelInfo",
    "Stage",
    "StageContext",
    "StageOutcome",
    "StrictFailure",
    "UserError",
    "__version__",
    "hookimpl",
    "hookspec",
]
