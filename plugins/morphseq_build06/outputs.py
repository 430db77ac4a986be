"""Which outputs a Build06 run writes, replaces or skips, and why: decided here, once per
output, by one rule (``decide``) from its freshness.

df03 (with its unembedded list and sidecar), the training join and each analysis copy
is compared with what its sidecar says it was built from (see ``freshness``): a new
output is written, a current one skipped, and an out-of-date or foreign one replaced
only with ``--overwrite`` (a warning otherwise, naming the flag). A typed copy (Parquet,
h5ad) and the report go with the table they are made from.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import manifest, paths
from .built_from import InputsNow, row_changes
from .coverage import nothing_to_merge
from .formats import SUFFIX, sibling
from .freshness import load_sidecar, made_from, status
from .options import Build06Options
from .records import CHANGES, NEW, SIDECAR_OF, TABLES, Freshness, Output, OutputKind
from .report_spec import REPORT_NAME, check_color_by, made_with

UPDATE_HINT = "pass --overwrite to update it (nothing is re-embedded)"
GENERATE_ONLY_REASON = "--generate-only: only latent files and the manifest are written"


def decide(kind: OutputKind, path: Path, fresh: Freshness, overwrite: bool, experiment: str | None = None,
           fmt: str = "") -> Output:
    """The one rule: write what is new, skip what is current, replace what is out of date or
    foreign only with --overwrite."""
    out = Output(kind=kind, path=path, action="write", experiment=experiment, freshness=fresh, fmt=fmt)
    if fresh.status == "new":
        return out
    if fresh.status == "current":
        return attrs.evolve(out, action="skip", reason="current")
    if overwrite:
        return attrs.evolve(out, action="overwrite", reason=f"{fresh.describe()}; --overwrite")
    hint = UPDATE_HINT if fresh.status == "out-of-date" else "pass --overwrite to replace it"
    return attrs.evolve(out, action="skip", reason=f"{fresh.describe()}; {hint}")


def _fresh(path: Path, sidecar: Path, data: Mapping[str, Any], current: Callable[[Mapping], dict],
           changing: Mapping[str, str], now: InputsNow, *, count_rows: bool = False,
           held: Collection[str] | None = None) -> Freshness:
    """``count_rows``: for an output whose records are df02's (df03, an analysis copy),
    count the df02 rows changed since it was built; ``held``: the only experiments whose
    latent files the output is built from (a record that lists others was made before that rule)."""
    entry = data.get("files", {}).get(path.name)
    recorded = entry.get("built_from") if isinstance(entry, dict) else None
    how = {e.experiment: f"not merged: {e.left_out}" if e.left_out else f"{e.written_as} by this run"
           for e in now.experiments if e.left_out or e.written_as}
    if held is not None and isinstance(recorded, dict) and isinstance(recorded.get("latents"), dict):
        recorded = {**recorded, "latents": {e: v for e, v in recorded["latents"].items() if e in held}}
        entry = {**entry, "built_from": recorded}
        changing = {e: what for e, what in changing.items() if e in held}
    qc = (recorded or {}).get("options", {}).get("qc_filter")
    counter = functools.partial(row_changes, path, now) if count_rows and not qc else None
    return status(path, sidecar, entry, lambda: current(recorded or {}), changing, counter, how)


def plan_outputs(opts: Build06Options, *, now: InputsNow, store: Path
                 ) -> tuple[list[Output], dict[OutputKind, dict[str, Any]], list[str]]:
    """(outputs, the sidecars found by output kind, warnings for the outputs left out of date)."""
    changing = {e.experiment: CHANGES[e.action] for e in now.experiments if e.action in CHANGES}
    df03 = paths.df03(opts.root)
    records = {OutputKind.DF03: load_sidecar(paths.sidecar(df03))}
    fresh = _fresh(df03, paths.sidecar(df03), records[OutputKind.DF03], now.record, changing, now, count_rows=True)
    listing = _fresh(paths.unembedded(df03), paths.sidecar(df03), records[OutputKind.DF03], now.record, changing, now)
    if fresh.status == "current" and listing.status != "current":
        fresh = Freshness(status="out-of-date", reasons=(f"{paths.unembedded(df03).name} is {listing.describe()}",))
    main = decide(OutputKind.DF03, df03, fresh, opts.overwrite)
    if fresh.status in ("out-of-date", "foreign") and nothing_to_merge(now.experiments):
        # a mistyped --model-name or --data-root must not replace a df03 that has embeddings
        main = attrs.evolve(main, action="skip", reason=f"{fresh.describe()}; but this run has no latent file to "
                            "merge (check --model-name and --data-root); df03 kept")
    follow = f"kept with df03, which is {fresh.short}" if not main.writes else ""
    outputs = [main] + [
        Output(kind=k, path=p, action="skip" if follow else ("overwrite" if p.exists() else "write"),
               reason=follow, freshness=fresh)
        for k, p in ((OutputKind.UNEMBEDDED, paths.unembedded(df03)), (OutputKind.SIDECAR, paths.sidecar(df03)))]
    warnings = [f"df03 {df03} is {fresh.describe()}; not updated: {main.reason[len(fresh.describe()) + 2:]}"
                + _beside(opts, [df03]) if main.action == "skip" and fresh.status != "current" else ""]
    if opts.train_name:
        out, warning = _training(opts, now, records, changing)
        outputs.append(out)
        warnings.append(warning)
    warnings += _stale_training_joins(opts, now, changing)
    if opts.export_analysis_copies:
        copies, warning = _copies(opts, now, records, changing)
        outputs += copies
        warnings.append(warning)
    else:
        warnings.append(_stale_copies(opts, now, changing))
    if opts.report:
        check_color_by(opts.report_color_by, now.df02.names, now.df02_path)
    extra, extra_warnings = _typed_and_report(outputs, opts, records)
    outputs += extra
    warnings += extra_warnings
    # each table's record, unless there is nothing of it (a training set not found)
    outputs += [_record_of(outputs, kind) for kind in (OutputKind.TRAINING, OutputKind.ANALYSIS)
                if any(o.kind is kind and (o.writes or o.path.exists()) for o in outputs)]
    if not main.writes and any(o.writes for o in extra if o.kind in (OutputKind.DF03, OutputKind.REPORT)):
        # df03 stays; its record gains the typed copies and the report this run writes beside it
        outputs = [attrs.evolve(o, action="overwrite", reason="records the typed copies and report written")
                   if o.kind is OutputKind.SIDECAR else o for o in outputs]
    if changing:
        path = store / manifest.MANIFEST_NAME
        what = "; ".join(f"{e} {how}" for e, how in changing.items())
        fresh = Freshness(status="out-of-date", reasons=(f"latent files to record: {what}",)) if path.exists() else NEW
        outputs.append(Output(kind=OutputKind.MANIFEST, path=path, action="overwrite" if path.exists() else "write",
                              reason="updated for each latent file written", freshness=fresh))
    return outputs, records, [w for w in warnings if w]


def _made_from(csv: Output, kind: OutputKind, path: Path, overwrite: bool,
               records: Mapping[OutputKind, Mapping[str, Any]], fmt: str = "",
               made_with: Mapping[str, Any] | None = None) -> Output:
    """A typed copy (Parquet, h5ad) or the report, decided with the table it is made from."""
    kept = Output(kind=kind, path=path, action="skip", experiment=csv.experiment, freshness=csv.freshness, fmt=fmt,
                  reason=f"kept with {csv.path.name}, which is {csv.freshness.short}")
    if not csv.writes and csv.freshness.status != "current":
        # the table is kept as it is, and this run's merge does not hold its rows: a typed copy
        # made from the merge would not match it, nor would a report describe df03 on disk
        return kept
    if not path.exists():
        return Output(kind=kind, path=path, action="write", experiment=csv.experiment, fmt=fmt)
    if csv.writes:
        return Output(kind=kind, path=path, action="overwrite", reason=f"with {csv.path.name}",
                      experiment=csv.experiment, freshness=csv.freshness, fmt=fmt)
    # the table stays: its typed copy is as current as it only if this tool made it from it as it is
    fresh = copy_freshness(path, csv, records, made_with)
    if fresh.status == "current":
        return attrs.evolve(kept, reason=f"as {csv.path.name}: {csv.reason}")
    return decide(kind, path, fresh, overwrite, csv.experiment, fmt)


def _record_of(outputs: Sequence[Output], kind: OutputKind) -> Output:
    """The sidecar of the outputs of ``kind`` (the training join's, the analysis copies'):
    rewritten when one of them, or one of their typed copies, is written."""
    group = [o for o in outputs if o.kind is kind]
    path = sidecar_of(group[0])
    record = SIDECAR_OF[kind]
    if any(o.writes for o in group):
        fresh = Freshness(status="out-of-date", reasons=("records the files written beside it",)) \
            if path.exists() else NEW
        return Output(kind=record, path=path, action="overwrite" if path.exists() else "write",
                      reason="records the files written beside it", freshness=fresh)
    return Output(kind=record, path=path, action="skip", reason="nothing beside it is written",
                  freshness=Freshness(status="current") if path.exists() else NEW)


def sidecar_of(table: Output) -> Path:
    """The record of a table output, where its typed copies (and df03's report) are recorded too."""
    if table.kind is OutputKind.ANALYSIS:
        return table.path.parent / paths.COPIES_SIDECAR
    return paths.sidecar(table.path)


def copy_freshness(path: Path, table: Output, records: Mapping[OutputKind, Mapping[str, Any]],
                   made_with: Mapping[str, Any] | None = None) -> Freshness:
    """Whether a typed copy (or the report) is what this tool made from ``table`` as it is now
    (and, for the report, with these options), as the table's record says."""
    entry = records.get(table.kind, {}).get("files", {}).get(path.name)
    recorded = entry.get("built_from", {}) if isinstance(entry, dict) else {}
    return status(path, sidecar_of(table), entry, lambda: made_from(table.path, made_with, recorded.get("made_from")),
                  {})


def _training(opts: Build06Options, now: InputsNow, records: dict[OutputKind, dict[str, Any]],
              changing: Mapping[str, str]) -> tuple[Output, str]:
    train_in, train_out = paths.training_input(opts.root, str(opts.train_name)), paths.training_output(opts.root, str(opts.train_name))
    if not train_in.is_file():
        return (Output(kind=OutputKind.TRAINING, path=train_out, action="skip", reason=f"{train_in} not found"),
                f"training metadata not found: {train_in}")
    side = paths.sidecar(train_out)
    records[OutputKind.TRAINING] = load_sidecar(side)
    fresh = _fresh(train_out, side, records[OutputKind.TRAINING], lambda rec: now.record(rec, training=train_in), changing,
                   now, held=now.held_by(train_in))
    out = decide(OutputKind.TRAINING, train_out, fresh, opts.overwrite)
    skipped = not out.writes and fresh.status != "current"
    return out, (f"training join {train_out} is {fresh.describe()}; not updated: {UPDATE_HINT}"
                 + _beside(opts, [train_out]) if skipped else "")


def _copies(opts: Build06Options, now: InputsNow, records: dict[OutputKind, dict[str, Any]],
            changing: Mapping[str, str]) -> tuple[list[Output], str]:
    folder = paths.analysis_dir(opts.data_root, now.model.name)
    side = folder / paths.COPIES_SIDECAR
    records[OutputKind.ANALYSIS] = load_sidecar(side)
    out = []
    for e in now.experiments:
        if not (e.selected and e.df02_rows):
            continue
        path = paths.analysis_copy(opts.data_root, now.model.name, e.experiment)
        mine = {e.experiment: changing[e.experiment]} if e.experiment in changing else {}
        fresh = _fresh(path, side, records[OutputKind.ANALYSIS], functools.partial(now.record, only=e.experiment), mine,
                       now, count_rows=True)
        out.append(decide(OutputKind.ANALYSIS, path, fresh, opts.overwrite, e.experiment))
    stale = [o for o in out if not o.writes and o.freshness.status != "current"]
    warning = (f"{len(stale)} analysis cop{'y is' if len(stale) == 1 else 'ies are'} out of date or not written by "
               f"this tool ({', '.join(str(o.experiment) for o in stale)}); not updated: pass --overwrite to update "
               f"them{_beside(opts, [o.path for o in stale])}" if stale else "")
    return out, warning


def _stale_copies(opts: Build06Options, now: InputsNow, changing: Mapping[str, str]) -> str:
    """A run without --export-analysis-copies still says which copies written before no
    longer match what df03 holds (or will hold after this run), so that none goes stale unsaid."""
    folder = paths.analysis_dir(opts.data_root, now.model.name)
    side = folder / paths.COPIES_SIDECAR
    data = load_sidecar(side)
    stale = []
    for e in now.experiments:
        path = paths.analysis_copy(opts.data_root, now.model.name, e.experiment)
        if path.name not in data.get("files", {}):
            continue
        mine = {e.experiment: changing[e.experiment]} if e.experiment in changing else {}
        if _fresh(path, side, data, functools.partial(now.record, only=e.experiment), mine, now).status == "out-of-date":
            stale.append(e.experiment)
    if not stale:
        return ""
    return (f"{len(stale)} analysis cop{'y is' if len(stale) == 1 else 'ies are'} out of date in {folder} "
            f"({', '.join(stale)}): not built from df02 and the latent files as they are now; pass "
            "--export-analysis-copies --overwrite to update them"
            + _beside(opts, [paths.analysis_copy(opts.data_root, now.model.name, e) for e in stale]))


def _stale_training_joins(opts: Build06Options, now: InputsNow, changing: Mapping[str, str]) -> list[str]:
    """The training joins this tool wrote (other than --train-name's) that no longer match
    their training metadata and latent files as they are now (or will be after this run):
    said on every run, as stale analysis copies are, so that none goes stale unsaid."""
    name = paths.sidecar(Path(paths.TRAINING_OUTPUT)).name
    warnings = []
    for side in sorted(Path(opts.root, "training_data").glob(f"*/{name}")):
        train = side.parent.name
        train_in, train_out = paths.training_input(opts.root, train), paths.training_output(opts.root, train)
        if train == opts.train_name or not (train_in.is_file() and train_out.is_file()):
            continue
        fresh = _fresh(train_out, side, load_sidecar(side), functools.partial(now.record, training=train_in),
                       changing, now, held=now.held_by(train_in))
        if fresh.status == "out-of-date":
            warnings.append(f"training join {train_out} is out of date ({'; '.join(fresh.reasons)}): pass "
                            f"--train-name {train} --overwrite to update it{_beside(opts, [train_out])}")
    return warnings


def found_beside(tables: Sequence[Path]) -> tuple[list[str], bool]:
    """What is already beside these tables: the typed formats with a copy there, and whether
    df03's report is."""
    fmts = [f for f, suffix in SUFFIX.items() if any(t.with_suffix(suffix).exists() for t in tables)]
    return fmts, any(t.name == paths.DF03_NAME and (t.parent / REPORT_NAME).exists() for t in tables)


def _beside(opts: Build06Options, tables: Sequence[Path]) -> str:
    """The flags that would also update what is beside these tables (typed copies, df03's
    report) and this run does not ask for: advice that leaves nothing behind its table."""
    fmts, report = found_beside(tables)
    missing = [f for f in fmts if f not in opts.formats]
    flags = [f"--formats {','.join([*opts.formats, *missing])}"] if missing else []
    if report and not opts.report:
        flags.append("--report")
    return f" (with {' '.join(flags)}, for the copies beside it)" if flags else ""


def _typed_and_report(outputs: Sequence[Output], opts: Build06Options,
                      records: Mapping[OutputKind, Mapping[str, Any]]) -> tuple[list[Output], list[str]]:
    """The typed copies of each table, and the report; also the warnings about typed
    copies this run leaves behind their table."""
    extra, warnings = [], []
    for o in outputs:
        if o.kind not in TABLES:
            continue
        for fmt in SUFFIX:
            path = sibling(o.path, fmt)
            if fmt not in opts.formats:
                if path.exists() and o.writes:
                    warnings.append(f"{path} is not rewritten by this run (--formats has no {fmt}): it will no "
                                    f"longer match {o.path.name}; add {fmt} to --formats to update it")
                elif path.exists() and (fresh := copy_freshness(path, o, records)).status != "current" \
                        and not fresh.reasons[0].startswith("no record of it"):
                    warnings.append(f"{path} is out of date ({'; '.join(fresh.reasons)}); add {fmt} to --formats "
                                    "and pass --overwrite to update it")
                continue
            if not o.writes and not o.path.exists():  # skipped for want of input: so is its copy
                extra.append(attrs.evolve(o, fmt=fmt, path=path))
                continue
            out = _made_from(o, o.kind, path, opts.overwrite, records, fmt)
            extra.append(out)
            if not out.writes and out.freshness.status != "current":
                state = out.freshness.describe()
                warnings.append(f"{path} is {out.reason}" if out.reason.startswith(state)
                                else f"{path} is {state}; not updated: {out.reason}")
    df03 = next(o for o in outputs if o.kind is OutputKind.DF03)
    report = df03.path.with_name(REPORT_NAME)
    if opts.report:
        # the report describes df03 as on disk: current while df03 and the report's options are
        out = _made_from(df03, OutputKind.REPORT, report, opts.overwrite, records,
                         made_with=made_with(opts.report_color_by))
        extra.append(out)
        if not out.writes and out.freshness.status in ("out-of-date", "foreign") and out.path.exists():
            warnings.append(f"{out.path} is {out.reason}")
    elif report.exists() and df03.writes:  # as a typed copy left out of --formats
        warnings.append(f"{report} is not rewritten by this run (no --report): it will no longer describe "
                        f"{df03.path.name}; pass --report to update it")
    elif report.exists() and (fresh := copy_freshness(report, df03, records)).status == "out-of-date":
        warnings.append(f"{report} is out of date ({'; '.join(fresh.reasons)}); pass --report --overwrite "
                        "to update it")
    return extra, warnings


def restrict_to_manifest(outputs: Sequence[Output]) -> list[Output]:
    """With --generate-only every output but the manifest is skipped."""
    return [o if o.kind is OutputKind.MANIFEST else attrs.evolve(o, action="skip", reason=GENERATE_ONLY_REASON)
            for o in outputs]
