"""Build06 plan: resolve every input and decide, per experiment and output, what to do.

df03 is canonical: every experiment of df02 is read (its latent file, its snip folder);
``--experiments`` only limits which experiments are generated or topped up and which
analysis copies are written. The outputs the plan holds are its forecast, made from the
inputs as read and what generation means to do (``--dry-run`` shows it); the run decides
them once more only when generation changed the latent files (see ``settled``).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from morphseq_stages.embedders import EmbedderRequest, ModelInfo, ModelUnavailable
from morphseq_stages.errors import StrictFailure, UserError
from morphseq_stages.files import JOURNAL, check_safe_id, check_writable
from morphseq_stages.registry import Provider, Registry

from . import keys, manifest, parquet_store, paths
from .built_from import InputsNow
from .coverage import coverage_warnings, in_memory_prefix, predict, prediction_dict
from .csvtext import TextTable
from .df02 import parse_flags, read_df02, row_codes, selected_experiments
from .experiments import check_backend, experiment_warnings, find_images, has_image, plan_experiment
from .index import LatentMatch, index_latents, odd_rows_warning
from .latents import LATENT_FORMATS, latent_file_name
from .options import Build06Options
from .outputs import plan_outputs, restrict_to_manifest
from .records import Coverage, ExperimentPlan, MissingModel, Output, OutputKind, find, the
from .sources import changed_since_recorded, check_generated_columns, check_sources, locate
from .store import StoreRead, read_store

log = structlog.get_logger()


@attrs.frozen(kw_only=True)
class Build06Plan:
    """What a run found and means to do; the host's plan is the printable
    :class:`~morphseq_build06.stage_plan.Build06StagePlan` built on it."""

    options: Build06Options
    df02_path: Path
    df03_path: Path
    store: Path
    model: ModelInfo | MissingModel
    model_error: str | None
    request: EmbedderRequest
    embedder_provider: Provider
    df02: TextTable = attrs.field(repr=False)
    snip_ids: pa.Array = attrs.field(repr=False)
    row_keys: pa.Array = attrs.field(repr=False)  # df02 snip ids normalised for matching
    key_rules: dict[str, int] = attrs.field(repr=False)  # normalisation rules that fired on them
    row_experiments: np.ndarray = attrs.field(repr=False)
    row_codes: np.ndarray = attrs.field(repr=False)  # per df02 row: its experiment's index in ``experiments``, or -1
    has_image: np.ndarray = attrs.field(repr=False)  # per df02 row: its snip image exists
    unreadable_rows: np.ndarray = attrs.field(repr=False)  # per df02 row: its image is recorded as unreadable
    keep: np.ndarray = attrs.field(repr=False)  # per df02 row: it goes into df03 (all, unless --qc-filter)
    unknown_flags: int
    experiments: tuple[ExperimentPlan, ...]
    outputs: tuple[Output, ...]
    warnings: tuple[str, ...]  # certain now
    output_warnings: tuple[str, ...]  # those of ``warnings`` about outputs left out of date
    #: per experiment, what is said of its latent file as read (another model's, edited); not
    #: in ``warnings`` for a file this run re-embeds whole, unless it is not rewritten
    file_warnings: dict[str, tuple[str, ...]] = attrs.field(repr=False)
    predicted: tuple[str, ...]  # the coverage warnings this run's merge is expected to give
    predicted_coverage: Coverage
    records: dict[OutputKind, dict[str, Any]] = attrs.field(repr=False)  # sidecar contents as found
    inputs: InputsNow = attrs.field(repr=False)
    latents: StoreRead = attrs.field(repr=False)
    matching: LatentMatch = attrs.field(repr=False)  # the index of those latent rows, and df02's rows against it
    snapshot: tuple = attrs.field(default=(), repr=False)  # what the plan saw of its files (see still_current)
    started: float = attrs.field(factory=time.monotonic, repr=False)

    @property
    def manifest_path(self) -> Path:
        return self.store / manifest.MANIFEST_NAME

    @property
    def selected(self) -> tuple[str, ...]:
        return tuple(e.experiment for e in self.experiments if e.selected)

    @property
    def generates(self) -> bool:
        return any(e.generating for e in self.experiments)

    def output(self, kind: OutputKind) -> Output | None:
        """The planned output of ``kind`` (the file itself, not a typed copy)."""
        return find(self.outputs, kind)

    @property
    def df03(self) -> Output:
        """df03's output: always planned, with its listing and its sidecar."""
        return the(self.outputs, OutputKind.DF03)

    @property
    def prediction(self) -> dict[str, Any]:
        return prediction_dict(self.predicted_coverage)

    def warnings_after(self, written: Collection[str]) -> tuple[str, ...]:
        """``warnings`` once generation wrote the latent files ``written``: with what was said of
        a file this run meant to re-embed and did not (it is read as it was)."""
        kept = [w for e in self.experiments if e.action == "regenerate" and str(e.latent_path) not in written
                for w in self.file_warnings.get(e.experiment, ())]
        return (*self.warnings, *kept)

    def watched(self) -> list[Path]:
        # each experiment's store files in both formats: a job may have written the one not read
        store = [self.store / latent_file_name(e.experiment, f) for e in self.experiments for f in LATENT_FORMATS]
        return [self.df02_path, self.manifest_path, *(e.latent_path for e in self.experiments), *store,
                *(o.path for o in self.outputs)]

    def unchanged(self, path: Path) -> bool:
        """Whether ``path``, a file the plan looked at, is as the plan saw it."""
        watched = self.watched()
        return path in watched and _snapshot([path])[0] == self.snapshot[watched.index(path)]

    def still_current(self) -> bool:
        """Whether no file the plan read or decided on changed since (another run may have
        written them before this one took the locks)."""
        return _snapshot(self.watched()) == self.snapshot

    def reads(self) -> list[tuple[Path, str]]:
        """The locks of the folders this run reads but does not write (see runner.run_stage):
        the store when it generates nothing, an output folder whose outputs are all current
        (a run killed after committing them may have left its lock and journal there)."""
        free = [] if self.generates else [paths.store_lock(self.store)]
        return free + [lock for lock, outs in self._folders().items()
                       if all(o.action == "skip" for o in outs) and lock != paths.output_lock(self.df03_path)]

    def _folders(self) -> dict[tuple[Path, str], list[Output]]:
        """The outputs by the lock of their folder: df03's (with its listing, sidecar, typed
        copies and report), the analysis copies' and the training join's (each with its
        typed copies and their records); one mechanism for every folder (SPEC §12)."""
        folders: dict[tuple[Path, str], list[Output]] = {}
        for o in self.outputs:
            if o.kind is OutputKind.MANIFEST:
                continue  # the latent store: see ``locks``
            lock = (paths.copies_lock(o.path.parent) if o.kind in (OutputKind.ANALYSIS, OutputKind.ANALYSIS_SIDECAR)
                    else paths.training_lock(o.path.parent)
                    if o.kind in (OutputKind.TRAINING, OutputKind.TRAINING_SIDECAR)
                    else paths.output_lock(self.df03_path))
            folders.setdefault(lock, []).append(o)
        return folders

    def locks(self) -> list[tuple[Path, str]]:
        if self.options.generate_only:
            return []  # it takes the store lock only while it writes (see generate_only.store_write)
        held = [paths.output_lock(self.df03_path)]
        if self.generates:
            held.append(paths.store_lock(self.store))
        held += [lock for lock, outs in self._folders().items()
                 if lock not in held and any(o.action != "skip" for o in outs)]
        return held


