"""Build06 generate phase: embed the snips that have no latent row yet."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import structlog

from morphseq_stages.embedders import Embedder, ModelInfo
from morphseq_stages.errors import StrictFailure, UserError
from morphseq_stages.executors import DaskExecutor, LocalExecutor
from morphseq_stages.files import atomic_write, atomic_write_bytes, staged_writes
from morphseq_stages.registry import Registry

from . import manifest, parquet_store
from .csvtext import read_text_table
from .latents import write_latents
from .plan import Build06Plan, strict_failure
from .provenance import plain
from .records import ExperimentPlan, GenerateReport
from .sources import top_up_refusal

if TYPE_CHECKING:
    import numpy as np


log = structlog.get_logger()


def resolve_device(asked: str) -> str:
    try:
        import torch
    except ImportError:
        raise UserError("generating latents needs torch: pip install torch (the CPU build will do)") from None

    available = torch.cuda.is_available()
    if asked == "cuda" and not available:
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    device = asked if asked != "auto" else ("cuda" if available else "cpu")
    reason = "asked for" if asked != "auto" else ("a CUDA device is available" if available else "no CUDA device found")
    log.info("device.chosen", device=device, reason=reason)
    return device


@contextlib.contextmanager
def _held(plan: Build06Plan, exp: ExperimentPlan) -> Iterator[bool]:
    yield True  # a run holds the store lock from the start (see Build06Plan.locks)


def generate(plan: Build06Plan, registry: Registry,
             meanwhile: Callable[[Build06Plan, ExperimentPlan], Path | None] = lambda plan, exp: None,
             guard: Callable[[Build06Plan, ExperimentPlan], contextlib.AbstractContextManager[bool]] = _held
             ) -> GenerateReport:
    """Embed the snips the plan names, experiment by experiment. ``meanwhile``: a latent file
    another job wrote since the plan (then the experiment is left as it is); ``guard``:
    around writing one latent file and the manifest, yields whether to write (see
    ``generate_only`` for both)."""
    import time

    if plan.options.strict:
        check_strict(plan)
    todo = [e for e in plan.experiments if e.generating]
    refused = [str(e.latent_path) for e in plan.experiments if e.not_topped_up]  # by the plan (it said why)
    if not todo:
        if plan.options.generate_missing_latents or plan.options.overwrite_latents:
            log.info("latents.nothing_to_generate")
        return GenerateReport(skipped=tuple(refused))
    opts = plan.options
    start = time.monotonic()
    request = attrs.evolve(plan.request, device=resolve_device(opts.device))
    model = plan.model if isinstance(plan.model, ModelInfo) else None  # a missing model stopped the plan
    embedder = registry.load_embedder(opts.embedder, request, expected=model)
    log.info("embedder.loaded", embedder=opts.embedder, **embedder.describe())
    executor = (DaskExecutor(opts.embedder, request, batch_size=opts.batch_size, scheduler=opts.scheduler)
                if opts.executor == "dask"
                else LocalExecutor(embedder, batch_size=opts.batch_size, workers=opts.workers))
    written: list[str] = []
    skipped = list(refused)
    unreadable: list[tuple[str, str]] = []
    embedded, noted = 0, False
    try:
        for exp in todo:
            with structlog.contextvars.bound_contextvars(experiment=exp.experiment):
                if exp.action == "top-up" and not _can_append(exp, embedder):
                    skipped.append(str(exp.latent_path))
                    continue
                if (other := meanwhile(plan, exp)) is not None:
                    log.warning("latents.changed_meanwhile", path=str(other),
                                reason="another job wrote it after this one planned; not embedded again")
                    skipped.append(str(exp.latent_path))
                    continue
                result = executor.embed(exp.to_embed, label=f"embedding {exp.experiment}")
                for path, err in result.failures:
                    log.warning("image.unreadable", path=path, error=err)
                unreadable.extend(result.failures)
                if result.failures and opts.strict:
                    before = written + ([str(plan.manifest_path)] if written or noted else [])
                    done = f"written before: {', '.join(before)}" if before else "nothing written"
                    raise StrictFailure(
                        f"{len(result.failures)} unreadable image(s) in {exp.experiment}, first: {result.failures[0][0]} "
                        f"({result.failures[0][1]}); nothing was written for it (--strict; {done})")
                snip_ids = [exp.to_embed[i].stem for i in result.ok]
                with guard(plan, exp) as current:
                    bad = _unreadable_entries(plan, exp, result.failures) if current else {}
                    if current and not snip_ids:  # nothing to add: the latent file stays as it is
                        noted |= manifest.record_unreadable(plan.manifest_path, exp.experiment, bad)
                        log.warning("latents.nothing_embedded", path=str(exp.latent_path),
                                    unreadable=len(result.failures), reason="no image could be read; nothing written")
                        continue
                    wrote = current and _write(plan, exp, embedder, snip_ids, result.mu, result.logvar, bad)
                if wrote:
                    written.append(str(exp.latent_path))
                    embedded += len(snip_ids)
                    log.info("latents.generated", path=str(exp.latent_path), rows=len(snip_ids),
                             mode=exp.action, unreadable=len(result.failures))
                else:
                    skipped.append(str(exp.latent_path))
    finally:
        executor.close()
    return GenerateReport(written=tuple(written), embedded=embedded, unreadable_images=tuple(unreadable),
                          skipped=tuple(skipped), embedder=plain(embedder.describe()),
                          seconds=round(time.monotonic() - start, 3), manifest=bool(written) or noted)


def _unreadable_entries(plan: Build06Plan, exp: ExperimentPlan, failures: Sequence[tuple[str, str]]
                        ) -> dict[str, dict[str, Any]]:
    """The experiment's unreadable images after this run: those recorded and not tried again,
    and this run's failures (an image gone since is not recorded: the plan says it has none)."""
    tried = {p.name for p in exp.to_embed}
    entries = {k: v for k, v in manifest.unreadable(manifest.load(plan.manifest_path), exp.experiment).items()
               if k not in tried}
    for path, error in failures:
        try:
            st = os.stat(path)
        except OSError:
            continue
        entries[Path(path).name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "error": error}
    return entries


