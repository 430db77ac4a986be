"""Build06 from Python: the seed's "pipeline-first service" (SPEC §10).

Each function is a thin façade over the stage: the one-shot calls go through
:func:`morphseq_stages.run_stage` with the CLI's checked options; from a latent store's table,
the step functions write df03, the training join and the analysis copies through the stage's
export, with their sidecars and the typed copies and report already beside them. Paths may be
``str`` or ``Path``; bad input is a :class:`morphseq_stages.UserError` with the CLI's
one-line message; nothing is replaced without ``overwrite=True``: a writer returns normally
when its output is written or already current (identical to what it would write), and
raises :class:`OutputExists` when an existing output that is not current is left as it is.

Logging: nothing is configured for you; warnings go to stderr until you configure
structlog (``morphseq_stages.logs.configure("json")`` shows every event).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import structlog

from morphseq_stages import logs
from morphseq_stages.embedders import EmbedderRequest
from morphseq_stages.errors import UserError
from morphseq_stages.files import check_safe_id, exclusive_lock

from . import paths
from .calls import (
    PathLike,
    PlannedRun,
    call,
    data_root_arg,
    df03_of,
    existing_latents,
    host,
    model_arg,
    names_arg,
    path_arg,
    plan_of,
    stage_df03,
    store_plan,
    written_or_current,
)
from .csvtext import read_text_table
from .frames import latents_frame, store_table
from .latents import Z_SCHEMAS
from .options import DEFAULT_MODEL
from .own_tables import OutputExists, copy_by_experiment, index_of_frame, join
from .partial import write_only
from .records import OutputKind

if TYPE_CHECKING:
    import pandas as pd


__all__ = [
    "OutputExists",
    "PlannedRun",
    "build_df03_with_embeddings",
    "declared_files",
    "ensure_latents_for_experiments",
    "export_df03_copies_by_experiment",
    "load_latents",
    "merge_df02_with_embeddings",
    "merge_train_with_embeddings",
    "resolve_model_dir",
]

log = structlog.get_logger()


def resolve_model_dir(data_root: PathLike | None, model_name: str = DEFAULT_MODEL) -> Path:
    """The folder of a legacy model that holds its ``model_config.json``.

    Parameters:
        data_root: the central data root; the model is looked up in
            ``<data_root>/models/legacy/<model_name>/`` or its ``final_model/`` subfolder.
        model_name: the model's folder name (default: the production model).

    Returns:
        The folder holding ``model_config.json`` (and ``model.pt`` or
        ``encoder_reformatted.pt``).

    Raises:
        UserError: naming the path, when the folder, its config or its weights are missing,
            or the config is not a model config.
    """
    logs.library_default()
    root = data_root_arg(data_root)
    name = model_arg(model_name)
    # through the registry, as a stage meets any embedder: the legacy embedder's describe finds the folder
    info = host().registry.describe_model("legacy", EmbedderRequest(model_name=name, data_root=root))
    return Path(str(info.location))


def ensure_latents_for_experiments(
    data_root: PathLike | None,
    model_name: str = DEFAULT_MODEL,
    experiments: str | Sequence[str] | None = None,
    generate_missing: bool = False,
    *,
    root: PathLike | None = None,
    **options: Any,
) -> dict[str, Path]:
    """Make sure each experiment has its latent file; return those that exist afterwards.

    Parameters:
        data_root: the central data root holding the latent store.
        model_name: the model whose latent store to use.
        experiments: experiment names (a bare string is one experiment); default: every
            experiment of df02 (needs ``root``).
        generate_missing: embed the snips that have no latent row yet (a new file, or the
            missing rows of an existing one), as ``--generate-missing-latents --generate-only``
            does: only latent files and the store's manifest are written.
        root: the pipeline root (its df02 and snip folders); needed to generate, and to
            take the experiments from df02.
        **options: any other Build06 option by its Python name (``batch_size``, ``device``,
            ``embedder``, ``latent_format``, ...), checked like the CLI's.

    Returns:
        ``{experiment: path of its latent file}`` for the experiments that have one
        afterwards (an experiment still without a file is absent, and logged).
    """
    logs.library_default()
    model_name = model_arg(model_name)
    names = names_arg(experiments)
    if root is None:
        if generate_missing:
            raise UserError("generating latents needs root= (the pipeline root whose df02 and snips to embed)")
        if not names:
            raise UserError("pass experiments= (or root= to take them from df02)")
        return existing_latents(data_root, model_name, names, options)
    run = {"root": path_arg(root, "root"), "data_root": path_arg(data_root, "data_root"), "model_name": model_name,
           "experiments": names, "generate_missing_latents": generate_missing or None,
           "generate_only": generate_missing or None, **options}
    result = call(run, dry_run=not generate_missing)
    asked = [e for e in plan_of(result).experiments if e.selected]  # the plan reads every experiment of df02
    found = {e.experiment: e.latent_path for e in asked if e.latent_path.exists()}
    for e in asked:
        if e.experiment not in found:
            log.warning("latents.missing", experiment=e.experiment, path=str(e.latent_path))
    return found


def load_latents(latent_paths: Mapping[str, PathLike], z_schema: str = "auto") -> pd.DataFrame:
    """Read latent files into one table, as the merge reads them.

    Parameters:
        latent_paths: ``{experiment: path}`` of latent files (CSV, Parquet, or a folder of
            Parquet shards), e.g. what :func:`ensure_latents_for_experiments` returns.
        z_schema: which z columns to keep: ``auto`` (every ``z_mu_*``), ``flat``
            (``z_mu_NN``) or ``bio_nuisance`` (``z_mu_b_*``/``z_mu_n_*``, else flat).

    Returns:
        A DataFrame with ``snip_id`` (text, one row per snip) and the z columns in
        dimension order (float64). Hygiene is applied as in a run: rows holding NaN/Inf
        are left out (and logged), identical duplicates dropped, of conflicting
        duplicates the first kept (and logged).
    """
    logs.library_default()
    if z_schema not in Z_SCHEMAS:
        raise UserError(f"unknown --z-schema {z_schema!r} (choose from {', '.join(Z_SCHEMAS)})")
    if not isinstance(latent_paths, Mapping):
        raise UserError(f"latent_paths must map experiment names to latent files, got {type(latent_paths).__name__}")
    paths = {check_safe_id(str(e), "experiment"): path_arg(p, f"latent file of {e}") for e, p in latent_paths.items()}
    for e, p in paths.items():
        if not p.exists():
            raise UserError(f"latent file not found: {p} (experiment {e})")
    return latents_frame(paths, z_schema)


def merge_df02_with_embeddings(root: PathLike, latents_df: pd.DataFrame, overwrite: bool = False,
                               out_name: str = "embryo_metadata_df03.csv") -> Path:
    """Join df02 with a latents table on the normalised ``snip_id``, written beside df02.

    df03 itself (the default ``out_name``) is Build06's own output: it is written by the
    stage, with its sidecar and unembedded list, exactly as ``morphseq-stages build06``
    writes it, from a table :func:`load_latents` read from a latent store (every latent
    file of df02's experiments there, each unchanged since). Any other table (filtered,
    edited, built by hand) is joined only into a file of your own (``out_name``): no
    sidecar, never taken for df03.

    Parameters:
        root: the pipeline root holding ``metadata/combined_metadata_files/embryo_metadata_df02.csv``.
        latents_df: ``snip_id`` + z columns, e.g. from :func:`load_latents`.
        overwrite: replace the output if it exists and is out of date (otherwise it is kept).
        out_name: the output's file name in df02's folder (a ``.csv``; not df02, nor the unembedded list).

    Returns:
        The path of the output: every df02 row and column, bytes unchanged, then the z
        columns (empty where a row has no embedding); written, or already current.

    Raises:
        OutputExists: the output exists, differs, and ``overwrite`` is off (it is kept).
        UserError: df03 asked for from a table that is not a latent store's files as they
            are (the message says why).
    """
    logs.library_default()
    base = path_arg(root, "root")
    df02, df03 = paths.df02(base), paths.df03(base)
    out = df02.with_name(check_safe_id(str(out_name), "output name"))
    stage_files = {p.name.lower() for p in (df02, df03, paths.unembedded(df03))}  # any case: a Mac's disk ignores it
    if out != df03 and (out.name.lower() in stage_files or out.suffix != ".csv"):
        raise UserError(f"out_name must name a .csv file of your own beside df02, not {out.name!r}")
    index = index_of_frame(latents_df)  # the table's own checks, whichever file it goes to
    if out != df03:  # a file of the caller's own: df02 plus the table's z cells
        join(read_text_table(df02, what="df02"), index, out, overwrite, "df03")
        return out
    source, why = store_table(latents_df)
    if source is None:
        raise UserError(f"df03 {out} is Build06's own output: it is written from load_latents' table of a latent "
                        f"store's files as they are, and this table {why}; pass out_name= to join it into a file "
                        "of your own")
    run, plan, lacking = store_plan(base, source, overwrite, [out])
    if lacking:
        held = sorted(e for e in source.files if e in {x.experiment for x in plan.experiments})
        raise UserError(f"df03 {out} holds every embedding of the store {plan.store}, and this table lacks the latent "
                        f"file(s) of {', '.join(lacking)} (it has {', '.join(held) or 'none'}); load every experiment "
                        "of df02, or pass out_name= to join it into a file of your own")
    return df03_of(call(run), overwrite)


def merge_train_with_embeddings(root: PathLike, train_name: str, latents_df: pd.DataFrame,
                                overwrite: bool = False) -> Path | None:
    """Join a training set's metadata with a latents table.

    Parameters:
        root: the pipeline root.
        train_name: the folder under ``<root>/training_data/`` holding ``embryo_metadata_df_train.csv``.
        latents_df: ``snip_id`` + z columns, e.g. from :func:`load_latents`.
        overwrite: replace the output if it exists.

    Given :func:`load_latents`' table of a latent store's files as they are (those of the
    training set's experiments at least), the join is the stage's own: written by its
    export with its sidecar, as ``--train-name`` writes it. Any other table is joined as
    it is, without a record.

    Returns:
        The path of ``embryo_metadata_with_embeddings.csv`` beside the training metadata
        (written, or already current), or None (logged) when that metadata does not exist.

    Raises:
        OutputExists: the output exists, differs, and ``overwrite`` is off (it is kept).
    """
    logs.library_default()
    check_safe_id(str(train_name), "training set name")
    base = path_arg(root, "root")
    train_in = paths.training_input(base, str(train_name))
    if not train_in.is_file():
        log.warning("training.missing", path=str(train_in))
        return None
    out = paths.training_output(base, str(train_name))
    index = index_of_frame(latents_df)  # the table's own checks, whichever way it is written
    source, _ = store_table(latents_df)
    if source is None:  # a table of the caller's own: joined as it is
        join(read_text_table(train_in, what="training metadata"), index, out, overwrite, "training")
        return out
    with exclusive_lock(*paths.training_lock(out.parent)):
        _, plan, lacking = store_plan(base, source, overwrite, [out], train_name=str(train_name))
        if not set(lacking) & plan.inputs.held_by(train_in):  # the table is the store's files the join reads
            written_or_current(write_only(plan, [OutputKind.TRAINING]), overwrite)
            return out
    # the table lacks a latent file of the training set's experiments: joined as it is, without a record
    join(read_text_table(train_in, what="training metadata"), index, out, overwrite, "training")
    return out


def export_df03_copies_by_experiment(df03: PathLike | pd.DataFrame, data_root: PathLike | None,
                                     model_name: str = DEFAULT_MODEL, overwrite: bool = False) -> list[Path]:
    """Write one ``df03_<experiment>.csv`` per experiment for analysis users.

    When ``df03`` is a pipeline root's df03, written by the stage for this model and
    current, the copies are the stage's own (written by its export, with their sidecar
    ``df03_copies.json``: ``--export-analysis-copies`` then finds them current). Any other
    df03 (a file edited or out of date, a DataFrame) is copied as it is, without a record.

    Parameters:
        df03: the path of df03 (its rows are copied byte for byte) or a DataFrame.
        data_root: the central data root; copies go to
            ``<data_root>/metadata/metadata_n_embeddings/<model_name>/``.
        model_name: names the copies' folder.
        overwrite: replace existing copies that differ.

    Returns:
        Every copy's path, in experiment order of appearance: each written, or already
        identical (left as it is).

    Raises:
        OutputExists: a copy exists, differs (or is not current), and ``overwrite`` is off;
            checked for every copy before any is written, so then none is.
    """
    logs.library_default()
    model_name = model_arg(model_name)
    root = data_root_arg(data_root)
    folder = paths.analysis_dir(root, model_name)
    frame = df03 if not isinstance(df03, str | os.PathLike) else None
    source = path_arg(df03, "df03") if frame is None else None
    with exclusive_lock(*paths.copies_lock(folder)):  # checked and written with no other run in between
        plan = stage_df03(source, root, model_name, overwrite) if source is not None else None
        if plan is not None:  # df03 is the stage's, current: its copies are the stage's too
            copies = write_only(plan, [OutputKind.ANALYSIS])
            written_or_current(copies, overwrite)
            return [o.path for o in copies if not o.fmt]
        return copy_by_experiment(frame if frame is not None else source, folder, model_name, overwrite)


@overload
def build_df03_with_embeddings(
    root: PathLike, data_root: PathLike | None = ..., model_name: str = ...,
    experiments: str | Sequence[str] | None = ..., generate_missing: bool = ..., export_analysis: bool = ...,
    train_name: str | None = ..., overwrite: bool = ..., *, dry_run: Literal[True], z_schema: str = ...,
    **options: Any) -> PlannedRun: ...


@overload
def build_df03_with_embeddings(
    root: PathLike, data_root: PathLike | None = ..., model_name: str = ...,
    experiments: str | Sequence[str] | None = ..., generate_missing: bool = ..., export_analysis: bool = ...,
    train_name: str | None = ..., overwrite: bool = ..., dry_run: Literal[False] = ..., z_schema: str = ...,
    **options: Any) -> Path: ...


def build_df03_with_embeddings(
    root: PathLike,
    data_root: PathLike | None = None,
    model_name: str = DEFAULT_MODEL,
    experiments: str | Sequence[str] | None = None,
    generate_missing: bool = False,
    export_analysis: bool = False,
    train_name: str | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    z_schema: str = "auto",
    **options: Any,
) -> Path | PlannedRun:
    """Run Build06 end to end, exactly as ``morphseq-stages build06`` does.

    Parameters:
        root: the pipeline root holding df02.
        data_root: the central data root (default: ``$MORPHSEQ_DATA_ROOT``).
        model_name: the model whose latents to use (and to embed with).
        experiments: limit generation and analysis copies to these (a bare string is
            one experiment); df03 always holds every available embedding.
        generate_missing: embed snips without a latent row (``--generate-missing-latents``).
        export_analysis: write the per-experiment copies (``--export-analysis-copies``).
        train_name: also join ``training_data/<train_name>/embryo_metadata_df_train.csv``.
        overwrite: replace existing outputs (never re-embeds).
        dry_run: plan only; nothing is written, and the plan is returned.
        z_schema: ``auto``, ``flat`` or ``bio_nuisance``.
        **options: any other Build06 option by its Python name (``min_coverage``,
            ``strict``, ``formats``, ``batch_size``, ...), checked like the CLI's; a
            misspelled name is refused with the closest valid one.

    Returns:
        The path of df03 (byte-identical to the CLI's for the same inputs), written by
        this call or already current. With ``dry_run``: a :class:`PlannedRun`, the dict
        ``--dry-run --json`` prints (``["df03"]`` is df03's path), shown as the console's
        plan table. The
        full run summary is logged as ``build06.summary``; use
        :func:`morphseq_stages.run_stage` to get it as a value.

    Raises:
        OutputExists: df03 exists and is out of date (or not written by this tool) and
            ``overwrite`` is off: it is kept; the call's other outputs (latent files,
            analysis copies) are written as the run decided.
        UserError: df03 was kept even with ``overwrite`` (the run found no latent file
            to merge: check ``model_name`` and ``data_root``).
    """
    logs.library_default()
    run = {"root": path_arg(root, "root"), "data_root": path_arg(data_root, "data_root"), "model_name": model_arg(model_name),
           "experiments": names_arg(experiments), "generate_missing_latents": generate_missing,
           "export_analysis_copies": export_analysis, "train_name": train_name, "overwrite": overwrite,
           "z_schema": z_schema, **options}
    result = call(run, dry_run=dry_run)
    if dry_run:
        return PlannedRun(plan_of(result))
    return df03_of(result, overwrite)


def declared_files(root: PathLike, data_root: PathLike | None = None, **options: Any) -> dict[str, Any]:
    """What a Build06 run with these options would read and write, for a workflow tool.

    Parameters:
        root: the pipeline root.
        data_root: the central data root (default: ``$MORPHSEQ_DATA_ROOT``).
        **options: any Build06 option by its Python name (``model_name``,
            ``generate_missing_latents``, ``experiments``, ...), checked like the CLI's.

    Returns:
        ``{"reads": [...], "writes": [...], "latent_store": path, "df03": path}``: the
        ``reads`` and ``writes`` lists of ``--dry-run --json`` (each entry ``kind``,
        ``path``, ``action``, and ``experiment`` where there is one). Nothing is written.
    """
    logs.library_default()
    plan = call({"root": path_arg(root, "root"), "data_root": path_arg(data_root, "data_root"), **options},
                dry_run=True).plan.as_dict()
    return {k: plan[k] for k in ("reads", "writes", "latent_store", "df03")}
