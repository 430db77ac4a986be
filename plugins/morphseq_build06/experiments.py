"""Per experiment: its snip images, and what the run does with its latent file (read it,
generate it, top it up, re-embed it, or nothing: missing), and why."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from morphseq_stages.embedders import ModelInfo
from morphseq_stages.errors import UserError

from . import keys, manifest, paths
from .coverage import nothing_to_merge
from .latents import latent_file_name
from .options import Build06Options
from .records import ExperimentAction, ExperimentPlan, MissingModel
from .sources import LatentSource, top_up_refusal

log = structlog.get_logger()


def find_images(opts: Build06Options, experiment: str) -> tuple[Path | None, Path, list[Path]]:
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



def has_image(row_keys: pa.Array, codes: np.ndarray, images: list[list[Path]]) -> np.ndarray:
    out = np.zeros(len(row_keys), bool)
    for k, found in enumerate(images):
        rows = np.flatnonzero(codes == k)
        if not len(rows) or not found:
            continue
        image_keys = pc.unique(keys.normalise(pa.array([p.name for p in found], pa.string()))[0])
        pos, _ = keys.match(row_keys.take(pa.array(rows)), image_keys, *keys.channel_free_index(image_keys))
        out[rows] = pos >= 0
    return out



def plan_experiment(opts: Build06Options, experiment: str, selected: bool, source: LatentSource,
                     found: tuple[Path | None, Path, list[Path]], record: dict[str, Any] | None,
                     model: ModelInfo | MissingModel, file_keys: pa.Array | None, rows_mask: np.ndarray,
                     matched: np.ndarray, has_image: np.ndarray, known_bad: dict[str, dict[str, Any]],
                     left_out: str = "", edited: bool = False) -> ExperimentPlan:
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
    refused = None
    if action == "top-up":
        refused = _refused_top_up(latent_path, model) or (
            f"it changed since {manifest.MANIFEST_NAME} recorded it, and new rows would record the change as "
            "this model's" if edited else None)
    if refused:  # said now, not found once the images are embedded
        action, reason, todo = "read", f"{len(new_images)} snip(s) without a latent row, not topped up: {refused}", ()
    if bad:
        reason = reason.removesuffix(" and no snip images") + (f"; {len(bad)} snip image(s) could not be read by an earlier run (listed in "
                   f"{manifest.MANIFEST_NAME}), not tried again until they change")
    note = source.note
    read_path = None
    if action == "regenerate" and latent_path.suffix != f".{opts.latent_format}":
        # re-embedding writes the asked format; the other file stays, read only if its format is asked for
        # (or if the re-embedding writes nothing)
        read_path, latent_path = latent_path, latent_path.with_name(latent_file_name(experiment, opts.latent_format))
        note = f"re-embedded into {latent_path.name} (--latent-format {opts.latent_format}); {source.path.name} is left as it was"
    return ExperimentPlan(
        experiment=experiment, selected=selected, df02_rows=int(rows_mask.sum()), latent_path=latent_path,
        read_path=read_path,
        latent_exists=exists, latent_rows=len(file_keys) if file_keys is not None else None, snip_dir=snip_dir,
        left_out=left_out,
        image_dir=image_dir, snip_images=len(all_images) if snip_dir else None,
        rows_without_latent=int((rows_mask & ~matched).sum()), rows_without_image=int((rows_mask & ~has_image).sum()),
        to_embed=todo, unreadable=bad, recorded_model=recorded_model, recorded_name=record.get("model_name") if record else None,
        unknown_origin=exists and source.writable and not record, stale=stale, action=action, reason=reason, source_note=note,
        not_topped_up=refused or "", changed_since_recorded=edited,
    )


def _refused_top_up(path: Path, model: ModelInfo | MissingModel) -> str | None:
    """Why the model's rows cannot be appended to the latent file, when ``describe`` named its columns."""
    if not isinstance(model, ModelInfo) or not model.mu_columns:
        return None  # the generate phase checks it, once the model is loaded
    return top_up_refusal(path, model.mu_columns, model.sigma_columns, f"model {model.name!r}")



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



def experiment_warnings(opts: Build06Options, plans: list[ExperimentPlan]) -> list[str]:
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
    warnings += [f"{p.latent_path} is not topped up: {p.not_topped_up}; its snips without a latent row stay "
                 "unembedded; pass --overwrite-latents to re-embed it with this model"
                 for p in plans if p.not_topped_up]
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


def check_backend(opts: Build06Options, plans: list[ExperimentPlan]) -> None:
    """``--backend onnxruntime`` without ONNX Runtime installed, in a run that embeds: one
    line now (the dry run says it too), not once the model is loaded."""
    if opts.backend == "onnxruntime" and any(p.generating for p in plans) \
            and importlib.util.find_spec("onnxruntime") is None:
        raise UserError("--backend onnxruntime needs ONNX Runtime: pip install 'morphseq-stages[onnx]'")
