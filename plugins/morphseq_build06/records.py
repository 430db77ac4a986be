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
    read_path: Path | None = None  # the file read, when it is not ``latent_path`` (a re-embedding into the other format)
    not_topped_up: str = ""  # why the snips without a latent row cannot be appended to its file
    written_as: str = ""  # once generation wrote its latent file: how (``CHANGES``), for the reasons' words

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
    SIDECAR = "sidecar"  # df03's: its record, and the record of what is written beside it
    TRAINING = "training"
    TRAINING_SIDECAR = "training_sidecar"
    ANALYSIS = "analysis"
    ANALYSIS_SIDECAR = "analysis_sidecar"  # one for all the analysis copies (df03_copies.json)
    MANIFEST = "manifest"
    REPORT = "report"


#: the outputs that are tables: written as CSV, with Parquet and h5ad copies on request
TABLES = (OutputKind.DF03, OutputKind.ANALYSIS, OutputKind.TRAINING)
#: the record (sidecar) of a table's outputs, where each of them and its typed copies is entered
SIDECAR_OF = {OutputKind.DF03: OutputKind.SIDECAR, OutputKind.TRAINING: OutputKind.TRAINING_SIDECAR,
              OutputKind.ANALYSIS: OutputKind.ANALYSIS_SIDECAR}


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


# ---------------------------------------------------------------- latent rows


@attrs.frozen(kw_only=True)
class Hygiene:
    """Latent rows left out of the merge: holding NaN, ±Inf, or a cell that is not one number."""

    rows_with_nan: int = 0
    rows_with_inf: int = 0
    rows_not_one_number: int = 0
    examples: tuple[Mapping[str, str], ...] = ()  # file, snip_id and (when not one number) the cell

    @property
    def non_finite(self) -> int:
        return self.rows_with_nan + self.rows_with_inf

    def as_dict(self) -> dict[str, Any]:
        return {"rows_with_nan": self.rows_with_nan, "rows_with_inf": self.rows_with_inf,
                "rows_not_one_number": self.rows_not_one_number, "examples": [dict(e) for e in self.examples]}


@attrs.frozen(kw_only=True)
class Duplicates:
    """Snip ids with more than one latent row: identical repeats dropped, conflicting ones (first kept)."""

    identical_dropped: int = 0
    conflicting_keys: int = 0
    examples: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"identical_dropped": self.identical_dropped, "conflicting_keys": self.conflicting_keys,
                "examples": list(self.examples)}


@attrs.frozen(kw_only=True)
class IndexCounts:
    """What indexing the latent files found, for the warnings and the sidecar."""

    files: int
    latent_rows: int
    z_columns: int
    hygiene: Hygiene
    duplicates: Duplicates
    key_rules: Mapping[str, int]  # the key normalisation rules that fired on the latent snip ids


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


# ---------------------------------------------------------------- the run's summary


@attrs.frozen(kw_only=True)
class Df03State:
    """df03 after the run: as this run wrote it, or as it was (its counts then from its
    sidecar; None where they are not known). Never a merge that was not written."""

    path: Path
    written: bool
    exists: bool
    status: Status
    reason: str
    rows: int | None = None
    matched: int | None = None
    coverage: float | None = None
    coverage_selected: float | None = None
    never_embeddable: int | None = None

    @property
    def unembedded(self) -> int | None:
        return self.rows - self.matched if self.rows is not None and self.matched is not None else None

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "written": self.written, "exists": self.exists, "status": self.status,
                "reason": self.reason, "rows": self.rows, "matched": self.matched, "coverage": self.coverage,
                "coverage_selected": self.coverage_selected, "unembedded": self.unembedded,
                "never_embeddable": self.never_embeddable}


@attrs.frozen(kw_only=True)
class Skipped:
    path: str
    reason: str


@attrs.frozen(kw_only=True)
class RunSummary:
    """What a Build06 run did (``--json`` prints it); ``df03`` is None for ``--generate-only``."""

    df03: Df03State | None
    df02_rows: int
    selected: tuple[str, ...]
    generated: GenerateReport
    written: tuple[str, ...]  # every file this run wrote
    skipped: tuple[Skipped, ...]
    warnings: tuple[str, ...]
    report: str | None = None
    sidecar: str | None = None

    def as_dict(self) -> dict[str, Any]:
        skipped = [{"path": s.path, "reason": s.reason} for s in self.skipped]
        if self.df03 is None:
            return {"stage": "build06", "generate_only": True, "generated": self.generated.as_dict(),
                    "written": list(self.written), "skipped": skipped, "warnings": list(self.warnings),
                    "sidecar": None}
        d = self.df03
        return {"stage": "build06", "df03": d.as_dict(), "coverage": d.coverage,
                "rows": {"df02": self.df02_rows, "df03": d.rows, "matched": d.matched, "unembedded": d.unembedded},
                "selected_experiments": list(self.selected), "generated": self.generated.as_dict(),
                "written": list(self.written), "skipped": skipped, "warnings": list(self.warnings),
                **({"report": self.report} if self.report else {}), "sidecar": self.sidecar}
