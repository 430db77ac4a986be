"""The stage contract: what a stage registers (Stage), what its plan is and may offer the runner, what a run ends with."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs


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
class StageOutcome:
    """What a stage run ends with: its exit code, a JSON-able summary (with ``written``,
    ``skipped``, ``warnings`` and ``sidecar`` where the stage has them) and the text the
    CLI prints for a person."""

    exit_code: int = 0
    summary: Mapping[str, Any] = attrs.field(factory=dict)
    text: str = ""


class StagePlan:
    """What a plan hook returns: printable as a table and as JSON.

    Any object with these two methods will do; subclassing is optional. A plan may also
    offer any of :class:`HoldsLocks`, :class:`ReadsFolders` and :class:`KnowsIfCurrent`:
    the runner uses what it offers (see :func:`morphseq_stages.run_stage`).
    """

    def as_dict(self) -> dict[str, Any]:  # pragma: no cover - protocol
        """The plan as JSON-able data (``--dry-run --json``)."""
        raise NotImplementedError

    def render(self) -> str:  # pragma: no cover - protocol
        """The plan as text for a person (``--dry-run``)."""
        raise NotImplementedError


#: a lock file and what it guards, for messages ("another run is writing <what>")
Lock = tuple[Path, str]


@runtime_checkable
class HoldsLocks(Protocol):
    """A plan whose run writes folders another run could write at the same time."""

    def locks(self) -> Sequence[Lock]:
        """The lock files held from generate to the end of export."""


@runtime_checkable
class ReadsFolders(Protocol):
    """A plan that reads folders it does not write, where a killed run may have left a set half renamed."""

    def reads(self) -> Sequence[Lock]:
        """The locks of those folders: each is taken for a moment, when free, to recover its folder."""


@runtime_checkable
class KnowsIfCurrent(Protocol):
    """A plan that can tell whether what it read or decided on changed since it was made."""

    def still_current(self) -> bool:
        """False when another run changed its inputs or outputs: the runner then plans again."""