def check_strict(plan: Build06Plan) -> None:
    """Fail before anything is generated or written when the plan already shows a --strict
    failure. What it forecasts of the outputs is left to the merge when this run embeds:
    they are decided again from the latent files as written (a re-embedding into the same
    bytes leaves df03 current)."""
    forecast = set(plan.output_warnings) if plan.generates else set()
    warnings = [w for w in plan.warnings if w not in forecast] + list(plan.predicted)
    if warnings:
        raise strict_failure(warnings, [])


def _can_append(exp: ExperimentPlan, embedder: Embedder) -> bool:
    """Whether new rows from this embedder fit the columns an existing file has (the plan
    checked it already when the model's ``describe`` named its columns)."""
    why = top_up_refusal(exp.latent_path, embedder.mu_columns, embedder.sigma_columns)
    if why:
        log.warning("latents.top_up_refused", path=str(exp.latent_path), reason=why,
                    hint="pass --overwrite-latents to re-embed the file with this model")
    return why is None


def _write(plan: Build06Plan, exp: ExperimentPlan, embedder: Embedder, snip_ids: list[str], mu: np.ndarray,
           logvar: np.ndarray | None, unreadable: Mapping[str, Any]) -> bool:
    # the latent file and the manifest change together, the manifest renamed last
    with staged_writes():
        return _stage(plan, exp, embedder, snip_ids, mu, logvar, unreadable)


def _stage(plan: Build06Plan, exp: ExperimentPlan, embedder: Embedder, snip_ids: list[str], mu: np.ndarray,
           logvar: np.ndarray | None, unreadable: Mapping[str, Any]) -> bool:
    args = (exp.experiment, snip_ids, mu, logvar, embedder.mu_columns, embedder.sigma_columns)
    if exp.latent_path.suffix == ".parquet":
        table = parquet_store.latent_table(snip_ids, mu, logvar, embedder.mu_columns, embedder.sigma_columns,
                                           plan.model.name)
        try:
            rows = parquet_store.write_table(exp.latent_path, table, exp.latent_path if exp.action == "top-up" else None)
        except UserError as exc:
            if exp.action != "top-up":
                raise
            log.warning("latents.top_up_refused", path=str(exp.latent_path), reason=str(exc),
                        hint="pass --overwrite-latents to re-embed it")
            return False
    elif exp.action == "top-up":
        existing = read_text_table(exp.latent_path, what="latent file")
        buf = io.BytesIO()
        try:
            write_latents(buf, *args, order=existing.names)
        except UserError as exc:
            log.warning("latents.top_up_refused", path=str(exp.latent_path), reason=str(exc),
                        hint="its columns differ from what this embedder writes; pass --overwrite-latents to re-embed it")
            return False
        new = buf.getvalue().split(b"\n")[1:]
        records = existing.records.to_pylist() + [r for r in new if r]
        body = existing.newline.join([existing.header, *records]) + existing.newline
        atomic_write_bytes(exp.latent_path, body)
        rows = len(records)
    else:
        atomic_write(exp.latent_path, lambda fh: write_latents(fh, *args))
        rows = len(snip_ids)
    log.info("write.staged", path=str(exp.latent_path), what="latents", rows=rows, action=exp.action)
    manifest.record(plan.manifest_path, exp.latent_path, rows=rows, fingerprint=embedder.fingerprint,
                    model_name=plan.model.name, embedder=plan.options.embedder, backend=_backend(embedder),
                    experiment=exp.experiment, unreadable_images=unreadable)
    return True


def _backend(embedder: Embedder) -> dict[str, Any]:
    """The inference runtime and its version, for embedders that say (the manifest records them)."""
    info = plain(embedder.describe())
    return {k: info[k] for k in ("backend", "backend_version") if k in info}
