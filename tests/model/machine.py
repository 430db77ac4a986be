"""The operator's loop as a hypothesis state machine (issue 16): rules are what an operator
and an analyst do to a pipeline root and a data root, and Build06 runs with a random valid
combination of options; after every run the invariants of ``invariants`` are checked."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from . import invariants
from .world import EXPERIMENT_POOL, TRAIN_POOL, Options, RunResult, World, manifest


@attrs.define
class Stats:
    """What the runs covered, for the long profile's figures."""

    examples: int = 0
    steps: int = 0
    runs: int = 0
    exits: dict[int, int] = attrs.Factory(dict)
    pairs: set[Any] = attrs.Factory(set)
    values: set[Any] = attrs.Factory(set)
    trace: list[str] = attrs.Factory(list)
    errors: dict[str, int] = attrs.Factory(dict)  # a failed run's message, shortened, for the figures
    verbose: bool = False  # a line per sequence on stderr (the long profile)

    def record(self, result: Any) -> None:
        self.runs += 1
        if result.code != 0:
            last = (result.stderr.strip().splitlines() or [""])[-1]
            message = (last.partition("error: ")[2] or last.partition(": ")[2] or last)[:70]
            self.errors[message] = self.errors.get(message, 0) + 1
        self.exits[result.code] = self.exits.get(result.code, 0) + 1
        self.pairs |= result.options.pairs()
        self.values |= set(result.options.values().items())


STATS = Stats()
FORMATS = ((), ("parquet",), ("h5ad",), ("parquet", "h5ad"))


