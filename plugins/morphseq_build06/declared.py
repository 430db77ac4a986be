"""What a Build06 run reads and writes, declared by its plan (for Make/Snakemake-style
tools), and the ``--generate-only`` mode that lets per-experiment embedding jobs run side
by side before one merge.

``reads``: ``{"kind", "path", "action": "read", "experiment"?}``; ``writes``:
``{"kind", "path", "action", "reason", "experiment"?}`` with ``action`` one of
``generate`` (a new latent file), ``top-up`` (a latent file gains the missing rows),
``regenerate`` (a latent file re-embedded whole), ``write`` (an output that does not
exist yet), ``overwrite`` (an output replaced) and ``skip`` (left as it is; the reason
says why).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import structlog

from morphseq_stages.files import LockBusy, exclusive_lock

from . import paths
from .latents import LATENT_FORMATS, latent_file_name

if TYPE_CHECKING:
    from .generate import GenerateReport
    from .outputs import OutputPlan
    from .plan import Build06Plan, ExperimentPlan

log = structlog.get_logger()
GENERATE_ONLY_REASON = "--generate-only: only latent files and the manifest are written"
#: how long a --generate-only job waits for another job writing to the same latent store
STORE_WAIT_S = 600.0


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
    train = plan.output("training")
    if train is not None and train.action != "skip":
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
    from .plan import GENERATING

    out = [_entry("latents", e.latent_path, e.action, reason=e.reason, experiment=e.experiment)
           for e in plan.experiments if e.action in GENERATING]
    out += [_entry(str(o.kind), o.path, o.action, reason=o.reason, experiment=o.experiment) for o in plan.outputs]
    return out


def as_dict(plan: Build06Plan) -> dict[str, Any]:
    return {"generate_only": plan.options.generate_only, "reads": reads(plan), "writes": writes(plan)}


# ---------------------------------------------------------------- --generate-only


def restrict(outputs: Sequence[OutputPlan]) -> list[OutputPlan]:
    """With --generate-only every output but the manifest is skipped."""
    return [o if o.kind == "manifest" else attrs.evolve(o, action="skip", reason=GENERATE_ONLY_REASON)
            for o in outputs]


@contextlib.contextmanager
def store_write(plan: Build06Plan, exp: ExperimentPlan) -> Iterator[bool]:
    """Around writing one experiment's latent file and the manifest.

    A normal run already holds the store lock (see ``Build06Plan.locks``). A
    --generate-only job takes it here, only while it writes, waiting for another job that
    holds it; it yields False (nothing to write) if the file changed since the plan.
    """
    if not plan.options.generate_only:
        yield True
        return
    deadline = time.monotonic() + STORE_WAIT_S
    with contextlib.ExitStack() as held:
        while True:
            try:
                held.enter_context(exclusive_lock(*paths.store_lock(plan.store)))
                break
            except LockBusy:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        other = written_meanwhile(plan, exp)
        # the file the plan read (a re-embedding may write the other --latent-format beside it)
        read = plan.latents.rows[exp.experiment].path if exp.experiment in plan.latents.rows else exp.latent_path
        current = other is None and _stamp(read) == plan.latents.stamps.get(exp.experiment)
        if not current:
            log.warning("latents.changed_meanwhile", path=str(other or exp.latent_path),
                        reason="another run wrote it after this one planned; left as it is")
        yield current


def written_meanwhile(plan: Build06Plan, exp: ExperimentPlan) -> Path | None:
    """A latent file of ``exp`` that another job wrote since the plan, when this run means
    to write a new one: in either format (two jobs asked for different --latent-format
    must not leave both a CSV and a Parquet file for one experiment)."""
    if exp.action != "generate":
        return None
    return next((p for p in (plan.store / latent_file_name(exp.experiment, f) for f in LATENT_FORMATS)
                 if os.path.lexists(p)), None)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def summary(plan: Build06Plan, generated: GenerateReport) -> dict[str, Any]:
    """The run summary of a --generate-only run."""
    written = list(generated.written)
    if generated.manifest:
        written.append(str(plan.manifest_path))
    return {
        "stage": "build06", "generate_only": True,
        "generated": {"files": list(generated.written), "rows": generated.embedded,
                      "unreadable_images": len(generated.unreadable_images),
                      "not_topped_up": list(generated.skipped)},
        "written": written, "skipped": [{"path": p, "reason": "not written (see the log)"} for p in generated.skipped],
        "warnings": list(plan.warnings), "sidecar": None,
    }
