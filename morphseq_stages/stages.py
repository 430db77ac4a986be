"""Value types a stage plugin registers and receives."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from .registry import Registry


@attrs.frozen(kw_only=True)
class Stage:
    """A pipeline stage: its name, one help line, and its options.

    ``options`` is the stage's option schema: an attrs class whose fields are made with
    :func:`morphseq_stages.options.option`. The CLI flags are generated from it and
    :func:`morphseq_stages.run_stage` checks every call against it; ``None`` declares no
    options (any mapping is passed through unchecked).

    ``demo``, if given, lays out a small example under a folder and returns the stage's
    command-line arguments that run it there (``morphseq-stages demo``).
    """

    name: str
    help: str
    options: type | None = None
    demo: Callable[[Path], list[str]] | None = None


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


@attrs.frozen(kw_only=True)
class StageOutcome:
    """What a stage run ends with: its exit code, a JSON-able summary (with ``written``,
    ``skipped``, ``warnings`` and ``sidecar`` where the stage has them) and the text the
    CLI prints for a person."""

    exit_code: int = 0
    summary: Mapping[str, Any] = attrs.field(factory=dict)
    text: str = ""


class StagePlan:
    """What a plan hook returns: printable as a table and as JSON.

    Any object with these two methods will do; subclassing is optional.
    """

    def as_dict(self) -> dict[str, Any]:  # pragma: no cover - protocol
        """The plan as JSON-able data (``--dry-run --json``)."""
        raise NotImplementedError

    def render(self) -> str:  # pragma: no cover - protocol
        """The plan as text for a person (``--dry-run``)."""
        raise NotImplementedError
