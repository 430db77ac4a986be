"""Build06 plan: resolve every input and decide, per experiment and output, what to do."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from morphseq_stages.embedders import EmbedderRequest, ModelInfo
from morphseq_stages.errors import UserError
from morphseq_stages.files import check_safe_id, check_writable, sha256_file
from morphseq_stages.registry import Provider, Registry
from morphseq_stages.stages import StagePlan

from . import keys, manifest, parquet_store
from .csvtext import TextTable, read_columns, read_text_table
from .formats import extra_outputs
from .latents import parse_z
from .options import Build06Options
from .store import StoreRead, read_store

log = structlog.get_logger()

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DF_DIR = Path("metadata") / "combined_metadata_files"
SNIP_DIR = Path("training_data") / "bf_embryo_snips"
GENERATING = ("generate", "top-up", "regenerate")


@attrs.frozen(kw_only=True)
class ExperimentPlan:
    experiment: str
    df02_rows: int
    latent_path: Path
    latent_exists: bool
    latent_rows: int | None
    snip_dir: Path | None
    snip_images: int | None
    rows_without_latent: int
    to_embed: tuple[Path, ...] = attrs.field(repr=False)
    recorded_model: str | None
    stale: bool
    action: str  # read | generate | top-up | regenerate | missing
    reason: str
    source_note: str = ""  # which latent file is read and why, when there was a choice

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment, "df02_rows": self.df02_rows,
            "latent_file": str(self.latent_path), "latent_exists": self.latent_exists,
            "latent_rows": self.latent_rows, "snip_dir": str(self.snip_dir) if self.snip_dir else None,
            "snip_images": self.snip_images, "rows_without_latent": self.rows_without_latent,
            "images_to_embed": len(self.to_embed), "recorded_model": self.recorded_model,
            "stale": self.stale, "action": self.action, "reason": self.reason, "source": self.source_note,
        }


@attrs.frozen(kw_only=True)
class OutputPlan:
    kind: str
    path: Path
    action: str  # write | overwrite | skip
    reason: str = ""
    experiment: str | None = None


@attrs.frozen(kw_only=True)
class Build06Plan(StagePlan):
    options: Build06Options
    df02_path: Path
    df03_path: Path
    store: Path
    model: ModelInfo
    model_error: str | None
    request: EmbedderRequest
    embedder_provider: Provider
    df02: TextTable = attrs.field(repr=False)
    snip_ids: pa.Array = attrs.field(repr=False)
    row_keys: pa.Array = attrs.field(repr=False)  # df02 snip ids normalised for matching
    key_rules: dict[str, int] = attrs.field(repr=False)  # normalisation rules that fired on them
    row_experiments: np.ndarray = attrs.field(repr=False)
    qc: pa.Array | None = attrs.field(repr=False)
    experiments: tuple[ExperimentPlan, ...]
    outputs: tuple[OutputPlan, ...]
    warnings: tuple[str, ...]
    latents: StoreRead = attrs.field(repr=False)
    snapshot: tuple = attrs.field(default=(), repr=False)  # what the plan saw of its files (see still_current)
    started: float = attrs.field(factory=time.monotonic, repr=False)

    @property
    def manifest_path(self) -> Path:
        return self.store / manifest.MANIFEST_NAME

    @property
    def generates(self) -> bool:
        return any(e.action in GENERATING for e in self.experiments)

    def output(self, kind: str) -> OutputPlan | None:
        return next((o for o in self.outputs if o.kind == kind), None)

    def watched(self) -> list[Path]:
        return [self.df02_path, self.manifest_path, *(e.latent_path for e in self.experiments),
                *(o.path for o in self.outputs)]

    def still_current(self) -> bool:
        """Whether no file the plan read or decided on changed since (another run may have
        written them before this one took the locks)."""
        return _snapshot(self.watched()) == self.snapshot

    def locks(self) -> list[tuple[Path, str]]:
        held = [(self.df03_path.parent / f".{self.df03_path.name}.lock", str(self.df03_path))]
        if self.generates:
            held.append((self.store / ".latents.lock", f"latent files in {self.store}"))
        copies = [o.path.parent for o in self.outputs if o.kind == "analysis" and o.action != "skip"]
        if copies:
            held.append((copies[0] / ".df03_copies.lock", f"analysis copies in {copies[0]}"))
        return held

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": "build06",
            "df02": str(self.df02_path), "df02_rows": len(self.df02),
            "df03": str(self.df03_path),
            "embedder": self.options.embedder,
            "model": {"name": self.model.name, "location": self.model.location,
                      "fingerprint": self.model.fingerprint, "error": self.model_error},
            "latent_store": str(self.store),
            "experiments": [e.as_dict() for e in self.experiments],
            "outputs": [{"kind": o.kind, "path": str(o.path), "action": o.action, "reason": o.reason}
                        for o in self.outputs],
            "warnings": list(self.warnings),
        }

    def render(self) -> str:
        rows = [("experiment", "df02 rows", "images", "latent rows", "to embed", "action", "why")]
        for e in self.experiments:
            rows.append((e.experiment, str(e.df02_rows), "-" if e.snip_images is None else str(e.snip_images),
                         "-" if e.latent_rows is None else str(e.latent_rows), str(len(e.to_embed)),
                         e.action, e.reason))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines = [f"Build06 plan: {self.df02_path} ({len(self.df02)} rows)",
                 f"model: {self.model.name} via embedder {self.options.embedder!r}"
                 + (f" ({self.model.location})" if self.model.location else ""),
                 f"latent store: {self.store}", ""]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
        lines += [f"  {e.experiment} reads {e.latent_path.name}: {e.source_note}" for e in self.experiments if e.source_note]
        lines.append("")
        lines.append("outputs:")
        for o in self.outputs:
            lines.append(f"  {o.action:<9} {o.path}" + (f"  ({o.reason})" if o.reason else ""))
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)


def _snapshot(paths: list[Path]) -> tuple:
    stamps = []
    for p in paths:
        try:
            st = os.stat(p)
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def _output(kind: str, path: Path, overwrite: bool, experiment: str | None = None) -> OutputPlan:
    if path.exists():
        if overwrite:
            return OutputPlan(kind=kind, path=path, action="overwrite", reason="--overwrite", experiment=experiment)
        return OutputPlan(kind=kind, path=path, action="skip", reason="exists; pass --overwrite to replace",
                          experiment=experiment)
    return OutputPlan(kind=kind, path=path, action="write", experiment=experiment)


def _row_experiments(table: TextTable, snip_ids: pa.Array, cols: dict[str, pa.Array]) -> np.ndarray:
    exp = cols.get("experiment_date")
    if exp is None:
        exp_arr = np.array([""] * len(table), dtype=object)
    else:
        exp_arr = pc.utf8_trim_whitespace(exp).to_numpy(zero_copy_only=False).astype(object)
    blank = np.flatnonzero(exp_arr == "")
    if len(blank):
        ids = snip_ids.take(pa.array(blank)).to_pylist()
        exp_arr[blank] = [keys.experiment_of(s) for s in ids]
    return exp_arr


def _snip_dir(opts: Build06Options, experiment: str) -> Path | None:
    for base in (opts.root, opts.data_root):
        d = base / SNIP_DIR / experiment
        if d.is_dir():
            return d
    return None


def _images(folder: Path | None) -> list[Path]:
    if folder is None:
        return []
    with os.scandir(folder) as it:
        found = [Path(e.path) for e in it if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)]
    for p in found:
        try:
            p.name.encode()
        except UnicodeEncodeError:
            raise UserError(f"snip file name {os.fsencode(p.name)!r} in {folder} is not valid UTF-8; "
                            "rename it") from None
    return sorted(found)


def make_plan(opts: Build06Options, registry: Registry) -> Build06Plan:
    spec = registry.embedder(opts.embedder)
    df02_path = opts.root / DF_DIR / "embryo_metadata_df02.csv"
    df03_path = df02_path.with_name("embryo_metadata_df03.csv")
    df02 = read_text_table(df02_path, what="df02")
    if "snip_id" not in df02.names:
        raise UserError(f"df02 {df02_path} has no snip_id column")
    wanted = ["snip_id", "experiment_date"] + (["use_embryo_flag"] if opts.qc_filter else [])
    cols = read_columns(df02, wanted)
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
    row_exp = _row_experiments(df02, snip_ids, cols)
    warnings: list[str] = [] if len(df02) else [f"df02 {df02_path} has no rows"]

    in_df02 = list(dict.fromkeys(e for e in row_exp if e))
    experiments = list(opts.experiments) if opts.experiments else in_df02
    for e in experiments:
        check_safe_id(e, "experiment")
        if opts.experiments and e not in in_df02:
            warnings.append(f"experiment {e} has no rows in df02")

    request = EmbedderRequest(model_name=opts.model_name, model_dir=opts.model_dir, data_root=opts.data_root,
                              device=opts.device, allow_pickle=opts.allow_pickle)
    model_error = None
    try:
        model = spec.describe(request)
    except UserError as exc:
        model, model_error = ModelInfo(name=request.folder_name or opts.model_name), str(exc)
    store = opts.data_root / "analysis" / "latent_embeddings" / opts.embedder / model.name
    recorded = manifest.load(store / manifest.MANIFEST_NAME)["files"]

    row_keys, key_rules = keys.normalise(snip_ids)
    sources = {e: parquet_store.locate(store, e, opts.latent_format, opts.latents_root) for e in experiments}
    for src in sources.values():
        warnings += [f"{p} has no {p.name}{parquet_store.SENTINEL_SUFFIX} sentinel; skipped" for p in src.skipped]
    latents = read_store({e: sources[e].path for e in experiments}, opts.z_schema, opts.include_sigma)
    exp_plans = [
        _plan_experiment(opts, e, row_keys, row_exp, sources[e], recorded.get(sources[e].path.name), model,
                         latents.keys[e][0] if e in latents.keys else None)
        for e in experiments
    ]
    missing = [p.experiment for p in exp_plans if p.action == "missing"]
    if missing:
        warnings.append(f"no latent file for {', '.join(missing)}"
                        + ("" if opts.generate_missing_latents else " (pass --generate-missing-latents to embed them)")
                        + "; df03 will lack their embeddings")
    for p in exp_plans:
        if p.stale:
            warnings.append(f"{p.latent_path.name} was written by another model ({p.recorded_model})")
    if any(p.action in GENERATING for p in exp_plans) and model_error:
        raise UserError(model_error)

    outputs = [_output("df03", df03_path, opts.overwrite),
               _output("unembedded", df03_path.with_name("embryo_metadata_df03_unembedded.csv"), opts.overwrite),
               _output("sidecar", df03_path.with_suffix(".json"), opts.overwrite)]
    if opts.train_name:
        train_in = opts.root / "training_data" / opts.train_name / "embryo_metadata_df_train.csv"
        train_out = train_in.with_name("embryo_metadata_with_embeddings.csv")
        if train_in.is_file():
            outputs.append(_output("training", train_out, opts.overwrite))
        else:
            warnings.append(f"training metadata not found: {train_in}")
            outputs.append(OutputPlan(kind="training", path=train_out, action="skip", reason=f"{train_in} not found"))
    if opts.export_analysis_copies:
        folder = opts.data_root / "metadata" / "metadata_n_embeddings" / model.name
        for p in exp_plans:
            if p.df02_rows:
                outputs.append(_output("analysis", folder / f"df03_{p.experiment}.csv", opts.overwrite, p.experiment))
    if any(p.action in GENERATING for p in exp_plans):
        outputs.append(OutputPlan(kind="manifest", path=store / manifest.MANIFEST_NAME,
                                  action="overwrite" if (store / manifest.MANIFEST_NAME).exists() else "write",
                                  reason="updated for each latent file written"))
    outputs += extra_outputs(outputs, opts, _output)
    for o in outputs:
        if o.action != "skip":
            check_writable(o.path)
    for p in exp_plans:
        if p.action in GENERATING:
            check_writable(p.latent_path)

    qc = cols.get("use_embryo_flag")
    plan = Build06Plan(
        options=opts, df02_path=df02_path, df03_path=df03_path, store=store, model=model,
        model_error=model_error, request=request, embedder_provider=registry.embedders[opts.embedder].provider,
        df02=df02, snip_ids=snip_ids, row_keys=row_keys, key_rules=key_rules, row_experiments=row_exp, qc=qc,
        experiments=tuple(exp_plans), outputs=tuple(outputs), warnings=tuple(warnings), latents=latents,
    )
    return attrs.evolve(plan, snapshot=_snapshot(plan.watched()))


def _plan_experiment(opts, experiment, row_keys, row_exp, source, record, model, file_keys) -> ExperimentPlan:
    latent_path = source.path
    rows_mask = row_exp == experiment
    n_rows = int(rows_mask.sum())
    exists = file_keys is not None
    latent_keys: set[str] = set()
    latent_rows = None
    if exists:
        latent_rows = len(file_keys)
        latent_keys = set(file_keys.to_pylist())
    snip_dir = _snip_dir(opts, experiment)
    images = _images(snip_dir)
    exp_keys = row_keys.filter(pa.array(rows_mask)).to_pylist() if n_rows else []
    rows_without = sum(1 for k in exp_keys if k not in latent_keys)
    image_keys = keys.normalise(pa.array([p.name for p in images], pa.string()))[0].to_pylist()
    new_images = tuple(p for p, k in zip(images, image_keys, strict=True) if k not in latent_keys)

    recorded_model = record.get("model_fingerprint") if record else None
    stale = bool(exists and recorded_model and model.fingerprint and recorded_model != model.fingerprint)
    if record and exists and latent_path.is_file() and record.get("sha256") and record["sha256"] != sha256_file(latent_path):
        log.warning("latents.changed_since_recorded", experiment=experiment, path=str(latent_path))

    gen = opts.generate_missing_latents and source.writable
    if not exists:
        if gen and images:
            action, reason, todo = "generate", "no latent file", tuple(images)
        elif gen:
            action, reason, todo = "missing", "no latent file and no snip images", ()
        else:
            action, reason, todo = "missing", "no latent file", ()
    elif gen and opts.overwrite and images:
        action, reason, todo = "regenerate", "forced by --overwrite", tuple(images)
    elif stale:
        action, todo = "read", ()
        reason = "written by another model" + ("; pass --overwrite to regenerate" if gen else "")
    elif new_images and gen:
        action, reason, todo = "top-up", f"{len(new_images)} new snips", new_images
    elif new_images:
        action, reason, todo = "read", f"{len(new_images)} snips not yet embedded", ()
    else:
        action, reason, todo = "read", "complete", ()
    return ExperimentPlan(
        experiment=experiment, df02_rows=n_rows, latent_path=latent_path, latent_exists=exists,
        latent_rows=latent_rows, snip_dir=snip_dir, snip_images=len(images) if snip_dir else None,
        rows_without_latent=rows_without, to_embed=todo, recorded_model=recorded_model, stale=stale,
        action=action, reason=reason, source_note=source.note,
    )
