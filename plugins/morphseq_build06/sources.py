"""Each experiment's latent source: where it is read from (the store, or the lab's layout
under --latents-root), and one check of every source before it is merged: the model
that wrote it, and its z columns (SPEC §12, "one model per df03").

A source is a store file (CSV or Parquet), a lab merged file or a folder of lab shards.
Its model is what the manifest records for it (store files: the model's fingerprint, and
the sha256 of the file it recorded) and what its rows name (each Parquet file's
``embedding_model_name``); its z schema is the set of dimensions its z columns name. A
source of another model, or with other dimensions than the run's (those most sources
share), is left out of the merge: a warning names it, and its rows stay unembedded with
the reason. A store file changed since the manifest recorded it is named in a warning and
read as of unknown origin.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from morphseq_stages.embedders import ModelInfo
from morphseq_stages.errors import UserError
from morphseq_stages.files import sha256_file

from . import manifest, parquet_store
from .inputs import not_regular
from .latents import ID_COLUMNS, Z_SCHEMAS, dimension_key, latent_file_name, select_z_columns
from .records import ExperimentPlan, MissingModel
from .store import StoreRead, latent_z_columns, read_latent_header

OVERWRITE_HINT = "pass --overwrite-latents to re-embed it with this one"


@attrs.frozen(kw_only=True)
class SourceCheck:
    left_out: Mapping[str, str]  # experiment -> why its latent file is not merged (its rows' reason)
    warnings: Mapping[str, str]  # experiment -> the warning about its latent file


def check_sources(sources: Mapping[str, LatentSource], records: Mapping[str, Any],
                  model: ModelInfo | MissingModel, schema: str, include_sigma: bool) -> SourceCheck:
    """Check the model and the z columns of the sources that exist (before they are read);
    ``records``: the manifest's entries by file name. A source whose mean dimensions are not
    those the model writes (when its ``describe`` names them) is another model's; of the
    others, one whose z columns are not those most sources share is left out too."""
    model_name, fingerprint = model.name, model.fingerprint
    left_out: dict[str, str] = {}
    warnings: dict[str, str] = {}
    present = {e: s for e, s in sources.items() if s.path.is_file() or s.path.is_dir()}
    for e, source in present.items():
        record = records.get(source.path.name) if source.writable else None
        why = _other_model(source, record, model_name, fingerprint)
        if why:
            left_out[e] = f"latent file of another model ({why[0]})"
            warnings[e] = (f"{source.path} {why[1]}, not this run's {model_name!r}{_fp(fingerprint)}: "
                           f"its rows are not merged{_hint(source)}")
    dims = {e: frozenset(dimension_key(c) for c in latent_z_columns(s.path, schema, include_sigma))
            for e, s in present.items() if e not in left_out}
    writes = _model_dimensions(model, schema)
    for e, d in list(dims.items()) if writes else []:
        mu = frozenset(k for k in d if k and k[0] == "mu")
        if mu != writes:  # another model's, whatever the manifest says (or does not)
            del dims[e]
            left_out[e] = f"latent file with other z columns than model {model_name!r} writes ({_describe(mu)})"
            warnings[e] = (f"{present[e].path} has z columns for {_describe(mu)}, where model {model_name!r} "
                           f"writes {_describe(writes)}: its rows are not merged{_hint(present[e])}")
    if len(set(dims.values())) > 1:
        counts = Counter(dims.values())
        run = max(counts, key=lambda d: (counts[d], -list(dims.values()).index(d)))
        for e, d in dims.items():
            if d != run:
                left_out[e] = f"latent file with other z columns than the run's ({_describe(d)})"
                warnings[e] = (f"{present[e].path} has z columns for {_describe(d)}, where the other latent files "
                               f"have {_describe(run)}: its rows are not merged{_hint(present[e])}")
    return SourceCheck(left_out=left_out, warnings=warnings)


def _model_dimensions(model: ModelInfo | MissingModel, schema: str) -> frozenset[tuple[str, int] | None]:
    """The mean dimensions the model writes that the schema keeps; empty when ``describe``
    does not name them (or the schema keeps none: the plan refuses to embed then)."""
    if not isinstance(model, ModelInfo):
        return frozenset()
    return frozenset(dimension_key(c) for c in select_z_columns(model.mu_columns, schema))


def check_generated_columns(experiments: Sequence[ExperimentPlan], model: ModelInfo | MissingModel, schema: str,
                            include_sigma: bool) -> None:
    """Refuse, before anything is embedded, a run that would embed rows whose z columns
    ``--z-schema`` drops (``flat`` and a model naming its dimensions b/n): the merge could
    not read the files it wrote (nor a later one: ``--generate-only``). A top-up counts too:
    its rows are the model's columns, which an existing file of the schema's naming refuses.
    The model's columns are what ``describe`` says; an embedder that does not say is not checked."""
    if not isinstance(model, ModelInfo) or not model.mu_columns:
        return
    embedding = [e.experiment for e in experiments if e.generating]
    names = model.mu_columns + model.sigma_columns
    kept = set(select_z_columns(names, schema, include_sigma))
    dropped = [c for c in model.mu_columns if c not in kept]
    if not embedding or not dropped:
        return
    fits = [s for s in Z_SCHEMAS if set(model.mu_columns) <= set(select_z_columns(names, s, include_sigma))]
    shown = ", ".join(embedding[:3]) + (f" and {len(embedding) - 3} more" if len(embedding) > 3 else "")
    raise UserError(f"--z-schema {schema} cannot read the z columns model {model.name!r} writes "
                    f"({', '.join(dropped[:3])}{', ...' if len(dropped) > 3 else ''}; {len(model.mu_columns)} in all), "
                    f"so nothing this run would embed for {shown} could be merged: pass --z-schema "
                    f"{' or '.join(fits)}, or run without generating latents")


