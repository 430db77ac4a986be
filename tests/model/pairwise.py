"""A covering array of Build06's CLI options: every pair of option values in at least one
run (computed here, greedily, with a fixed seed, so the rows never change by chance)."""

from __future__ import annotations

import itertools
import random
from functools import cache
from typing import Any

from .machine import known_defects
from .world import Options

#: each option and the values a run is tried with, as ``Options.values`` names them
DOMAINS: dict[str, tuple[Any, ...]] = {
    "experiments": ("all", "some"),
    "generate_missing_latents": (False, True),
    "generate_only": (False, True),
    "overwrite": (False, True),
    "overwrite_latents": (False, True),
    "export_analysis_copies": (False, True),
    "train_name": (False, True),
    "formats": ("csv", "parquet", "h5ad", "parquet+h5ad"),
    "report": (False, True),
    "latent_format": ("csv", "parquet"),
    "z_schema": ("auto", "flat", "bio_nuisance"),
    "include_sigma": (False, True),
    "strict": (False, True),
    "dry_run": (False, True),
    "backend": ("auto", "torch", "onnxruntime"),
}


def options_of(values: dict[str, Any], experiment: str = "20231207", train: str = "train_a") -> Options:
    return Options(**{
        **values,
        "experiments": (experiment,) if values["experiments"] == "some" else None,
        "train_name": train if values["train_name"] else None,
        "formats": () if values["formats"] == "csv" else tuple(values["formats"].split("+")),
    })


def _pairs(values: dict[str, Any]) -> set[tuple[tuple[str, Any], tuple[str, Any]]]:
    items = sorted(values.items())
    return {(a, b) for i, a in enumerate(items) for b in items[i + 1:]}


@cache
def all_pairs() -> frozenset[tuple[tuple[str, Any], tuple[str, Any]]]:
    return frozenset(
        ((a, va), (b, vb)) for a, b in itertools.combinations(sorted(DOMAINS), 2)
        for va in DOMAINS[a] for vb in DOMAINS[b])


def _allowed(values: dict[str, Any]) -> bool:
    opts = options_of(values)
    return known_defects(opts) == opts


@cache
def covering_array(seed: int = 16, candidates: int = 40) -> tuple[dict[str, Any], ...]:
    """Rows of option values covering every pair (AETG-style: of several random greedy
    candidates, keep the one covering most uncovered pairs)."""
    rng = random.Random(seed)
    names = sorted(DOMAINS)
    uncovered = set(all_pairs())
    rows: list[dict[str, Any]] = []
    while uncovered:
        (a, va), (b, vb) = min(uncovered, key=repr)
        best, gain = None, -1
        for _ in range(candidates):
            row = {a: va, b: vb}
            for name in rng.sample(names, len(names)):
                if name in row:
                    continue
                scored = [(len({p for p in _pairs({**row, name: v}) if p in uncovered}), rng.random(), v)
                          for v in DOMAINS[name]]
                row[name] = max(scored)[2]
            if not _allowed(row):  # keep the forced pair; give up what the known defect needs
                for name in ("generate_missing_latents", "generate_only", "overwrite_latents"):
                    if name not in (a, b):
                        row[name] = False
                if not _allowed(row):
                    continue
            got = len(_pairs(row) & uncovered)
            if got > gain:
                best, gain = row, got
        if best is None:  # the forced pair clashes with a known defect in every candidate: take it out
            uncovered.discard(((a, va), (b, vb)))
            continue
        rows.append(best)
        uncovered -= _pairs(best)
    return tuple(rows)
