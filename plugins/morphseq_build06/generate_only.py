"""``--generate-only``: embedding jobs, one per experiment, that run side by side before one merge.

Each job writes only its latent files and the store's manifest. It takes the store lock
only while it writes one experiment's file (waiting for another job that holds it), and
writes nothing where another job wrote the file since this one planned.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

from morphseq_stages.files import LockBusy, exclusive_lock
from morphseq_stages.registry import Registry

from . import paths
from .generate import generate as embed
from .latents import LATENT_FORMATS, latent_file_name
from .plan import Build06Plan
from .records import ExperimentPlan, GenerateReport, RunSummary, Skipped

log = structlog.get_logger()
#: how long a --generate-only job waits for another job writing to the same latent store
STORE_WAIT_S = 600.0


def generate(plan: Build06Plan, registry: Registry) -> GenerateReport:
    """Embed the selected experiments' missing snips, each file written under the store lock."""
    return embed(plan, registry, meanwhile=written_meanwhile, guard=store_write)


@contextlib.contextmanager
def store_write(plan: Build06Plan, exp: ExperimentPlan) -> Iterator[bool]:
    """Around writing one experiment's latent file and the manifest.

    A normal run holds the store lock throughout (see ``Build06Plan.locks``); a
    --generate-only job takes it here, only while it writes, waiting for another job that
    holds it; it yields False (nothing to write) if the file changed since the plan.
    """
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
        # the file the plan found (a re-embedding may write the other --latent-format beside it),
        # whether or not it was read (another model's is not)
        current = other is None and plan.unchanged(exp.read_path or exp.latent_path)
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


def summary(plan: Build06Plan, generated: GenerateReport) -> RunSummary:
    """The run summary of a --generate-only run: its latent files and the manifest, no df03."""
    return RunSummary(df03=None, df02_rows=len(plan.df02), selected=plan.selected, generated=generated,
                      written=(*generated.written, *([str(plan.manifest_path)] if generated.manifest else [])),
                      skipped=tuple(Skipped(path=p, reason="not written (see the log)") for p in generated.skipped),
                      warnings=plan.warnings_after(generated.written))