def top_up_refusal(path: Path, mu_columns: Sequence[str], sigma_columns: Sequence[str],
                   model: str = "this model") -> str | None:
    """Why the rows of a model writing these z columns cannot be appended to the latent file
    at ``path`` (a column of the file is not one the model writes); None when they can."""
    known = {*ID_COLUMNS, parquet_store.MODEL_COLUMN, *mu_columns, *sigma_columns}
    alien = [c for c in read_latent_header(path) if c not in known]
    return f"its column {alien[0]!r} is not one {model} writes" if alien else None


def changed_since_recorded(sources: Mapping[str, LatentSource], records: Mapping[str, Any],
                           read: StoreRead) -> dict[str, str]:
    """experiment -> a warning, for each store file read whose sha256 (of the bytes read) is
    not the one its manifest entry records."""
    out = {}
    for e, source in sources.items():
        record = records.get(source.path.name) if source.writable else None
        if e not in read.rows or not record or not record.get("sha256") or not source.path.is_file():
            continue
        files = read.rows[e].sources
        sha = files[0].sha256 if len(files) == 1 else sha256_file(source.path)
        if record["sha256"] != sha:
            out[e] = (f"{source.path} changed since {manifest.MANIFEST_NAME} recorded it (its sha256 differs): "
                      "read as of unknown origin")
    return out


def _hint(source: LatentSource) -> str:
    """How to replace a store file that is not merged (a lab file under --latents-root is not this tool's to replace)."""
    return f"; {OVERWRITE_HINT}" if source.writable else ""


def _fp(fingerprint: str | None) -> str:
    return f" (weights {fingerprint[:12]})" if fingerprint else ""


