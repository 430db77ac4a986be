"""How the API meets the stage: the host, a run of the stage, its plan, and the checks of
the API's arguments (each a one-line :class:`~morphseq_stages.UserError`, as the CLI's)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import structlog

from morphseq_stages.embedders import EmbedderRequest, ModelUnavailable
from morphseq_stages.errors import UserError
from morphseq_stages.files import check_safe_id
from morphseq_stages.options import validate

from . import paths
from .declared import Build06StagePlan
from .formats import require
from .frames import StoreTable
from .freshness import load_sidecar
from .options import DATA_ROOT_ENV, Build06Options
from .outputs import found_beside
from .own_tables import OutputExists
from .records import Output, OutputKind
from .report_spec import REPORT_NAME, require_report
from .sources import locate

if TYPE_CHECKING:
    from morphseq_stages import Host, RunResult

log = structlog.get_logger()
STAGE = "build06"
PathLike = str | os.PathLike


class PlannedRun(dict[str, Any]):
    """What a run would do, from ``dry_run=True``: the dict ``--dry-run --json`` prints
    (``df03``, ``df03_status``, ``experiments``, ``outputs``, ``reads``, ``writes``,
    ``warnings``, ...), shown in a notebook or by ``print`` as the console's plan table."""

    def __init__(self, plan: Build06StagePlan) -> None:
        super().__init__(json.loads(json.dumps(plan.as_dict(), default=str)))
        self.text = plan.render()

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython and Jupyter
        printer.text(self.text)


@functools.lru_cache(maxsize=1)
def host() -> Host:
    from morphseq_stages import get_host

    return get_host()


def call(options: Mapping[str, Any], *, dry_run: bool = False) -> RunResult:
    from morphseq_stages import run_stage

    return run_stage(host(), STAGE, {k: v for k, v in options.items() if v is not None}, dry_run=dry_run)


def plan_of(result: RunResult) -> Build06StagePlan:
    if not isinstance(result.plan, Build06StagePlan):
        raise TypeError(f"the build06 plan phase returned a {type(result.plan).__name__}")
    return result.plan


@overload
def path_arg(value: PathLike, what: str) -> Path: ...


@overload
def path_arg(value: PathLike | None, what: str) -> Path | None: ...


