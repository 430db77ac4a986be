"""Build06's command-line options and their validation."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from morphseq_stages.errors import UserError
from morphseq_stages.executors import EXECUTORS
from morphseq_stages.files import check_safe_id

from .formats import parse_formats, require
from .latents import LATENT_FORMATS, Z_SCHEMAS
from .report import require_report

DEFAULT_MODEL = "20241107_ds_sweep01_optimum"
DATA_ROOT_ENV = "MORPHSEQ_DATA_ROOT"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs")
    g.add_argument("--root", required=True, type=Path, help="pipeline root holding metadata/combined_metadata_files/embryo_metadata_df02.csv")
    g.add_argument("--data-root", type=Path, help=f"central data root (default: ${DATA_ROOT_ENV})")
    g.add_argument("--experiments", nargs="+", metavar="E", help="only these experiments (default: every experiment_date in df02)")
    g.add_argument("--train-name", help="also join training_data/<T>/embryo_metadata_df_train.csv")
    g.add_argument("--latents-root", type=Path, metavar="OUTPUT_ROOT",
                   help="read latents from the lab's newer layout: OUTPUT_ROOT/feature_extraction/<experiment>/latent_embeddings/")
    m = p.add_argument_group("model")
    m.add_argument("--model-name", default=DEFAULT_MODEL, help=f"model under <data-root>/models/legacy/ (default: {DEFAULT_MODEL})")
    m.add_argument("--model-dir", type=Path, help="use the model in this folder instead")
    m.add_argument("--embedder", default="legacy", help="embedder plugin (default: legacy; see 'morphseq-stages list')")
    m.add_argument("--allow-pickle", action="store_true",
                   help="let the legacy embedder unpickle encoder.pkl for architectures it cannot rebuild (runs code from the file)")
    e = p.add_argument_group("generation")
    e.add_argument("--generate-missing-latents", action="store_true", help="embed snips that have no latent row yet")
    e.add_argument("--latent-format", choices=LATENT_FORMATS, default="csv",
                   help="format of the latent files written (and read first when a store holds both; default: csv)")
    e.add_argument("--batch-size", type=int, default=64, help="images per inference batch (default: 64)")
    e.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="where to run the model (default: auto)")
    e.add_argument("--workers", type=int, help="image-decoding threads (default: the cores available, at most 8)")
    e.add_argument("--executor", choices=EXECUTORS, default="local", help="run embedding here or on a Dask cluster")
    e.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address (default with --executor dask: a local cluster)")
    o = p.add_argument_group("merge and outputs")
    o.add_argument("--z-schema", default="auto", help=f"which z columns to keep: {', '.join(Z_SCHEMAS)} (default: auto)")
    o.add_argument("--include-sigma", action="store_true", help="also carry z_sigma_* (log-variance) columns into df03")
    o.add_argument("--qc-filter", action="store_true", help="keep only rows whose use_embryo_flag is true")
    o.add_argument("--min-coverage", type=float, default=0.95, help="warn below this coverage (default: 0.95)")
    o.add_argument("--strict", action="store_true", help="turn warnings (low coverage, duplicates, bad images) into a failure")
    o.add_argument("--export-analysis-copies", action="store_true", help="write per-experiment df03 copies under the data root")
    o.add_argument("--formats", default="csv", metavar="csv,parquet,h5ad",
                   help="also write typed Parquet and/or AnnData beside each CSV output (csv is always written)")
    o.add_argument("--report", action="store_true", help="write embryo_metadata_df03_report.html beside df03")
    o.add_argument("--overwrite", action="store_true", help="replace existing outputs (and regenerate latents with --generate-missing-latents)")


def _path(v: Any) -> Path | None:
    return None if v in (None, "") else Path(v).expanduser()


@attrs.frozen(kw_only=True)
class Build06Options:
    root: Path = attrs.field(converter=Path)
    data_root: Path
    model_name: str = DEFAULT_MODEL
    model_dir: Path | None = attrs.field(default=None, converter=_path)
    embedder: str = "legacy"
    allow_pickle: bool = False
    experiments: tuple[str, ...] | None = None
    train_name: str | None = None
    generate_missing_latents: bool = False
    batch_size: int = 64
    device: str = "auto"
    workers: int | None = None
    executor: str = "local"
    scheduler: str | None = None
    z_schema: str = "auto"
    include_sigma: bool = False
    qc_filter: bool = False
    min_coverage: float = 0.95
    strict: bool = False
    export_analysis_copies: bool = False
    overwrite: bool = False
    formats: tuple[str, ...] = attrs.field(default=("csv",), converter=parse_formats)
    report: bool = False
    latent_format: str = "csv"
    latents_root: Path | None = attrs.field(default=None, converter=_path)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> Build06Options:
        """Validate user options (CLI or API); every refusal is one clear line."""
        known = {f.name for f in attrs.fields(cls)}
        kw = {k: v for k, v in options.items() if k in known and v is not None}
        if "root" not in kw:
            raise UserError("--root is required")
        data_root = kw.get("data_root") or os.environ.get(DATA_ROOT_ENV)
        if not data_root:
            raise UserError(f"no data root: pass --data-root or set {DATA_ROOT_ENV}")
        kw["data_root"] = Path(data_root).expanduser()
        kw["root"] = Path(kw["root"]).expanduser()
        if not kw["root"].is_dir():
            raise UserError(f"pipeline root not found: {kw['root']}")
        if kw.get("z_schema", "auto") not in Z_SCHEMAS:
            raise UserError(f"unknown --z-schema {kw['z_schema']!r} (choose from {', '.join(Z_SCHEMAS)})")
        if not 0.0 <= float(kw.get("min_coverage", 0.95)) <= 1.0:
            raise UserError(f"--min-coverage must be between 0 and 1, got {kw['min_coverage']}")
        if int(kw.get("batch_size", 64)) < 1:
            raise UserError(f"--batch-size must be at least 1, got {kw['batch_size']}")
        if kw.get("workers") is not None and int(kw["workers"]) < 1:
            raise UserError(f"--workers must be at least 1, got {kw['workers']}")
        if kw.get("experiments"):
            kw["experiments"] = tuple(dict.fromkeys(check_safe_id(str(e), "experiment") for e in kw["experiments"]))
        else:
            kw.pop("experiments", None)
        if kw.get("train_name"):
            check_safe_id(kw["train_name"], "training set name")
        check_safe_id(kw.get("model_name", DEFAULT_MODEL), "model name")
        if kw.get("model_dir") is not None and not Path(kw["model_dir"]).is_dir():
            raise UserError(f"--model-dir not found: {kw['model_dir']}")
        for fmt in parse_formats(kw.get("formats", "csv")):
            if fmt != "csv":
                require(fmt)
        if kw.get("report"):
            require_report()
        if kw.get("latent_format", "csv") not in LATENT_FORMATS:
            raise UserError(f"unknown --latent-format {kw['latent_format']!r} (choose from {', '.join(LATENT_FORMATS)})")
        if kw.get("latent_format") == "parquet":
            require("parquet")
        if kw.get("latents_root") is not None and not Path(kw["latents_root"]).is_dir():
            raise UserError(f"--latents-root not found: {kw['latents_root']}")
        if kw.get("scheduler") and kw.get("executor", "local") != "dask":
            raise UserError("--scheduler needs --executor dask")
        return cls(**kw)
