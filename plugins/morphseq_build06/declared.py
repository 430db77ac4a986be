"""A Build06 plan as the host shows it: the console's table, and the JSON of ``--dry-run
--json`` with what the run reads and writes (for Make/Snakemake-style tools).

``reads``: ``{"kind", "path", "action": "read", "experiment"?}``; ``writes``:
``{"kind", "path", "action", "reason", "experiment"?}`` with ``action`` one of
``generate`` (a new latent file), ``top-up`` (a latent file gains the missing rows),
``regenerate`` (a latent file re-embedded whole), ``write`` (an output that does not
exist yet), ``overwrite`` (an output replaced) and ``skip`` (left as it is; the reason
says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from morphseq_stages.stages import StagePlan

from .console import render_plan
from .plan import Build06Plan
from .records import OutputKind


def _entry(kind: str, path: Path | str, action: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "path": str(path), "action": action, **{k: v for k, v in extra.items() if v is not None}}


def reads(plan: Build06Plan) -> list[dict[str, Any]]:
    """Every file (or snip folder) the run reads."""
    out = [_entry("df02", plan.df02_path, "read")]
    out += [_entry("latents", e.latent_path, "read", experiment=e.experiment)
            for e in plan.experiments if e.latent_exists and e.action != "regenerate"]
    if plan.manifest_path.is_file():
        out.append(_entry("manifest", plan.manifest_path, "read"))
    if plan.model_error is None:
        out += [_entry(kind, path, "read") for kind, path in model_files(plan)]
    # every snip folder is listed (the plan counts its images); ``images``: those to embed
    out += [_entry("snips", e.snip_dir, "read", experiment=e.experiment, images=len(e.to_embed))
            for e in plan.experiments if e.snip_dir is not None]
    train = plan.output(OutputKind.TRAINING)
    if train is not None and train.writes:
        out.append(_entry("training_metadata", train.path.with_name("embryo_metadata_df_train.csv"), "read"))
    return out


def model_files(plan: Build06Plan) -> list[tuple[str, Path]]:
    """The model's config and weights (those the embedder names, else its whole folder)."""
    if not plan.model.location:
        return []
    folder = Path(plan.model.location)
    found = [(kind, folder / name) for kind, name in (("model_config", "model_config.json"), ("model_weights", "model.pt"),
                                                       ("model_weights", "encoder_reformatted.pt"))
             if (folder / name).is_file()]
    return found or [("model", folder)]


def writes(plan: Build06Plan) -> list[dict[str, Any]]:
    """Every file the run writes or replaces (latent files and the manifest included), and
    every output it leaves as it is (``skip``)."""
    out = [_entry("latents", e.latent_path, e.action, reason=e.reason, experiment=e.experiment)
           for e in plan.experiments if e.generating]
    out += [_entry(o.name, o.path, o.action, reason=o.reason, experiment=o.experiment) for o in plan.outputs]
    return out


def as_dict(plan: Build06Plan) -> dict[str, Any]:
    """The plan as ``--dry-run --json`` prints it."""
    df03 = plan.df03
    return {
        "stage": "build06",
        "df02": str(plan.df02_path), "df02_rows": len(plan.df02),
        "df03": str(plan.df03_path),
        "df03_status": {"status": df03.freshness.status, "reasons": list(df03.freshness.reasons),
                        "action": df03.action},
        "selected_experiments": list(plan.selected),
        "embedder": plan.options.embedder,
        "model": {"name": plan.model.name, "location": plan.model.location,
                  "fingerprint": plan.model.fingerprint, "error": plan.model_error},
        "latent_store": str(plan.store),
        "experiments": [e.as_dict() for e in plan.experiments],
        "prediction": plan.prediction,
        "outputs": [o.as_dict() for o in plan.outputs],
        "warnings": list(plan.warnings) + list(plan.predicted),
        "generate_only": plan.options.generate_only, "reads": reads(plan), "writes": writes(plan),
    }


@attrs.frozen(kw_only=True)
class Build06StagePlan(Build06Plan, StagePlan):
    """The plan the host gets: :class:`~morphseq_build06.plan.Build06Plan`, printable as
    the console's table (``--dry-run``) and as JSON (``--dry-run --json``)."""

    @classmethod
    def of(cls, plan: Build06Plan) -> Build06StagePlan:
        return cls(**{f.name: getattr(plan, f.name) for f in attrs.fields(Build06Plan)})

    def as_dict(self) -> dict[str, Any]:
        return as_dict(self)

    def render(self) -> str:
        return render_plan(self)
