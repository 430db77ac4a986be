"""Build06 plan: resolve every input and decide, per experiment and output, what to do.

df03 is canonical: every experiment of df02 is read (its latent file, its snip folder);
``--experiments`` only limits which experiments are generated or topped up and which
analysis copies are written.
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
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from morphseq_stages.embedders import EmbedderRequest, ModelInfo, ModelUnavailable
from morphseq_stages.errors import StrictFailure, UserError
from morphseq_stages.files import JOURNAL, check_safe_id, check_writable
from morphseq_stages.registry import Provider, Registry
from morphseq_stages.stages import StagePlan

from . import declared, keys, manifest, parquet_store, paths
from .csvtext import TextTable, read_table_columns
from .index import LatentMatch, index_latents, odd_rows_warning
from .latents import LATENT_FORMATS, latent_file_name, parse_z
from .options import Build06Options
from .outputs import InputsNow, OutputPlan, nothing_to_merge, plan_outputs
from .sources import changed_since_recorded, check_sources
from .store import StoreRead, read_store

log = structlog.get_logger()

ExperimentAction = Literal["read", "generate", "top-up", "regenerate", "missing"]
GENERATING: tuple[ExperimentAction, ...] = ("generate", "top-up", "regenerate")
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0", ""}


@attrs.frozen(kw_only=True)
class ExperimentPlan:
    experiment: str
    selected: bool  # named by --experiments (every experiment when it is not given)
    df02_rows: int
    latent_path: Path
    latent_exists: bool
    latent_rows: int | None
    snip_dir: Path | None  # the folder found
    image_dir: Path  # where its images are (or would be looked for first)
    snip_images: int | None
    rows_without_latent: int
    rows_without_image: int  # rows that can never be embedded
    to_embed: tuple[Path, ...] = attrs.field(repr=False)
    unreadable: tuple[tuple[Path, str], ...] = attrs.field(repr=False)  # (image, error) recorded, not tried again
    recorded_model: str | None
    recorded_name: str | None
    unknown_origin: bool  # a latent file with no manifest entry
    stale: bool
    action: ExperimentAction
    reason: str
    source_note: str = ""  # which latent file is read and why, when there was a choice
    left_out: str = ""  # why its latent file is not merged (another model's, other z columns; see sources)
    changed_since_recorded: bool = False  # a store file whose sha256 is not the manifest's

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment, "selected": self.selected, "df02_rows": self.df02_rows,
            "latent_file": str(self.latent_path), "latent_exists": self.latent_exists,
            "latent_rows": self.latent_rows, "snip_dir": str(self.snip_dir) if self.snip_dir else None,
            "snip_images": self.snip_images, "rows_without_latent": self.rows_without_latent,
            "rows_without_image": self.rows_without_image, "images_to_embed": len(self.to_embed),
            "images_unreadable": len(self.unreadable),
            "recorded_model": self.recorded_model, "recorded_model_name": self.recorded_name,
            "unknown_origin": self.unknown_origin, "stale": self.stale, "action": self.action,
            "reason": self.reason, "source": self.source_note, "left_out": self.left_out or None,
        }


@attrs.frozen(kw_only=True)
class MissingModel:
    """A model ``describe`` could not find: the name its latent files are under, nothing more."""

    name: str
    location: None = None
    fingerprint: None = None
    config_sha256: None = None


@attrs.frozen(kw_only=True)
class Build06Plan(StagePlan):
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
    outputs: tuple[OutputPlan, ...]
    warnings: tuple[str, ...]  # certain now
    output_warnings: tuple[str, ...]  # those of ``warnings`` about outputs left out of date
    predicted: tuple[str, ...]  # the coverage warnings this run's merge is expected to give
    prediction: dict[str, Any]
    records: dict[str, Any] = attrs.field(repr=False)  # sidecar contents as found, by output kind
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
        return any(e.action in GENERATING for e in self.experiments)

    @overload
    def output(self, kind: Literal["df03", "unembedded", "sidecar"]) -> OutputPlan: ...

    @overload
    def output(self, kind: str) -> OutputPlan | None: ...

    def output(self, kind: str) -> OutputPlan | None:
        """The planned output of ``kind``; df03, its listing and its sidecar are always planned."""
        return next((o for o in self.outputs if o.kind == kind), None)

    def watched(self) -> list[Path]:
        # each experiment's store files in both formats: a job may have written the one not read
        store = [self.store / latent_file_name(e.experiment, f) for e in self.experiments for f in LATENT_FORMATS]
        return [self.df02_path, self.manifest_path, *(e.latent_path for e in self.experiments), *store,
                *(o.path for o in self.outputs)]

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

    def _folders(self) -> dict[tuple[Path, str], list[OutputPlan]]:
        """The outputs by the lock of their folder: df03's (with its listing, sidecar, typed
        copies and report), the analysis copies' and the training join's (each with its
        typed copies and their records); one mechanism for every folder (SPEC §12)."""
        folders: dict[tuple[Path, str], list[OutputPlan]] = {}
        for o in self.outputs:
            base = str(o.kind).partition(".")[0]
            if base == "manifest":
                continue  # the latent store: see ``locks``
            lock = (paths.copies_lock(o.path.parent) if base == "analysis"
                    else paths.training_lock(o.path.parent) if base == "training"
                    else paths.output_lock(self.df03_path))
            folders.setdefault(lock, []).append(o)
        return folders

    def locks(self) -> list[tuple[Path, str]]:
        if self.options.generate_only:
            return []  # it takes the store lock only while it writes (see declared.store_write)
        held = [paths.output_lock(self.df03_path)]
        if self.generates:
            held.append(paths.store_lock(self.store))
        held += [lock for lock, outs in self._folders().items()
                 if lock not in held and any(o.action != "skip" for o in outs)]
        return held

    def as_dict(self) -> dict[str, Any]:
        df03 = self.output("df03")
        return {
            "stage": "build06",
            "df02": str(self.df02_path), "df02_rows": len(self.df02),
            "df03": str(self.df03_path),
            "df03_status": {"status": df03.freshness.status, "reasons": list(df03.freshness.reasons),
                            "action": df03.action},
            "selected_experiments": list(self.selected),
            "embedder": self.options.embedder,
            "model": {"name": self.model.name, "location": self.model.location,
                      "fingerprint": self.model.fingerprint, "error": self.model_error},
            "latent_store": str(self.store),
            "experiments": [e.as_dict() for e in self.experiments],
            "prediction": self.prediction,
            "outputs": [o.as_dict() for o in self.outputs],
            "warnings": list(self.warnings) + list(self.predicted),
            **declared.as_dict(self),
        }

    def render(self) -> str:
        from .console import render_plan

        return render_plan(self)


def _snapshot(paths: list[Path]) -> tuple:
    stamps: list[tuple[int, int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def parse_flags(values: pa.Array) -> tuple[np.ndarray, int]:
    """``use_embryo_flag`` as booleans (bool, 0/1, true/false/t/f/yes/no), and how many were neither."""
    text = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    true = pc.is_in(text, value_set=pa.array(sorted(_TRUE))).to_numpy(zero_copy_only=False)
    known = pc.is_in(text, value_set=pa.array(sorted(_TRUE | _FALSE))).to_numpy(zero_copy_only=False)
    return true, int((~known).sum())


def _images(opts: Build06Options, experiment: str) -> tuple[Path | None, Path, list[Path]]:
    """(the snip folder found, where the images are looked for first, the images in it)."""
    candidates = paths.snip_dir_candidates(opts.root, opts.data_root, experiment)
    found = next((d for d in candidates if d.is_dir()), None)
    if found is None:
        return None, candidates[0], []
    with os.scandir(found) as it:
        images = [Path(e.path) for e in it if e.is_file() and e.name.lower().endswith(paths.IMAGE_SUFFIXES)]
    for p in images:
        try:
            p.name.encode()
        except UnicodeEncodeError:
            raise UserError(f"snip file name {os.fsencode(p.name)!r} in {found} is not valid UTF-8; "
                            "rename it") from None
    return found, found, sorted(images)


def _read_df02(opts: Build06Options, df02_path: Path) -> tuple[TextTable, dict[str, pa.Array], np.ndarray]:
    wanted = ["snip_id", "experiment_date"] + (["use_embryo_flag"] if opts.qc_filter else [])
    df02, cols = read_table_columns(df02_path, wanted, what="df02")
    if "snip_id" not in df02.names:
        raise UserError(f"df02 {df02_path} has no snip_id column")
    if opts.qc_filter and "use_embryo_flag" not in cols:
        raise UserError(f"--qc-filter needs a use_embryo_flag column, and df02 {df02_path} has none")
    snip_ids = cols["snip_id"]
    bad = pc.match_substring_regex(snip_ids, r"[/\\\x00-\x1f\x7f]")
    if len(snip_ids) and pc.any(bad).as_py():
        example = snip_ids.filter(bad)[0].as_py()
        raise UserError(f"unsafe snip_id {example!r} in {df02_path}: it must not contain '/', '\\', NUL "
                        "or control characters")
    stale_z = [n for n in df02.names if parse_z(n)]
    if stale_z:
        raise UserError(f"df02 {df02_path} already holds z column {stale_z[0]!r} ({len(stale_z)} in all): "
                        "df03 would repeat its names; remove them from df02 (is it a df03?)")
    return df02, cols, keys.row_experiments(snip_ids, cols.get("experiment_date"))


def strict_failure(warnings: list[str], written: list[str]) -> StrictFailure:
    done = f"written before the failure: {', '.join(written)}" if written else "nothing written"
    return StrictFailure(f"--strict: {len(warnings)} warning(s), {done}: {' | '.join(warnings)}")


def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _selected(opts: Build06Options, in_df02: list[str], df02_path: Path) -> set[str]:
    if not opts.experiments:
        return set(in_df02)
    absent = [e for e in opts.experiments if e not in in_df02]
    if absent:
        close = difflib.get_close_matches(absent[0], in_df02, n=5, cutoff=0.5) or in_df02[:5]
        raise UserError(f"--experiments {absent[0]} has no rows in df02 {df02_path}; closest experiments there: "
                        f"{', '.join(close) or '(none)'}")
    return set(opts.experiments)


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


def _codes(row_exp: np.ndarray, names: list[str]) -> np.ndarray:
    """Each row's experiment as its index in ``names`` (-1: none), so that masks compare integers."""
    index = pc.index_in(pa.array(row_exp, pa.string()), value_set=pa.array(names, pa.string()))
    return index.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _has_image(row_keys: pa.Array, codes: np.ndarray, images: list[list[Path]]) -> np.ndarray:
    out = np.zeros(len(row_keys), bool)
    for k, found in enumerate(images):
        rows = np.flatnonzero(codes == k)
        if not len(rows) or not found:
            continue
        image_keys = pc.unique(keys.normalise(pa.array([p.name for p in found], pa.string()))[0])
        pos, _ = keys.match(row_keys.take(pa.array(rows)), image_keys, *keys.channel_free_index(image_keys))
        out[rows] = pos >= 0
    return out


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
    df02, cols, row_exp = _read_df02(opts, df02_path)
    in_df02 = [check_safe_id(e, "experiment") for e in dict.fromkeys(row_exp) if e]
    codes = _codes(row_exp, in_df02)
    selected = _selected(opts, in_df02, df02_path)
    model, model_error, request = _describe_model(opts, registry)
    store = paths.store(opts.data_root, opts.embedder, model.name)
    row_keys, key_rules = keys.normalise(cols["snip_id"])
    sources = {e: parquet_store.locate(store, e, opts.latent_format, opts.latents_root) for e in in_df02}
    store_record, broken = manifest.read(store / manifest.MANIFEST_NAME)
    recorded = store_record["files"]
    check = check_sources(sources, recorded, model.name, model.fingerprint, opts.z_schema, opts.include_sigma)
    latents = read_store({e: sources[e].path for e in in_df02 if e not in check.left_out}, opts.z_schema,
                         opts.include_sigma)
    changed = changed_since_recorded(sources, recorded, latents)
    index, index_info = index_latents(latents, in_df02)
    take, rules, unusable = index.match_keys(row_keys, key_rules)
    matching = LatentMatch(index=index, info=index_info, take=take, rules=rules, unusable=unusable)
    matched = matching.take >= 0
    found = {e: _images(opts, e) for e in in_df02}
    has_image = _has_image(row_keys, codes, [found[e][2] for e in in_df02])
    exp_plans = [
        attrs.evolve(
            _plan_experiment(opts, e, e in selected, sources[e], found[e], recorded.get(sources[e].path.name), model,
                             latents.keys[e][0] if e in latents.keys else None, codes == k, matched, has_image,
                             manifest.unreadable(store_record, e), check.left_out.get(e, "")),
            changed_since_recorded=e in changed)
        for k, e in enumerate(in_df02)
    ]
    unreadable_rows = _has_image(row_keys, codes, [[p for p, _ in e.unreadable] for e in exp_plans]) & ~matched
    keep, unknown_flags = parse_flags(cols["use_embryo_flag"]) if opts.qc_filter else (np.ones(len(df02), bool), 0)
    warnings = ([] if len(df02) else [f"df02 {df02_path} has no rows"])
    if broken:
        warnings.append(f"cannot read {store / manifest.MANIFEST_NAME} ({broken}): its latent files are read as of "
                        "unknown origin, and the next run that writes the store starts a new manifest")
    warnings += _model_warnings(model_error, store, any(p.action in GENERATING for p in exp_plans),
                               opts.latents_root)
    warnings += list(check.warnings) + [changed[e] for e in in_df02 if e in changed]
    warnings += _experiment_warnings(opts, exp_plans)
    warnings += [parquet_store.skip_reason(p) or f"{p} skipped" for src in sources.values() for p in src.skipped]
    if unknown_flags:
        warnings.append(f"{unknown_flags} use_embryo_flag value(s) are not true/false; treated as false")
    now = InputsNow(opts=opts, df02_path=df02_path, df02=df02, snip_ids=cols["snip_id"], row_codes=codes,
                    experiments=exp_plans, model=model, read=latents)
    outputs, records, out_warnings = plan_outputs(opts, now=now, store=store)
    prefix = in_memory_prefix(next(o for o in outputs if o.kind == "df03"), exp_plans, "predicted ")
    prediction, predicted = predict(opts, exp_plans, codes, matched, has_image & ~unreadable_rows, keep, prefix)
    bad_rows = sum(int((r.nan_rows | r.inf_rows).sum()) for r in latents.rows.values())
    if bad_rows:
        predicted.append(f"{bad_rows} latent row(s) hold NaN or Inf and will be treated as missing")
    if index_info["hygiene"]["rows_not_one_number"]:
        predicted.append(odd_rows_warning(index_info["hygiene"], "will be left unembedded"))
    if opts.generate_only:  # no df03: what would be said of it does not apply
        outputs, out_warnings, predicted = declared.restrict(outputs), [], []
    for path in [o.path for o in outputs if o.action != "skip"] + [p.latent_path for p in exp_plans
                                                                   if p.action in GENERATING]:
        check_writable(path)
    _note_interrupted_commits({store, *(o.path.parent for o in outputs)})
    plan = Build06Plan(
        options=opts, df02_path=df02_path, df03_path=paths.df03(opts.root), store=store, model=model,
        model_error=model_error, request=request, embedder_provider=registry.embedders[opts.embedder].provider,
        df02=df02, snip_ids=cols["snip_id"], row_keys=row_keys, key_rules=key_rules, row_experiments=row_exp, row_codes=codes,
        has_image=has_image, unreadable_rows=unreadable_rows, keep=keep, unknown_flags=unknown_flags,
        experiments=tuple(exp_plans), outputs=tuple(outputs), warnings=tuple(warnings + out_warnings),
        output_warnings=tuple(out_warnings), predicted=tuple(predicted),
        prediction=prediction, records=records, inputs=now, latents=latents, matching=matching,
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


def settle(plan: Build06Plan, written: Collection[str]) -> Build06Plan:
    """The plan as generation left the disk: a latent file this run wrote is this model's
    (merged, whatever the file it replaced was); an experiment whose latent file this run
    meant to write but did not (no image could be read, a refused top-up) is read as it is,
    and every output is judged again from the files on disk, not from what the run meant to do."""
    if any(e.left_out and str(e.latent_path) in written for e in plan.experiments):
        plan = attrs.evolve(plan, experiments=tuple(
            attrs.evolve(e, left_out="") if str(e.latent_path) in written else e for e in plan.experiments))
    missed = {e.experiment for e in plan.experiments if e.action in GENERATING and str(e.latent_path) not in written}
    if not missed:
        return plan
    exps = tuple(attrs.evolve(e, action="read" if e.latent_exists else "missing", to_embed=(),
                              reason=f"{e.reason}; nothing written by this run")
                 if e.experiment in missed else e for e in plan.experiments)
    return _judged(plan, exps)


def as_generated(plan: Build06Plan) -> Build06Plan:
    """The plan once the latent files generation wrote are read (``plan.inputs.read``):
    each is an input like any other, and every output is judged against the bytes now on
    disk, not against what the run meant to do (a re-embedding into the same bytes leaves
    df03 current)."""
    if not any(e.action in GENERATING for e in plan.experiments):
        return plan
    exps = tuple(attrs.evolve(e, action="read", latent_exists=True, to_embed=(),
                              reason=f"{e.reason}; written by this run")
                 if e.action in GENERATING else e for e in plan.experiments)
    return _judged(plan, exps)


def _judged(plan: Build06Plan, exps: tuple[ExperimentPlan, ...]) -> Build06Plan:
    now = attrs.evolve(plan.inputs, experiments=exps)
    outputs, records, out_warnings = plan_outputs(plan.options, now=now, store=plan.store)
    kept = [w for w in plan.warnings if w not in plan.output_warnings]
    return attrs.evolve(plan, experiments=exps, outputs=tuple(outputs), records=records, inputs=now,
                        warnings=tuple(kept + out_warnings), output_warnings=tuple(out_warnings))


def _experiment_warnings(opts: Build06Options, plans: list[ExperimentPlan]) -> list[str]:
    warnings = []
    missing = [p for p in plans if p.action == "missing"]
    if opts.generate_only:  # no df03 is written; the other experiments are other jobs' work
        missing = [p for p in missing if p.selected]
    if missing:
        if opts.generate_missing_latents or opts.overwrite_latents:
            names = ", ".join(f"{p.experiment} ({_why_missing(p)})" for p in missing)
        else:
            names = f"{', '.join(p.experiment for p in missing)} (pass --generate-missing-latents to embed them)"
        # with no latent file at all, df03 is kept as it is (see outputs.plan_outputs)
        consequence = ("none generated by this run (--generate-only)" if opts.generate_only
                       else "nothing to merge" if nothing_to_merge(plans) else "df03 will lack their embeddings")
        warnings.append(f"no latent file for {names}; {consequence}")
    _log_unknown_origin(plans)
    return warnings


def _log_unknown_origin(plans: list[ExperimentPlan]) -> None:
    """Latent files with no manifest entry (a store written before the manifest, or by hand)
    whose rows name no other model (see sources) are merged, and logged once."""
    origin = [p.latent_path.name for p in plans if p.unknown_origin and not p.left_out]
    if origin:
        log.warning("latents.unknown_origin", files=origin,
                    message=f"{len(origin)} latent file(s) of unknown origin (no entry in {manifest.MANIFEST_NAME}), "
                            f"merged as this model's: {', '.join(origin[:10])}{' ...' if len(origin) > 10 else ''}")


def _why_missing(p: ExperimentPlan) -> str:
    if not p.selected:
        return "not selected by --experiments"
    if p.unreadable:
        return f"its {len(p.unreadable)} snip image(s) could not be read, e.g. {p.unreadable[0][0]}"
    return f"no snip images in {p.image_dir}" if not p.snip_images else p.reason


def coverage(matched: np.ndarray, keep: np.ndarray, codes: np.ndarray, experiments: list[str],
             selected: set[str]) -> dict[str, Any]:
    """Coverage over the df03 rows: overall, over the selected experiments, per experiment."""
    def share(mask: np.ndarray) -> float | None:
        n = int(mask.sum())
        return float((mask & matched).sum() / n) if n else None

    in_sel = np.isin(codes, [k for k, e in enumerate(experiments) if e in selected])
    rows = np.bincount(codes[keep & (codes >= 0)], minlength=len(experiments))
    hits = np.bincount(codes[keep & matched & (codes >= 0)], minlength=len(experiments))
    per_exp = {e: {"rows": int(rows[k]), "matched": int(hits[k]),
                   "coverage": float(hits[k] / rows[k]) if rows[k] else None} for k, e in enumerate(experiments)}
    return {"overall": share(keep), "selected": share(keep & in_sel), "rows": int(keep.sum()),
            "matched": int((keep & matched).sum()), "per_experiment": per_exp}


def coverage_warnings(cov: dict[str, Any], min_coverage: float, prefix: str = "") -> list[str]:
    out = []
    if cov["overall"] is not None and cov["overall"] < min_coverage:
        out.append(f"{prefix}coverage {cov['overall']:.1%} is below --min-coverage {min_coverage:.1%}")
    low = [f"{e} ({v['coverage']:.1%})" for e, v in cov["per_experiment"].items()
           if v["coverage"] is not None and v["coverage"] < min_coverage]
    if low and len(cov["per_experiment"]) > 1:
        out.append(f"{prefix}experiments below --min-coverage: {', '.join(low)}")
    return out


def in_memory_prefix(df03: OutputPlan, experiments: Sequence[ExperimentPlan], prefix: str = "") -> str | None:
    """How the coverage warnings of this run's merge must be worded: ``prefix`` when df03 is
    written (or current: the merge is the file), a rewrite's "if" naming the flag when df03
    is left out of date, None when no run would rewrite it (there is nothing to merge)."""
    if df03.action != "skip" or df03.freshness.status in ("current", "new"):
        return prefix
    if nothing_to_merge(experiments):
        return None
    flag = "if df03 were rewritten (--overwrite), its "
    return f"{prefix.rstrip()}, {flag}" if prefix else flag


def recorded_coverage(plan: Build06Plan) -> dict[str, Any] | None:
    """The coverage of df03 as on disk, from its sidecar (whose sha256 of df03 was checked:
    an out-of-date df03 is the file the sidecar describes); the selected experiments' share
    recomputed for this run's selection. None when the sidecar does not describe df03."""
    if plan.output("df03").freshness.status != "out-of-date":
        return None
    side = plan.records["df03"]
    per_exp = side.get("coverage", {}).get("per_experiment")
    if not isinstance(per_exp, dict) or "overall" not in side.get("coverage", {}):
        return None
    selected = set(plan.selected)
    picked = [v for e, v in per_exp.items() if e in selected]
    rows, hits = sum(v["rows"] for v in picked), sum(v["matched"] for v in picked)
    counts = side.get("counts", {})
    return {"overall": side["coverage"]["overall"], "selected": hits / rows if rows else None,
            "rows": counts.get("df03_rows"), "matched": counts.get("rows_matched"),
            "never_embeddable": counts.get("rows_never_embeddable"), "per_experiment": per_exp}


def predict(opts: Build06Options, plans: list[ExperimentPlan], codes: np.ndarray, matched: np.ndarray,
            has_image: np.ndarray, keep: np.ndarray, prefix: str | None = "predicted "
            ) -> tuple[dict[str, Any], list[str]]:
    """Coverage after this run's generation, if every image decodes; the warnings it would give
    (worded with ``prefix``; none when it is None, see ``in_memory_prefix``)."""
    after = matched.copy()
    for k, p in enumerate(plans):
        rows = codes == k
        if p.action == "regenerate":
            after[rows] = has_image[rows]
        elif p.action in GENERATING:
            after[rows] |= has_image[rows]
    cov = coverage(after, keep, codes, [p.experiment for p in plans], {p.experiment for p in plans if p.selected})
    never = int((keep & ~has_image & ~matched).sum())
    prediction = {"coverage": cov["overall"], "coverage_selected": cov["selected"],
                  "rows_never_embeddable": never, "rows_unembedded": cov["rows"] - cov["matched"]}
    return prediction, [] if prefix is None else coverage_warnings(cov, opts.min_coverage, prefix)


def _plan_experiment(opts: Build06Options, experiment: str, selected: bool, source: parquet_store.LatentSource,
                     found: tuple[Path | None, Path, list[Path]], record: dict[str, Any] | None,
                     model: ModelInfo | MissingModel, file_keys: pa.Array | None, rows_mask: np.ndarray,
                     matched: np.ndarray, has_image: np.ndarray, known_bad: dict[str, dict[str, Any]],
                     left_out: str = "") -> ExperimentPlan:
    snip_dir, image_dir, all_images = found
    bad = tuple((p, str(known_bad[p.name].get("error", ""))) for p in all_images
                if manifest.still_unreadable(p, known_bad.get(p.name)))
    bad_paths = {p for p, _ in bad}
    images = [p for p in all_images if p not in bad_paths]
    latent_path = source.path
    exists = file_keys is not None or bool(left_out)
    latent_keys = set(file_keys.to_pylist()) if file_keys is not None else set()
    image_keys = keys.normalise(pa.array([p.name for p in images], pa.string()))[0].to_pylist()
    new_images = tuple(p for p, k in zip(images, image_keys, strict=True) if k not in latent_keys)
    recorded_model = record.get("model_fingerprint") if record else None
    stale = bool(exists and recorded_model and model.fingerprint and recorded_model != model.fingerprint)
    action, reason, todo = _action(opts, selected, source.writable, exists, left_out, images, new_images)
    if bad:
        reason = reason.removesuffix(" and no snip images") + (f"; {len(bad)} snip image(s) could not be read by an earlier run (listed in "
                   f"{manifest.MANIFEST_NAME}), not tried again until they change")
    note = source.note
    if action == "regenerate" and latent_path.suffix != f".{opts.latent_format}":
        # re-embedding writes the asked format; the other file stays, read only if its format is asked for
        latent_path = latent_path.with_name(latent_file_name(experiment, opts.latent_format))
        note = f"re-embedded into {latent_path.name} (--latent-format {opts.latent_format}); {source.path.name} is left as it was"
    return ExperimentPlan(
        experiment=experiment, selected=selected, df02_rows=int(rows_mask.sum()), latent_path=latent_path,
        latent_exists=exists, latent_rows=len(file_keys) if file_keys is not None else None, snip_dir=snip_dir,
        left_out=left_out,
        image_dir=image_dir, snip_images=len(all_images) if snip_dir else None,
        rows_without_latent=int((rows_mask & ~matched).sum()), rows_without_image=int((rows_mask & ~has_image).sum()),
        to_embed=todo, unreadable=bad, recorded_model=recorded_model, recorded_name=record.get("model_name") if record else None,
        unknown_origin=exists and source.writable and not record, stale=stale, action=action, reason=reason, source_note=note,
    )


def _action(opts: Build06Options, selected: bool, writable: bool, exists: bool, left_out: str, images: list[Path],
            new_images: tuple[Path, ...]) -> tuple[ExperimentAction, str, tuple[Path, ...]]:
    """What to do with one experiment's latent file; only a selected one in the store is ever
    written, and one left out of the merge (another model's) only re-embedded, never topped up."""
    gen = selected and writable and (opts.generate_missing_latents or opts.overwrite_latents)
    aside = "" if selected else " (not selected by --experiments)"
    if not exists:
        if gen and images:
            return "generate", "no latent file", tuple(images)
        return "missing", "no latent file" + (" and no snip images" if gen else aside), ()
    if gen and opts.overwrite_latents and images:
        return "regenerate", "--overwrite-latents", tuple(images)
    if left_out:
        hint = "; pass --overwrite-latents to re-embed it" if writable else ""
        return "read", f"not merged: {left_out}{hint}", ()
    if new_images and gen:
        return "top-up", f"{len(new_images)} snip(s) without a latent row", new_images
    if new_images:
        hint = "" if selected else aside
        hint = hint or ("" if opts.generate_missing_latents else "; pass --generate-missing-latents to embed them")
        return "read", f"{len(new_images)} snips not yet embedded{hint}", ()
    return "read", "complete", ()
