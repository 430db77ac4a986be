"""Every scenario of the corpus, in the order recorded."""

from __future__ import annotations

from . import cases, scenarios, sequences
from .recording import Scenario


def _of(module: object, *names: str) -> list[Scenario]:
    out = []
    for name in names:
        run = getattr(module, name)
        out.append(Scenario(name.replace("_", "-"), run, (run.__doc__ or "").strip().split("\n")[0]))
    return out


SCENARIOS: tuple[Scenario, ...] = (
    *_of(scenarios, "demo", "generate", "generate_parquet", "generate_only_then_merge", "formats", "report",
         "qc_filter", "train_name", "analysis_copies", "experiments", "z_schema", "strict", "dry_runs", "df02_edit",
         "edited_output", "other_model_latent", "unreadable_snip", "upstream_rows"),
    *_of(cases, "api_build", "api_pieces", "dead_run_leftovers", "latent_cells", "latent_sources",
         "parquet_of_another_model", "training_rows_added", "snakemake"),
    *(Scenario(name, run, run.__doc__ or "") for name, run in sequences.SEQUENCES.items()),
)


def chosen(names: list[str] | None) -> list[Scenario]:
    """The scenarios named (all when none is), refusing a name that is not one."""
    if not names:
        return list(SCENARIOS)
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"no such scenario: {', '.join(unknown)} (python -m tests.corpus list)")
    return [known[n] for n in names]
