"""The run's inputs as generation left the disk, and the outputs decided from them.

Between generate and merge: a latent file this run wrote is read as an input like any
other (this model's, whatever the file it replaced was); an experiment whose latent file
this run meant to write but did not (no image could be read, a refused top-up) is read
as it is. The outputs are decided from these inputs, once; when generation changed
nothing, the plan's decision stands.
"""

from __future__ import annotations

from collections.abc import Collection

import attrs
import structlog

from .built_from import InputsNow
from .index import LatentIndex, index_latents, log_index
from .outputs import plan_outputs
from .plan import Build06Plan
from .records import (
    CHANGES,
    ExperimentPlan,
    GenerateReport,
    IndexCounts,
    Output,
    OutputKind,
    find,
    the,
)
from .store import StoreRead, read_store

log = structlog.get_logger()


@attrs.frozen(kw_only=True)
class Settled:
    """What the merge joins and the export writes: the experiments and latent files as they
    are after generation (each file's identity as read), and the outputs decided from them."""

    experiments: tuple[ExperimentPlan, ...]
    latents: StoreRead
    index: LatentIndex
    info: IndexCounts
    inputs: InputsNow
    outputs: tuple[Output, ...]
    records: dict = attrs.field(repr=False)  # sidecar contents as found, by output kind
    warnings: tuple[str, ...]
    generated: GenerateReport

    def output(self, kind: OutputKind) -> Output | None:
        return find(self.outputs, kind)

    @property
    def df03(self) -> Output:
        return the(self.outputs, OutputKind.DF03)


def _after_generation(plan: Build06Plan, written: Collection[str]) -> tuple[ExperimentPlan, ...]:
    out = []
    for e in plan.experiments:
        if str(e.latent_path) in written:  # this model's now, recorded in the manifest
            e = attrs.evolve(e, action="read", latent_exists=True, to_embed=(), left_out="", written_as=CHANGES[e.action],
                             changed_since_recorded=False, unknown_origin=False, reason=f"{e.reason}; written by this run")
        elif e.generating:  # the file it meant to replace is read as it is
            e = attrs.evolve(e, action="read" if e.latent_exists else "missing", to_embed=(),
                             latent_path=e.read_path or e.latent_path, read_path=None,
                             reason=f"{e.reason}; nothing written by this run")
        out.append(e)
    return tuple(out)


def settle(plan: Build06Plan, generated: GenerateReport) -> Settled:
    for exp in plan.experiments:
        if not exp.latent_path.exists():
            log.warning("latents.missing", path=str(exp.latent_path), experiment=exp.experiment)
    names = [e.experiment for e in plan.experiments]
    changed = any(e.generating for e in plan.experiments)
    experiments = _after_generation(plan, generated.written) if changed else plan.experiments
    opts = plan.options
    read = read_store({e.experiment: e.latent_path for e in experiments if not e.left_out}, opts.z_schema,
                      opts.include_sigma, previous=plan.latents)
    index, info = plan.matching.index, plan.matching.info
    if read is not plan.latents:
        index, info = index_latents(read, names)
    log_index(read, names, info, frozenset(e.experiment for e in plan.experiments if e.stale))
    inputs = attrs.evolve(plan.inputs, experiments=experiments, read=read)
    outputs, records, warnings = plan.outputs, plan.records, plan.warnings
    if changed:
        decided, records, out_warnings = plan_outputs(opts, now=inputs, store=plan.store)
        outputs = tuple(decided)
        # what was said of the outputs holds no more: they are decided again
        warnings = tuple([w for w in plan.warnings_after(generated.written) if w not in plan.output_warnings]
                         + out_warnings)
    return Settled(experiments=experiments, latents=read, index=index, info=info, inputs=inputs, outputs=outputs,
                   records=records, warnings=warnings, generated=generated)