def _snapshot(paths: list[Path]) -> tuple:
    stamps: list[tuple[int, int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            stamps.append(None)
    return tuple(stamps)



def strict_failure(warnings: list[str], written: list[str]) -> StrictFailure:
    done = f"written before the failure: {', '.join(written)}" if written else "nothing written"
    return StrictFailure(f"--strict: {len(warnings)} warning(s), {done}: {' | '.join(warnings)}")



def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _describe_model(
    opts: Build06Options, registry: Registry
) -> tuple[ModelInfo | MissingModel, str | None, EmbedderRequest]:
    request = EmbedderRequest(model_name=opts.model_name, model_dir=opts.model_dir, data_root=opts.data_root,
                              device=opts.device,
                              options={"allow_pickle": opts.allow_pickle, "backend": opts.backend})
    try:
        return registry.describe_model(opts.embedder, request), None, request
    except ModelUnavailable as exc:
        return MissingModel(name=exc.name), str(exc), request


def _model_warnings(model_error: str | None, store: Path, generating: bool, latents_root: Path | None
                    ) -> list[str]:
    if model_error is None:
        return []
    if generating:
        raise UserError(model_error)
    if not store.is_dir() and latents_root is None:  # neither a model nor its latents: a misspelt name
        siblings = sorted(p.name for p in store.parent.iterdir() if p.is_dir()) if store.parent.is_dir() else []
        raise UserError(f"{model_error}; no latent store at {store}{did_you_mean(store.name, siblings)}")
    text = f"{model_error}; merging without it: the sidecar records no model fingerprint"
    if not store.is_dir():
        text += f"; no latent store at {store} (reading --latents-root only)"
    return [text]


def _repeated_rows(snip_ids: pa.Array, row_keys: pa.Array, df02_path: Path) -> list[str]:
    """df02 rows that share a snip (its normalised snip_id) with another row: each goes into
    df03 as it is, with the same embedding, which a count of rows or embryos would take twice."""
    _, shared = keys.repeats(row_keys)
    shared &= pc.not_equal(row_keys, "").to_numpy(zero_copy_only=False)  # a row without a snip_id shares nothing
    n = int(shared.sum())
    if not n:
        return []
    example = snip_ids[int(np.flatnonzero(shared)[0])].as_py()
    return [f"{n} df02 row(s) in {df02_path} share their snip with another row (e.g. {example!r}): each is kept in "
            "df03 with the same embedding"]


def _import_pandas_meanwhile() -> None:
    """pyarrow imports pandas, when installed, at the first ``pa.array`` of a process
    (about 0.2 s): start that import on a thread of its own while df02 is being read."""
    def load() -> None:
        with contextlib.suppress(Exception):  # the first user of pandas imports it again, and says why
            importlib.import_module("pandas")

    if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is not None:
        threading.Thread(target=load, name="import-pandas").start()


def make_plan(opts: Build06Options, registry: Registry) -> Build06Plan:
    _import_pandas_meanwhile()
    df02_path = paths.df02(opts.root)
    df02, cols, row_exp = read_df02(opts, df02_path)
    in_df02 = [check_safe_id(e, "experiment") for e in dict.fromkeys(row_exp) if e]
    codes = row_codes(row_exp, in_df02)
    selected = selected_experiments(opts, in_df02, df02_path)
    model, model_error, request = _describe_model(opts, registry)
    store = paths.store(opts.data_root, opts.embedder, model.name)
    row_keys, key_rules = keys.normalise(cols["snip_id"])
    sources = {e: locate(store, e, opts.latent_format, opts.latents_root) for e in in_df02}
    store_record, broken = manifest.read(store / manifest.MANIFEST_NAME)
    recorded = store_record["files"]
    check = check_sources(sources, recorded, model, opts.z_schema, opts.include_sigma)
    latents = read_store({e: sources[e].path for e in in_df02 if e not in check.left_out}, opts.z_schema,
                         opts.include_sigma)
    changed = changed_since_recorded(sources, recorded, latents)
    index, index_info = index_latents(latents, in_df02)
    take, rules, unusable = index.match_keys(row_keys, key_rules)
    matching = LatentMatch(index=index, info=index_info, take=take, rules=rules, unusable=unusable)
    matched = matching.take >= 0
    found = {e: find_images(opts, e) for e in in_df02}
    with_image = has_image(row_keys, codes, [found[e][2] for e in in_df02])
    exp_plans = [
        plan_experiment(opts, e, e in selected, sources[e], found[e], recorded.get(sources[e].path.name), model,
                        latents.keys[e][0] if e in latents.keys else None, codes == k, matched, with_image,
                        manifest.unreadable(store_record, e), check.left_out.get(e, ""), edited=e in changed)
        for k, e in enumerate(in_df02)
    ]
    check_generated_columns(exp_plans, model, opts.z_schema, opts.include_sigma)
    check_backend(opts, exp_plans)
    unreadable_rows = has_image(row_keys, codes, [[p for p, _ in e.unreadable] for e in exp_plans]) & ~matched
    keep, unknown_flags = parse_flags(cols["use_embryo_flag"]) if opts.qc_filter else (np.ones(len(df02), bool), 0)
    warnings = ([] if len(df02) else [f"df02 {df02_path} has no rows"])
    if broken:
        warnings.append(f"cannot read {store / manifest.MANIFEST_NAME} ({broken}): its latent files are read as of "
                        "unknown origin, and the next run that writes the store starts a new manifest")
    warnings += _model_warnings(model_error, store, any(p.generating for p in exp_plans),
                               opts.latents_root)
    # what is said of a latent file this run re-embeds whole holds only if it is not rewritten (see warnings_after)
    redone = {p.experiment for p in exp_plans if p.action == "regenerate"}
    warnings += [w for e, w in check.warnings.items() if e not in redone] + \
        [changed[e] for e in in_df02 if e in changed and e not in redone]
    warnings += experiment_warnings(opts, exp_plans)
    warnings += [parquet_store.skip_reason(p) or f"{p} skipped" for src in sources.values() for p in src.skipped]
    if unknown_flags:
        warnings.append(f"{unknown_flags} use_embryo_flag value(s) are not true/false; treated as false")
    warnings += _repeated_rows(cols["snip_id"], row_keys, df02_path)
    now = InputsNow(opts=opts, df02_path=df02_path, df02=df02, snip_ids=cols["snip_id"], row_codes=codes,
                    experiments=exp_plans, model=model, read=latents)
    outputs, records, out_warnings = plan_outputs(opts, now=now, store=store)
    predicted_coverage = predict(exp_plans, codes, matched, with_image & ~unreadable_rows, keep)
    prefix = in_memory_prefix(next(o for o in outputs if o.kind is OutputKind.DF03), exp_plans, "predicted ")
    predicted = [] if prefix is None else coverage_warnings(predicted_coverage, opts.min_coverage, prefix)
    bad_rows = sum(int((r.nan_rows | r.inf_rows).sum()) for r in latents.rows.values())
    if bad_rows:
        predicted.append(f"{bad_rows} latent row(s) hold NaN or Inf and will be treated as missing")
    if index_info.hygiene.rows_not_one_number:
        predicted.append(odd_rows_warning(index_info.hygiene, "will be left unembedded"))
    if opts.generate_only:  # no df03: what would be said of it does not apply
        outputs, out_warnings, predicted = restrict_to_manifest(outputs), [], []
    for path in [o.path for o in outputs if o.writes] + [p.latent_path for p in exp_plans if p.generating]:
        check_writable(path)
    _note_interrupted_commits({store, *(o.path.parent for o in outputs)})
    plan = Build06Plan(
        options=opts, df02_path=df02_path, df03_path=paths.df03(opts.root), store=store, model=model,
        model_error=model_error, request=request, embedder_provider=registry.embedders[opts.embedder].provider,
        df02=df02, snip_ids=cols["snip_id"], row_keys=row_keys, key_rules=key_rules, row_experiments=row_exp, row_codes=codes,
        has_image=with_image, unreadable_rows=unreadable_rows, keep=keep, unknown_flags=unknown_flags,
        experiments=tuple(exp_plans), outputs=tuple(outputs), warnings=tuple(warnings + out_warnings),
        output_warnings=tuple(out_warnings), predicted=tuple(predicted),
        file_warnings={e: tuple(w for w in (check.warnings.get(e), changed.get(e)) if w) for e in in_df02},
        predicted_coverage=predicted_coverage, records=records, inputs=now, latents=latents, matching=matching,
    )
    return attrs.evolve(plan, snapshot=_snapshot(plan.watched()))


def _note_interrupted_commits(folders: Collection[Path]) -> None:
    """A killed run's half-renamed output set is completed by the next run that writes the
    folder, after this plan is made; a dry run only sees it as it is, so say so (a log
    warning, not a plan warning: --strict must not fail on what the run itself repairs)."""
    for folder in sorted(f for f in folders if (f / JOURNAL).is_file()):
        log.warning("outputs.interrupted", folder=str(folder),
                    reason="a killed run left these outputs half renamed; the next run that writes here completes "
                           "them first, and this plan describes the files as they are now")
