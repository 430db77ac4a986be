"""The records a Build06 run passes from phase to phase: plain values, no behaviour.

This module imports nothing of the package's (pluggy's layering: its ``_result`` imports
nothing either), so that every other module may use these types: an experiment's plan,
an output and whether it is current, coverage, what generation did.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

# ---------------------------------------------------------------- experiments

ExperimentAction = Literal["read", "generate", "top-up", "regenerate", "missing"]
GENERATING: tuple[ExperimentAction, ...] = ("generate", "top-up", "regenerate")
#: what a generating action does to a latent file, as the out-of-date reasons say it
CHANGES: Mapping[str, str] = {"generate": "written", "top-up": "topped up", "regenerate": "re-embedded"}


@attrs.frozen(kw_only=True)
class ExperimentPlan:
    """What a run does with one experiment's latent file, and what it found to decide it."""

    experiment: str
    selected: bool  # named by --experiments (every experiment when it is not given)
    df02_rows: int
    latent_path: Path
    latent_exists: bool
    latent_rows: int | None
    snip_dir: Path | None  # the folder found
    image_dir: Path  # where its images are (or would be looked for first)
    snip_images: int | None
    rows_without_latent: int
    rows_without_image: int  # rows that can never be embedded
    to_embed: tuple[Path, ...] = attrs.field(repr=False)
    unreadable: tuple[tuple[Path, str], ...] = attrs.field(repr=False)  # (image, error) recorded, not tried again
    recorded_model: str | None
    recorded_name: str | None
    unknown_origin: bool  # a latent file with no manifest entry
    stale: bool
    action: ExperimentAction
    reason: str
    source_note: str = ""  # which latent file is read and why, when there was a choice
    left_out: str = ""  # why its latent file is not merged (another model's, other z columns; see sources)
    changed_since_recorded: bool = False  # a store file whose sha256 is not the manifest's

    @property
    def generating(self) -> bool:
        return self.action in GENERATING

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment, "selected": self.selected, "df02_rows": self.df02_rows,
            "latent_file": str(self.latent_path), "latent_exists": self.latent_exists,
            "latent_rows": self.latent_rows, "snip_dir": str(self.snip_dir) if self.snip_dir else None,
            "snip_images": self.snip_images, "rows_without_latent": self.rows_without_latent,
            "rows_without_image": self.rows_without_image, "images_to_embed": len(self.to_embed),
            "images_unreadable": len(self.unreadable),
            "recorded_model": self.recorded_model, "recorded_model_name": self.recorded_name,
            "unknown_origin": self.unknown_origin, "stale": self.stale, "action": self.action,
            "reason": self.reason, "source": self.source_note, "left_out": self.left_out or None,
        }


@attrs.frozen(kw_only=True)
class MissingModel:
    """A model ``describe`` could not find: the name its latent files are under, nothing more."""

    name: str
    location: None = None
    fingerprint: None = None
    config_sha256: None = None


# ---------------------------------------------------------------- outputs

Status = Literal["new", "current", "out-of-date", "foreign"]
Action = Literal["write", "overwrite", "skip"]


@attrs.frozen(kw_only=True)
class Freshness:
    """Whether an output holds what this run would write: new, current, out of date (and
    why) or foreign (not written by this tool, or edited since)."""

    status: Status
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        text = {"new": "not there yet", "current": "current", "out-of-date": "out of date",
                "foreign": "not written by this tool or edited since"}[self.status]
        return text + (f": {'; '.join(self.reasons)}" if self.reasons else "")

    @property
    def short(self) -> str:
        """The status in words, without its reasons."""
        return self.describe().split(":")[0]


NEW = Freshness(status="new")


class OutputKind(enum.Enum):
    """What an output is; a table output may also have typed copies (``Output.fmt``)."""

    DF03 = "df03"
    UNEMBEDDED = "unembedded"
    SIDECAR = "sidecar"
    TRAINING = "training"
    ANALYSIS = "analysis"
    MANIFEST = "manifest"
    REPORT = "report"


#: the outputs that are tables: written as CSV, with Parquet and h5ad copies on request
TABLES = (OutputKind.DF03, OutputKind.ANALYSIS, OutputKind.TRAINING)


@attrs.frozen(kw_only=True)
class Output:
    """One file a run writes, replaces or leaves as it is (``action``), and why."""

    kind: OutputKind
    path: Path
    action: Action
    reason: str = ""
    experiment: str | None = None  # an analysis copy's
    freshness: Freshness = NEW
    fmt: str = ""  # a typed copy's format ("parquet", "h5ad"); "" for the file of the kind itself

    @property
    def name(self) -> str:
        """The kind as the plan's JSON names it: ``df03``, ``df03.parquet``, ``report``."""
        return f"{self.kind.value}.{self.fmt}" if self.fmt else self.kind.value

    @property
    def writes(self) -> bool:
        return self.action != "skip"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.name, "path": str(self.path), "action": self.action, "reason": self.reason,
                "experiment": self.experiment, "status": self.freshness.status,
                "status_reasons": list(self.freshness.reasons)}


def find(outputs: Sequence[Output], kind: OutputKind) -> Output | None:
    """The output of ``kind`` (the file itself, not a typed copy), if there is one."""
    return next((o for o in outputs if o.kind is kind and not o.fmt), None)


def the(outputs: Sequence[Output], kind: OutputKind) -> Output:
    """The output of ``kind`` that every run plans (df03, its unembedded list, its sidecar)."""
    out = find(outputs, kind)
    if out is None:
        raise LookupError(f"no {kind.value} output planned")
    return out


# ---------------------------------------------------------------- coverage


@attrs.frozen(kw_only=True)
class ExperimentCoverage:
    rows: int
    matched: int

    @property
    def coverage(self) -> float | None:
        return self.matched / self.rows if self.rows else None

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "matched": self.matched, "coverage": self.coverage}


@attrs.frozen(kw_only=True)
class Coverage:
    """The share of df03's rows that hold an embedding: overall, over the selected
    experiments, per experiment; ``never_embeddable``: rows with no readable image, when known."""

    overall: float | None
    selected: float | None
    rows: int | None
    matched: int | None
    per_experiment: Mapping[str, ExperimentCoverage]
    never_embeddable: int | None = None

    def per_experiment_dict(self) -> dict[str, dict[str, Any]]:
        return {e: c.as_dict() for e, c in self.per_experiment.items()}


# ---------------------------------------------------------------- generation


@attrs.frozen(kw_only=True)
class GenerateReport:
    """What the generate phase did: the latent files written, the images it could not read."""

    written: tuple[str, ...] = ()
    embedded: int = 0
    unreadable_images: tuple[tuple[str, str], ...] = ()
    skipped: tuple[str, ...] = ()
    embedder: Mapping[str, Any] = attrs.field(factory=dict)
    seconds: float = 0.0
    manifest: bool = False  # the manifest was written (a latent file, or the unreadable images it lists)

    def as_dict(self) -> dict[str, Any]:
        """The summary's ``generated``."""
        return {"files": list(self.written), "rows": self.embedded, "unreadable_images": len(self.unreadable_images),
                "not_topped_up": list(self.skipped)}