def path_arg(value: PathLike | None, what: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise UserError(f"{what} must be a path, got {value!r}")
    if not os.fspath(value).strip():  # Path("") is the current folder: never what was meant
        raise UserError(f"{what} is empty: pass a folder (an empty path would mean the current folder)")
    return Path(value).expanduser()


def model_arg(value: Any) -> str:
    """A model name is text: ``5`` would silently name the folder ``5``."""
    if not isinstance(value, str):
        raise UserError(f"model_name must be text (a model folder's name), got {value!r}")
    return check_safe_id(value, "model name")


def data_root_arg(value: PathLike | None) -> Path:
    """``data_root``, else ``$MORPHSEQ_DATA_ROOT``, as the CLI resolves it."""
    found = path_arg(value, "data_root") or path_arg(os.environ.get(DATA_ROOT_ENV) or None, DATA_ROOT_ENV)
    if found is None:
        raise UserError(f"no data root: pass --data-root or set {DATA_ROOT_ENV}")
    return found


def names_arg(experiments: str | Sequence[str] | None) -> list[str] | None:
    """A bare string is one experiment (never its characters)."""
    if experiments is None:
        return None
    items = [experiments] if isinstance(experiments, str | int) else list(experiments)
    return [check_safe_id(str(e), "experiment") for e in items]


def existing_latents(data_root: PathLike | None, model_name: str, names: list[str], options: Mapping[str, Any]) -> dict[str, Path]:
    """The latent files already in the store, found as a run's plan finds them (no df02 needed)."""
    base = data_root_arg(data_root)
    registry = host().registry
    checked = validate(Build06Options,
                       {"root": base, "data_root": base, "model_name": model_name, **options}, STAGE)
    request = EmbedderRequest(model_name=model_name, model_dir=checked["model_dir"], data_root=base)
    try:
        name = registry.describe_model(checked["embedder"], request).name
    except ModelUnavailable as exc:  # reading latents needs no model folder; the store is named after the model
        name = exc.name
    store = paths.store(base, checked["embedder"], name)
    found = {}
    for e in names:
        path = locate(store, e, checked["latent_format"], checked["latents_root"]).path
        if path.exists():
            found[e] = path
        else:
            log.warning("latents.missing", experiment=e, path=str(path))
    return found


def beside(tables: Sequence[Path]) -> dict[str, Any]:
    """The options that rewrite what is already beside these tables with them: the typed
    copies' ``formats``, and df03's report (drawn as it was). A step function never leaves
    one behind its table; one whose library is missing is left out (the stage warns of it)."""
    fmts, report = found_beside(tables)
    options: dict[str, Any] = {"formats": ["csv"]}
    for fmt in fmts:
        with contextlib.suppress(UserError):
            require(fmt)
            options["formats"].append(fmt)
    if report:
        with contextlib.suppress(UserError):
            require_report()
            df03 = next(t for t in tables if t.name == paths.DF03_NAME)
            entry = load_sidecar(paths.sidecar(df03)).get("files", {}).get(REPORT_NAME)
            made = entry.get("built_from", {}).get("made_with", {}) if isinstance(entry, dict) else {}
            options.update(report=True, report_color_by=made.get("report_color_by") or None)
    return options


def store_plan(root: Path, source: StoreTable, overwrite: bool, tables: Sequence[Path], **options: Any
               ) -> tuple[dict[str, Any], Build06StagePlan, list[str]]:
    """The run that merges a latent store's files (``source``) into ``root``'s outputs
    (``tables``: those the caller asks for), its plan, and the experiments whose latent file
    the run reads but the table lacks (or holds as other files)."""
    run = {"root": root, "data_root": source.data_root, "model_name": source.model_name,
           "embedder": source.embedder, "z_schema": source.z_schema, "latent_format": source.latent_format,
           "overwrite": overwrite, **beside(tables), **options}
    plan = plan_of(call(run, dry_run=True))
    read = {e.experiment: e.latent_path.resolve() for e in plan.experiments if e.latent_path.exists()}
    return run, plan, sorted(e for e in read if source.files.get(e) != read[e])


def df03_of(result: RunResult, overwrite: bool) -> Path:
    """df03's path after a run; :class:`OutputExists` (or, with ``overwrite``, a
    :class:`UserError`) when the run kept a df03 that is not current."""
    path = Path(plan_of(result).df03_path)
    df03 = result.summary.get("df03")  # absent with generate_only: no df03 is asked for
    if df03 and not df03.get("written") and df03.get("status") != "current":
        state = str(df03.get("reason", "")).split("; pass --overwrite")[0]
        if overwrite:
            raise UserError(f"df03 {path} kept: {state}")
        raise OutputExists(f"df03 {path} is {state}: kept; pass overwrite=True to replace it")
    return path


def written_or_current(outputs: Sequence[Output], overwrite: bool) -> None:
    """:class:`OutputExists` (or, with ``overwrite``, a :class:`UserError`) for an output
    the run kept although it is not current."""
    what = {OutputKind.TRAINING: "training join", OutputKind.ANALYSIS: "analysis copy"}
    for o in outputs:
        if not o.writes and o.freshness.status != "current":
            state = o.reason.split("; pass --overwrite")[0]
            if overwrite:
                raise UserError(f"{what[o.kind]} {o.path} kept: {state}")
            raise OutputExists(f"{what[o.kind]} {o.path} is {state}: kept; pass overwrite=True to replace it")


def stage_df03(df03: Path, data_root: Path, model_name: str, overwrite: bool) -> Build06StagePlan | None:
    """The plan of the run that wrote ``df03`` (its sidecar's options), when ``df03`` is a
    pipeline root's df03, written by the stage for this model and current; else None."""
    root = df03.parent.parent.parent
    recorded = load_sidecar(paths.sidecar(df03)).get("options")
    if paths.df03(root) != df03 or not isinstance(recorded, dict) or recorded.get("model_name") != model_name:
        return None
    same = ("embedder", "z_schema", "include_sigma", "qc_filter", "latent_format", "latents_root")
    copies = paths.analysis_copy(data_root, model_name, "*")
    run = {"root": root, "data_root": data_root, "model_name": model_name, "export_analysis_copies": True,
           "overwrite": overwrite, **beside(sorted(copies.parent.glob(copies.name))),
           **{k: recorded[k] for k in same if recorded.get(k) is not None}}
    try:
        plan = plan_of(call(run, dry_run=True))
    except UserError:  # its inputs are no longer there as the run had them: copy the file as it is
        return None
    return plan if plan.df03.freshness.status == "current" else None