def known_defects(opts: Options) -> Options:
    """The combinations other helpers are fixing now, left out precisely (drop each line
    once its fix is on main)."""
    return opts


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in ``one_in`` draws; shrinks to False (the plain run)."""
    return draw(st.sampled_from([False] * (one_in - 1) + [True]))


@st.composite
def run_options(draw: st.DrawFn, experiments: list[str]) -> Options:
    chosen: tuple[str, ...] | None = None
    if experiments and draw(st.booleans()):
        chosen = tuple(draw(st.lists(st.sampled_from(experiments), min_size=1, max_size=3, unique=True)))
    elif rarely(draw, 30):
        chosen = ("20990101_not_in_df02",)  # a typo: one clear line and exit 2
    return known_defects(Options(
        experiments=chosen,
        generate_missing_latents=draw(st.booleans()),
        generate_only=rarely(draw, 6),
        overwrite=draw(st.booleans()),
        overwrite_latents=rarely(draw, 6),
        export_analysis_copies=draw(st.booleans()),
        train_name=draw(st.none() | st.sampled_from(TRAIN_POOL)),
        formats=draw(st.sampled_from(FORMATS)),
        report=rarely(draw, 6),
        latent_format=draw(st.sampled_from(("csv", "csv", "parquet"))),
        z_schema=draw(st.sampled_from(("auto", "auto", "flat", "bio_nuisance"))),
        include_sigma=draw(st.booleans()),
        strict=rarely(draw, 4),
        dry_run=rarely(draw, 4),
        backend=draw(st.sampled_from(("auto", "torch", "onnxruntime"))),
    ))


class OperatorLoop(RuleBasedStateMachine):
    """One pipeline root's life: Build05 appends experiments, analysts cut training sets,
    latent files arrive from elsewhere, images break, and Build06 runs between."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="morphseq-model-"))
        self.world = World(self.tmp, seed=STATS.examples)
        self.trace: list[str] = []
        STATS.trace = self.trace  # the last sequence run: after a failure, the shrunk one
        STATS.examples += 1

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if STATS.verbose:
            print(f"example {STATS.examples}: {len(self.trace)} steps; total {STATS.steps} steps, "
                  f"{STATS.runs} runs, {len(STATS.pairs)} option pairs", file=sys.stderr, flush=True)

    def step(self, text: str) -> None:
        STATS.steps += 1
        self.trace.append(text)

    def then_maybe_run(self, data: st.DataObject) -> None:
        """An operator's change is often followed at once by a run (half the time)."""
        if data.draw(st.booleans(), label="then run"):
            self.build06(data)

    @initialize(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=2))
    def first_experiments(self, sizes: list[int]) -> None:
        for name, n in zip(EXPERIMENT_POOL, sizes, strict=False):
            self.world.append_experiment(name, n)

    # -- the operator and the analyst --------------------------------------------------
    @precondition(lambda self: len(self.world.experiments()) < len(EXPERIMENT_POOL))
    @rule(n=st.integers(1, 4), missing_images=st.integers(0, 2), data=st.data())
    def append_experiment(self, n: int, missing_images: int, data: st.DataObject) -> None:
        name = next(e for e in EXPERIMENT_POOL if e not in self.world.experiments())
        self.step(f"append_experiment({name!r}, {n}, images={max(n - missing_images, 0)})")
        self.world.append_experiment(name, n, images=max(n - missing_images, 0))
        self.then_maybe_run(data)

    @precondition(lambda self: self.world.snips())
    @rule(i=st.integers(0, 99), column=st.sampled_from(("stage_hpf", "image_notes", "genotype", "medium")),
          value=st.sampled_from(("48.0", "24", "", "edited by hand", "inf", "a;b", "30.5")), data=st.data())
    def edit_row(self, i: int, column: str, value: str, data: st.DataObject) -> None:
        self.step(f"edit_row({i}, {column!r}, {value!r})")
        self.world.edit_row(i, column, value)
        self.then_maybe_run(data)

    @precondition(lambda self: len(self.world.snips()) > 1)
    @rule(i=st.integers(0, 99), data=st.data())
    def remove_row(self, i: int, data: st.DataObject) -> None:
        self.step(f"remove_row({i})")
        self.world.remove_row(i)
        self.then_maybe_run(data)

    @precondition(lambda self: self.world.snips())
    @rule(i=st.integers(0, 99), data=st.data())
    def break_snip(self, i: int, data: st.DataObject) -> None:
        path = self.world.break_snip(i)
        self.step(f"break_snip({i})  # {path.name if path else None}")
        self.then_maybe_run(data)

    def _foreign_candidates(self) -> list[str]:
        # an experiment whose CSV latent file no run of this tool wrote (no manifest entry):
        # editing a file the manifest records is issue 17 item 3 (cells), out of this model
        recorded = manifest(self.world)
        return [e for e in self.world.experiments() if f"morph_latents_{e}.csv" not in recorded]

    @precondition(lambda self: self._foreign_candidates())
    @rule(data=st.data(), seed=st.integers(0, 2**16), keep=st.floats(0.3, 1.0), non_finite=st.booleans())
    def latent_file_from_elsewhere(self, data: st.DataObject, seed: int, keep: float, non_finite: bool) -> None:
        exp = data.draw(st.sampled_from(self._foreign_candidates()))
        snips = self.world.snips(exp)
        snips = snips[:max(1, round(len(snips) * keep))]
        self.step(f"latent_file_from_elsewhere({exp!r}, {len(snips)} snips, seed={seed}, non_finite={non_finite})")
        self.world.foreign_latent_file(exp, snips, seed=seed, non_finite=non_finite)
        self.then_maybe_run(data)

    @precondition(lambda self: self.world.snips())
    @rule(name=st.sampled_from(TRAIN_POOL), rows=st.lists(st.integers(0, 99), min_size=1, max_size=6), data=st.data())
    def write_training_set(self, name: str, rows: list[int], data: st.DataObject) -> None:
        self.step(f"write_training_set({name!r}, {rows})")
        self.world.write_training_set(name, rows)
        self.then_maybe_run(data)

    # -- Build06 ---------------------------------------------------------------------------
    @rule(data=st.data())
    def build06(self, data: st.DataObject) -> None:
        opts = data.draw(run_options(self.world.experiments()))
        # half the runs (dry runs too) go through the Python API: build_df03_with_embeddings
        # or morphseq_stages.run_stage; shrinks to the CLI
        interface = data.draw(st.sampled_from(INTERFACES))
        self.step(f"build06({opts!r}, interface={interface!r})")
        run_checked(self.world, opts, interface=interface)


INTERFACES = ("cli", "cli", "api", "run_stage")


def run_checked(world: World, opts: Options, *, interface: str = "cli") -> RunResult:
    """Build06 with ``opts`` (through the CLI's main, the API or run_stage), every invariant
    checked; a dry run is followed by the real run it plans (through the same interface),
    and a completed run by an identical rerun."""
    run = world.runner(interface)
    if opts.dry_run:
        plan = _run_once(run, world, opts)
        real = run_checked(world, attrs.evolve(opts, dry_run=False), interface=interface)
        invariants.check_plan_followed(plan, real)
        return plan
    result = _run_once(run, world, opts)
    if result.code == 0:
        after = world.snapshot()
        rerun = run(opts)
        STATS.record(rerun)
        invariants.check_rerun(result, after, world.snapshot(), rerun)
    return result


def _run_once(run: Callable[[Options], RunResult], world: World, opts: Options) -> RunResult:
    before, latents = world.snapshot(), invariants.latent_rows(world)
    result = run(opts)
    after = world.snapshot()
    result = attrs.evolve(result, touched=frozenset(before.changed(after, rewrites=True)))
    STATS.record(result)
    invariants.check_run(world, before, after, result, latents)
    return result
