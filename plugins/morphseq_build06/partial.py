"""Some of a run's outputs on their own: the API's step functions write the training join
or the analysis copies as the stage does (its merge, writers and sidecars), so that the
next run takes them for its own; the run's other outputs are left as they are."""

from __future__ import annotations

from collections.abc import Collection

import attrs

from .export import export
from .merge import merge
from .plan import Build06Plan
from .records import SIDECAR_OF, GenerateReport, Output, OutputKind
from .settled import settle

NOT_ASKED = "not asked for by this call"


def write_only(plan: Build06Plan, kinds: Collection[OutputKind]) -> list[Output]:
    """Write the plan's outputs of ``kinds`` (and their typed copies) that are not current,
    and nothing else; nothing is generated. Returns those outputs as decided. Call it
    holding the lock of their folder."""
    settled = settle(plan, GenerateReport())
    written = {*kinds, *(SIDECAR_OF[k] for k in kinds)}  # with their records
    outputs = tuple(o if o.kind in written else attrs.evolve(o, action="skip", reason=NOT_ASKED)
                    for o in settled.outputs)
    # what is said of the outputs not asked for does not apply
    warnings = tuple(w for w in settled.warnings if w not in plan.output_warnings)
    merged = merge(plan, attrs.evolve(settled, outputs=outputs, warnings=warnings))
    export(plan, merged)
    return [o for o in outputs if o.kind in kinds]