def _other_model(source: LatentSource, record: Mapping[str, Any] | None, model_name: str,
                 fingerprint: str | None) -> tuple[str, str] | None:
    """(the other model, in a few words; what says so) when the source is another model's."""
    recorded = record.get("model_fingerprint") if record else None
    if record and recorded and fingerprint and recorded != fingerprint:
        who = record.get("model_name") or "unnamed"
        return (f"{who!r}, weights {str(recorded)[:12]}",
                f"was written by another model, {who!r} (weights {str(recorded)[:12]}, says {manifest.MANIFEST_NAME})")
    for path, names in parquet_store.models_by_file(source.path).items():
        others = [n for n in names if n != model_name]
        if others:
            where = "" if path == source.path else f" (shard {path.name})"
            shown = " and ".join(map(repr, others))
            return shown, f"names another model, {shown}, in its rows{where}"
    return None


def _describe(dims: frozenset[tuple[str, int] | None]) -> str:
    """``{("mu", 0), ..., ("sigma", 3)}`` -> "4 dimensions (mu 0-3, sigma 0-3)"."""
    parts = []
    for kind in ("mu", "sigma"):
        found = sorted(d[1] for d in dims if d is not None and d[0] == kind)
        if found:
            span = f"{found[0]}-{found[-1]}" if found == list(range(found[0], found[-1] + 1)) else \
                ",".join(map(str, found[:6])) + ("..." if len(found) > 6 else "")
            parts.append(f"{kind} {span}")
    n = len({d[1] for d in dims if d is not None})
    return f"{n} dimension{'s' * (n != 1)} ({', '.join(parts)})"


@attrs.frozen(kw_only=True)
class LatentSource:
    """Where an experiment's latents are read from, and why that file."""

    path: Path
    note: str = ""  # why this file, when there was a choice
    skipped: tuple[Path, ...] = ()  # shards without their sentinel
    writable: bool = True  # generation may write here (the store), not the lab's output root


def lab_folder(latents_root: Path, experiment: str) -> Path:
    return latents_root / "feature_extraction" / experiment / "latent_embeddings"


def locate(store: Path, experiment: str, fmt: str, latents_root: Path | None) -> LatentSource:
    """The latent file (or shard folder) of one experiment; ``skipped`` names every file
    passed over that the user may expect to be read."""
    if latents_root is not None:
        folder = lab_folder(latents_root, experiment)
        merged = folder / f"{experiment}{parquet_store.SHARD_SUFFIX}"
        there = merged.is_file() or not_regular(merged) is not None
        if there and parquet_store.validated(merged):
            return LatentSource(path=merged, note="merged file under --latents-root", writable=False)
        found, skipped = parquet_store.shards(folder / "per_well") if (folder / "per_well").is_dir() else ([], [])
        skipped = ([merged] if there else []) + skipped
        unvalidated = " (its merged file is not read)" if there else ""
        if found:
            return LatentSource(path=folder / "per_well", skipped=tuple(skipped), writable=False,
                                note=f"{len(found)} validated per-well shard(s) under --latents-root{unvalidated}")
        if skipped:
            source = _in_store(store, experiment, fmt)
            return attrs.evolve(source, skipped=tuple(skipped) + source.skipped,
                                note=f"nothing validated under {folder}{unvalidated}; using the store")
    return _in_store(store, experiment, fmt)


def _in_store(store: Path, experiment: str, fmt: str) -> LatentSource:
    other = "parquet" if fmt == "csv" else "csv"
    chosen, alternative = store / latent_file_name(experiment, fmt), store / latent_file_name(experiment, other)
    for path in (chosen, alternative):  # never opened, never taken for a missing file
        odd = not_regular(path)
        if odd is not None:
            raise UserError(f"latent file {path} is {odd}, not a regular file; remove or replace it")
    if chosen.is_file() and alternative.is_file():
        return LatentSource(path=chosen, note=f"the store also holds {alternative.name}; reading the "
                                              f"--latent-format {fmt} file")
    if alternative.is_file():
        return LatentSource(path=alternative, note=f"only a {other} file (--latent-format {fmt})")
    return LatentSource(path=chosen)
