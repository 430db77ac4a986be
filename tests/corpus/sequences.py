"""Fixed sequences of the model-based test's operator loop (tests/model), replayed on its
``World`` (real df02 rows as templates, a tiny legacy model): each sequence is the kind
of multi-step history the state machine draws, its Build06 runs through the CLI (and
some through the API), with the regressions it found among them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model.world import MODEL, Options, World

from .session import Session

Action = Callable[[World], Any]


def _run(s: Session, world: World, name: str, opts: Options, *, api: bool = False) -> None:
    if not api:
        s.cli(name, *opts.argv(world))
        return
    o = opts
    kwargs = dict(model_name=MODEL, experiments=list(o.experiments) if o.experiments else None,
                  generate_missing=o.generate_missing_latents, export_analysis=o.export_analysis_copies,
                  train_name=o.train_name, overwrite=o.overwrite, dry_run=o.dry_run, z_schema=o.z_schema,
                  generate_only=o.generate_only, overwrite_latents=o.overwrite_latents, formats=["csv", *o.formats],
                  report=o.report, latent_format=o.latent_format, include_sigma=o.include_sigma, strict=o.strict,
                  backend=o.backend, batch_size=8, workers=1, device="cpu")
    s.api(name, [{"call": "build_df03_with_embeddings", "args": [str(world.root), str(world.data_root)],
                  "kwargs": kwargs}])


def _sequence(seed: int, *steps: tuple[str, Action | Options | tuple[Options, str]]) -> Callable[[Session], None]:
    """A scenario: a World from ``seed``, then each step an operator action (a function of
    the world, not recorded on its own: the next run shows what it did) or a Build06 run
    (``Options``; ``(Options, "api")`` through the API)."""

    def play(s: Session) -> None:
        world = World(s.base, seed=seed)
        pending: list[str] = []
        for name, step in steps:
            if callable(step) and not isinstance(step, Options):
                step(world)
                pending.append(name)
                continue
            opts, via = step if isinstance(step, tuple) else (step, "cli")
            _run(s, world, "+".join([*pending, name]), opts, api=via == "api")
            pending = []

    play.__doc__ = f"World(seed={seed}): " + ", ".join(name for name, _ in steps)
    return play


GEN = Options(generate_missing_latents=True)
E1, E2, E3 = "20231207", "20240509_18ss", "20250612_30hpf_ctrl_atf6"

SEQUENCES: dict[str, Callable[[Session], None]] = {
    "seq-append-edit-overwrite": _sequence(
        1,
        ("append", lambda w: w.append_experiment(E1, 4)),
        ("build06-generate", GEN),
        ("append-missing-image", lambda w: w.append_experiment(E2, 3, images=2)),
        ("build06-generate-report", Options(generate_missing_latents=True, report=True)),
        ("edit-row", lambda w: w.edit_row(0, "stage_hpf", "24")),
        ("build06", Options()),
        ("build06-overwrite", Options(overwrite=True)),
    ),
    "seq-generate-only-typed-copies": _sequence(
        2,
        ("append-two", lambda w: (w.append_experiment(E1, 3), w.append_experiment(E2, 2))),
        ("build06-generate-only", Options(generate_only=True)),
        ("build06-parquet-h5ad", Options(formats=("parquet", "h5ad"))),
        ("remove-row", lambda w: w.remove_row(1)),
        ("build06-parquet-kept-df03", Options(formats=("parquet",))),
        ("build06-overwrite-parquet", Options(overwrite=True, formats=("parquet",))),
    ),
    "seq-foreign-latents-reembedded": _sequence(
        16,
        ("append", lambda w: w.append_experiment(E1, 3)),
        ("foreign-latents", lambda w: w.foreign_latent_file(E1, w.snips(E1)[:2], seed=1)),
        ("build06-merge-foreign", Options()),
        ("build06-generate-only-overwrite-parquet",
         Options(generate_only=True, overwrite_latents=True, latent_format="parquet")),
        ("build06-overwrite", Options(overwrite=True, latent_format="parquet")),
    ),
    "seq-reembed-same-bytes": _sequence(
        16,
        ("append", lambda w: w.append_experiment(E1, 3)),
        ("build06-overwrite-latents", Options(overwrite_latents=True)),
        ("build06-overwrite-latents-again", Options(overwrite_latents=True)),
        ("build06-dry-run", Options(dry_run=True)),
    ),
    "seq-flat-schema-plan": _sequence(
        16,
        ("append", lambda w: w.append_experiment(E1, 3)),
        ("build06-flat-dry-run", Options(generate_missing_latents=True, z_schema="flat", dry_run=True)),
        ("build06-flat", Options(generate_missing_latents=True, z_schema="flat")),
        ("build06-bio-nuisance", Options(generate_missing_latents=True, z_schema="bio_nuisance")),
    ),
    "seq-training-set": _sequence(
        4,
        ("append-two", lambda w: (w.append_experiment(E1, 4), w.append_experiment(E3, 3))),
        ("training-set", lambda w: w.write_training_set("train_a", [0, 2, 3, 5])),
        ("build06-generate-train-copies",
         Options(generate_missing_latents=True, train_name="train_a", export_analysis_copies=True)),
        ("training-set-recut", lambda w: w.write_training_set("train_a", [1])),
        ("build06-train", Options(train_name="train_a")),
        ("build06-train-overwrite", Options(train_name="train_a", overwrite=True)),
    ),
    "seq-broken-snip": _sequence(
        5,
        ("append", lambda w: w.append_experiment(E2, 4)),
        ("break-snip", lambda w: w.break_snip(2)),
        ("build06-generate-strict", Options(generate_missing_latents=True, strict=True)),
        ("build06-generate", GEN),
        ("build06-generate-again", GEN),
    ),
    "seq-experiments-in-turn": _sequence(
        6,
        ("append-three", lambda w: (w.append_experiment(E1, 2), w.append_experiment(E2, 2),
                                    w.append_experiment("20240626", 3))),
        ("build06-one", Options(generate_missing_latents=True, experiments=(E1,))),
        ("build06-two-copies", Options(generate_missing_latents=True, experiments=(E2, "20240626"),
                                       export_analysis_copies=True)),
        ("build06-parquet-h5ad", Options(generate_missing_latents=True, latent_format="parquet", formats=("h5ad",))),
    ),
    "seq-non-finite-latents": _sequence(
        7,
        ("append", lambda w: w.append_experiment(E1, 4)),
        ("foreign-non-finite", lambda w: w.foreign_latent_file(E1, w.snips(E1), seed=9, non_finite=True)),
        ("build06", Options()),
        ("build06-strict", Options(strict=True, overwrite=True)),
        ("build06-sigma", Options(include_sigma=True, overwrite=True, formats=("parquet", "h5ad"))),
    ),
    "seq-api-and-cli": _sequence(
        8,
        ("append-two", lambda w: (w.append_experiment(E1, 3), w.append_experiment(E2, 3))),
        ("api-generate", (GEN, "api")),
        ("build06-dry-run", Options(dry_run=True)),
        ("edit-row", lambda w: w.edit_row(2, "genotype", "a;b")),
        ("api-kept", (Options(formats=("parquet",)), "api")),
        ("api-overwrite-parquet", (Options(overwrite=True, formats=("parquet",)), "api")),
        ("build06-current", Options(formats=("parquet",))),
    ),
    "seq-backends": _sequence(
        9,
        ("append", lambda w: w.append_experiment(E1, 3)),
        ("build06-torch", Options(generate_missing_latents=True, backend="torch")),
        ("build06-onnxruntime-reembed", Options(overwrite_latents=True, backend="onnxruntime")),
        ("build06-overwrite", Options(overwrite=True)),
    ),
    "seq-missing-images-remove-rows": _sequence(
        10,
        ("append", lambda w: w.append_experiment(E1, 3)),
        ("build06-generate", GEN),
        ("append-no-images", lambda w: w.append_experiment(E3, 3, images=0)),
        ("build06-generate-strict", Options(generate_missing_latents=True, strict=True)),
        ("remove-rows", lambda w: (w.remove_row(3), w.remove_row(3))),
        ("build06-dry-run", Options(generate_missing_latents=True, dry_run=True)),
        ("build06-generate", GEN),
    ),
}
