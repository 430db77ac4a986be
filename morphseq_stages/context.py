"""What every phase hook of one run receives: the run's id, its stage, its checked options, the registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .registry import Registry


@attrs.frozen(kw_only=True)
class StageContext:
    """What every phase hook of one run receives.

    ``options`` holds every option of the stage's schema by name, already converted and
    checked against it (defaults filled in); the stage adds its own checks.
    """

    run_id: str
    stage: str
    options: Mapping[str, Any]
    registry: Registry
