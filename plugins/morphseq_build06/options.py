"""Build06's options (one declaration for the CLI flags and Python calls) and its own checks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from morphseq_stages.errors import UserError
from morphseq_stages.executors import EXECUTORS
from morphseq_stages.files import check_safe_id
from morphseq_stages.options import option

from .formats import parse_formats, require
from .latents import LATENT_FORMATS, Z_SCHEMAS
from .report_spec import require_report

DEFAULT_MODEL = "20241107_ds_sweep01_optimum"
DATA_ROOT_ENV = "MORPHSEQ_DATA_ROOT"


def _names(value: Any) -> tuple[str, ...]:
    # "a,b" on the command line, or several words, or a list from Python
    items = [value] if isinstance(value, str) else list(value or ())
    return tuple(dict.fromkeys(n.strip() for v in items for n in str(v).split(",") if n.strip()))


def _formats(value: Any) -> tuple[str, ...]:
    # "csv,parquet" on the command line, a list or a bare string from Python
    return parse_formats(",".join(value) if isinstance(value, tuple | list) else value)


@attrs.frozen(kw_only=True)
class Build06Options:
    """Build06's options, declared once: the CLI flags, their defaults and the checks of
    Python calls all come from these fields (see ``morphseq_stages.options``)."""

    root: Path = option(type=Path, group="inputs", metavar="ROOT",
                        help="pipeline root holding metadata/combined_metadata_files/embryo_metadata_df02.csv")
    data_root: Path = option(type=Path, default=None, group="inputs", metavar="DATA_ROOT",
                             help=f"central data root (default: ${DATA_ROOT_ENV})")
    experiments: tuple[str, ...] | None = option(
        type=list, default=None, group="inputs", metavar="E",
        help="only these experiments (default: every experiment_date in df02)")
    train_name: str | None = option(type=str, default=None, group="inputs", metavar="T",
                                    help="also join training_data/<T>/embryo_metadata_df_train.csv")
    latents_root: Path | None = option(
        type=Path, default=None, group="inputs", metavar="OUTPUT_ROOT",
        help="read latents from the lab's newer layout: OUTPUT_ROOT/feature_extraction/<experiment>/latent_embeddings/")
    model_name: str | None = option(
        type=str, default=None, group="model", metavar="M",
        help=f"the model's name (default: the embedder's own; legacy: {DEFAULT_MODEL} under <data-root>/models/legacy/)")
    model_dir: Path | None = option(type=Path, default=None, group="model", metavar="P",
                                    help="use the model in this folder instead")
    embedder: str = option(type=str, default="legacy", group="model", metavar="NAME",
                           help="embedder plugin (see 'morphseq-stages list')")
    allow_pickle: bool = option(
        type=bool, group="model",
        help="let the legacy embedder unpickle encoder.pkl for architectures it cannot rebuild (runs code from the file)")
    generate_missing_latents: bool = option(type=bool, group="generation",
                                            help="embed snips that have no latent row yet")
    latent_format: str = option(type=str, default="csv", choices=LATENT_FORMATS, group="generation",
                                help="format of the latent files written (and read first when a store holds both)")
    batch_size: int = option(type=int, default=64, minimum=1, group="generation", metavar="N",
                             help="images per inference batch")
    device: str = option(type=str, default="auto", choices=("cpu", "cuda", "auto"), group="generation",
                         help="where to run the model")
    backend: str = option(type=str, default="auto", choices=("torch", "onnxruntime", "auto"), group="generation",
                          help="inference runtime: auto uses ONNX Runtime on CPU when it is installed (the [onnx] "
                               "extra) and the model exports, else torch")
    workers: int | None = option(type=int, default=None, minimum=1, group="generation", metavar="N",
                                 help="image-decoding threads (default: the cores available, at most 8)")
    executor: str = option(type=str, default="local", choices=EXECUTORS, group="generation",
                           help="run embedding here or on a Dask cluster")
    scheduler: str | None = option(type=str, default=None, group="generation", metavar="ADDRESS",
                                   help="Dask scheduler address (default with --executor dask: a local cluster)")
    z_schema: str = option(type=str, default="auto", choices=Z_SCHEMAS, group="merge and outputs",
                           help="which z columns to keep")
    include_sigma: bool = option(type=bool, group="merge and outputs",
                                 help="also carry z_sigma_* (log-variance) columns into df03")
    qc_filter: bool = option(type=bool, group="merge and outputs", help="keep only rows whose use_embryo_flag is true")
    min_coverage: float = option(type=float, default=0.95, minimum=0.0, maximum=1.0, group="merge and outputs",
                                 metavar="F", help="warn below this coverage")
    strict: bool = option(type=bool, group="merge and outputs",
                          help="turn warnings (low coverage, duplicates, bad images) into a failure")
    export_analysis_copies: bool = option(type=bool, group="merge and outputs",
                                          help="write per-experiment df03 copies under the data root")
    formats: tuple[str, ...] = option(
        type=list, default=("csv",), group="merge and outputs", metavar="csv,parquet,h5ad", converter=_formats,
        help="also write typed Parquet and/or AnnData beside each CSV output (csv is always written)")
    report: bool = option(type=bool, group="merge and outputs", help="write embryo_metadata_df03_report.html beside df03")
    report_color_by: tuple[str, ...] = option(
        type=list, default=None, group="merge and outputs", metavar="COLUMN", converter=_names,
        help="also colour the report's projection by these df02 columns, e.g. predicted_stage_hpf,genotype "
             "(numeric columns on a continuous scale); implies --report")
    overwrite: bool = option(
        type=bool, group="merge and outputs",
        help="replace outputs that are out of date or not written by this tool (df03, its unembedded list and "
             "sidecar, the training join, analysis copies); never re-embeds")
    overwrite_latents: bool = option(
        type=bool, group="generation",
        help="re-embed the selected experiments' latent files from their snips (also those written by another "
             "model); implies generation")
    generate_only: bool = option(
        type=bool, group="generation",
        help="only embed: write the missing latent files (and the store's manifest), no df03; implies "
             "--generate-missing-latents; the store lock is held only while a file is written, so jobs for "
             "different experiments can run side by side before one merge")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> Build06Options:
        """Build06's own checks on options the host has already converted and checked
        against this schema (``morphseq_stages.options.validate``); one clear line each."""
        known = {f.name for f in attrs.fields(cls)}
        kw = {k: v for k, v in options.items() if k in known and v is not None}
        if kw.get("generate_only") and not kw.get("overwrite_latents"):
            kw["generate_missing_latents"] = True
        data_root = kw.get("data_root") or os.environ.get(DATA_ROOT_ENV)
        if not data_root:
            raise UserError(f"no data root: pass --data-root or set {DATA_ROOT_ENV}")
        kw["data_root"] = Path(data_root).expanduser()
        if not kw["data_root"].is_dir():
            what = "is not a folder" if kw["data_root"].exists() else "not found"
            raise UserError(f"data root {kw['data_root']} {what} (--data-root or ${DATA_ROOT_ENV})")
        if not kw["root"].is_dir():
            raise UserError(f"pipeline root not found: {kw['root']}")
        if kw.get("experiments"):
            kw["experiments"] = tuple(dict.fromkeys(check_safe_id(e, "experiment") for e in kw["experiments"]))
        else:
            kw.pop("experiments", None)
        if kw.get("train_name"):
            check_safe_id(kw["train_name"], "training set name")
        if kw.get("model_name") is not None:
            check_safe_id(kw["model_name"], "model name")
        if kw.get("model_dir") is not None and not kw["model_dir"].is_dir():
            raise UserError(f"--model-dir not found: {kw['model_dir']}")
        for fmt in _formats(kw.get("formats", "csv")):
            if fmt != "csv":
                require(fmt)
        if kw.get("report_color_by"):
            kw["report"] = True
        if kw.get("report"):
            require_report()
        if kw.get("latent_format") == "parquet":
            require("parquet")
        if kw.get("latents_root") is not None and not kw["latents_root"].is_dir():
            raise UserError(f"--latents-root not found: {kw['latents_root']}")
        if kw.get("scheduler") and kw.get("executor", "local") != "dask":
            raise UserError("--scheduler needs --executor dask")
        return cls(**kw)
