"""The invariants every Build06 run keeps (SPEC §12, issue 16), checked against the disk
after each step of the model-based test with the independent reading of ``world``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .world import (
    UNEMBEDDED,
    Expected,
    RunResult,
    Snapshot,
    World,
    expected,
    read_latent_file,
    sha256,
    split_records,
    table_mismatch,
)

ALLOWED_EXIT = {0, 2, 3, 75}
JOURNAL = ".morphseq-outputs.commit"


class Violation(AssertionError):
    """An invariant that does not hold, with what the run was and what is on disk."""


def fail(result: RunResult, what: str) -> None:
    raise Violation(f"{what}\n  command: {result.command()}\n  exit {result.code}\n  stderr: {result.stderr[-1500:]}")


def latent_rows(world: World) -> dict[Path, dict[str, tuple[Any, ...]]]:
    """Every latent row in the store, per file (the embeddings that exist)."""
    if not world.store.is_dir():
        return {}
    return {p: dict(read_latent_file(p).rows) for p in sorted(world.store.glob("morph_latents_*.*"))
            if p.suffix in (".csv", ".parquet")}


def leftovers(after: Snapshot) -> list[str]:
    return sorted(p for p in after.files if Path(p).name.startswith(".")
                  and (Path(p).name.endswith((".tmp", ".lock")) or Path(p).name == JOURNAL))


def summary_paths(result: RunResult) -> tuple[set[str], dict[str, str]]:
    data = result.json
    written = {str(p) for p in data.get("written", [])}
    skipped = {str(s["path"]): str(s.get("reason", "")) for s in data.get("skipped", []) if isinstance(s, dict)}
    return written, skipped


def check_run(world: World, before: Snapshot, after: Snapshot, result: RunResult,
              latents_before: dict[Path, dict[str, tuple[Any, ...]]]) -> None:
    """Every invariant of one run, from the disk before and after it."""
    if result.code not in ALLOWED_EXIT:
        fail(result, f"exit code {result.code} (allowed: {sorted(ALLOWED_EXIT)})")
    if "Traceback" in result.stderr:
        fail(result, "a traceback on stderr")
    if result.code != 0 and not result.stderr.strip():
        fail(result, "a failed run said nothing on stderr")
    if left := leftovers(after):
        fail(result, f"temporary, lock or journal files left: {left}")
    changed = before.changed(after)
    if result.options.dry_run:
        if touched := before.changed(after, rewrites=True) | (after.dirs ^ before.dirs):
            fail(result, f"a dry run changed the disk: {sorted(touched)}")
        return
    check_latents_kept(world, result, latents_before)
    if result.code == 0 and result.has_summary:
        check_summary(result, before, after, changed)
    elif result.code == 2 and changed and not result.kept:
        fail(result, f"a run refused as bad input changed files: {sorted(changed)}")
    check_recorded_sha256(world, result)
    check_current_outputs(world, result)


def check_latents_kept(world: World, result: RunResult, before: dict[Path, dict[str, tuple[Any, ...]]]) -> None:
    """No latent row that existed before a run is lost or altered; only --overwrite-latents
    re-embeds (the selected experiments' files)."""
    opts = result.options
    selected = set(opts.experiments) if opts.experiments else set(world.experiments())
    now = latent_rows(world)
    for path, rows in before.items():
        exp = path.stem[len("morph_latents_"):]
        # (the API's OutputExists, exit 2, comes after the latent files are written)
        if opts.overwrite_latents and exp in selected and (result.code != 2 or result.kept):
            continue
        if path not in now:
            fail(result, f"latent file {path} is gone")
        for snip, cells in rows.items():
            if now[path].get(snip) != cells:
                fail(result, f"latent row {snip} of {path.name} changed or lost: {cells} -> {now[path].get(snip)}")


def check_summary(result: RunResult, before: Snapshot, after: Snapshot, changed: set[str]) -> None:
    """``written`` names every file that changed, ``skipped`` none that did."""
    written, skipped = summary_paths(result)
    if not result.json:
        fail(result, f"no JSON summary on stdout: {result.stdout[:300]!r}")
    missing = sorted(p for p in written if p not in after.files)
    if missing:
        fail(result, f"summary says written but not on disk: {missing}")
    unlisted = sorted(changed - written)
    if unlisted:
        fail(result, f"files changed but not in the summary's written list: {unlisted}")
    touched = before.changed(after, rewrites=True)
    if bad := sorted(set(skipped) & touched):
        fail(result, f"summary says skipped but the file was rewritten: {bad}")


def _json_files(world: World) -> Iterable[Path]:
    for top in (world.root, world.data_root):
        yield from (p for p in top.rglob("*.json") if "models" not in p.parts)


def check_recorded_sha256(world: World, result: RunResult) -> None:
    """Every sha256 a sidecar, the manifest or a typed-copy record gives a file is that file's."""
    for record in _json_files(world):
        try:
            data = json.loads(record.read_text())
        except ValueError:
            fail(result, f"{record} is not JSON")
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict):
            continue
        for name, entry in files.items():
            target = record.parent / name
            if isinstance(entry, dict) and "sha256" in entry and target.is_file():
                if sha256(target) != entry["sha256"]:
                    fail(result, f"{record.name} records a sha256 for {target} that is not the file's")


def _called_current(path: Path, written: set[str], skipped: dict[str, str]) -> bool:
    return str(path) in written or skipped.get(str(path)) == "current"


def check_current_outputs(world: World, result: RunResult) -> None:
    """df03, the training join and the analysis copies that this run wrote or called
    current hold df02's (the training set's) records and the z of each row's latent row;
    typed copies recorded as made from their CSV as it is hold that CSV's values."""
    opts = result.options
    if opts.generate_only or result.code not in (0, 3):
        return
    written, skipped = summary_paths(result)
    exp = expected(world, opts)
    df03 = world.df03
    if result.interface == "api":
        # the API returns normally only when df03 is written or current
        if result.code == 0 and (why := table_mismatch(df03, world.df02, exp)):
            fail(result, f"build_df03_with_embeddings returned, but df03 is not df02 + z: {why}")
        return
    status = result.json.get("df03", {}) if isinstance(result.json.get("df03"), dict) else {}
    if df03.is_file() and (status.get("written") or status.get("status") == "current"):
        if why := table_mismatch(df03, world.df02, exp):
            fail(result, f"df03 called {'written' if status.get('written') else 'current'} is not df02 + z: {why}")
        check_unembedded(world, result, exp)
    if opts.train_name:
        out = world.train_output(opts.train_name)
        if out.is_file() and _called_current(out, written, skipped):
            if why := table_mismatch(out, world.train_input(opts.train_name), exp):
                fail(result, f"training join called current is not the training set + z: {why}")
    if opts.export_analysis_copies:
        ei = world.col("experiment_date")
        for copy in sorted(world.copies_dir.glob("df03_*.csv")):
            name = copy.stem[len("df03_"):]
            if name in world.experiments() and _called_current(copy, written, skipped):
                if why := table_mismatch(copy, world.df02, exp, keep=lambda r, e=name: r[ei] == e):
                    fail(result, f"analysis copy called current is not df03's rows of {name}: {why}")
    for folder in {df03.parent, world.copies_dir, *(world.train_output(t).parent for t in world.training_sets())}:
        check_typed_copies(result, folder, written, skipped)


def check_unembedded(world: World, result: RunResult, exp: Expected) -> None:
    listed = world.root / UNEMBEDDED
    if not listed.is_file():
        fail(result, f"df03 is there without {listed.name}")
    import csv

    with open(listed, newline="") as fh:
        ids = {r["snip_id"] for r in csv.DictReader(fh)}
    want = {s for s in world.snips() if exp.z_of(s) is None}
    if ids != want:
        fail(result, f"{listed.name} lists {sorted(ids ^ want)[:5]} wrongly (listed {len(ids)}, unembedded {len(want)})")


def check_typed_copies(result: RunResult, folder: Path, written: set[str], skipped: dict[str, str]) -> None:
    """Each typed copy whose record (in the sidecar of its table) says it was made from its
    CSV as the CSV is now holds the CSV's rows and z values."""
    files: dict = {}
    for record in [*folder.glob("embryo_metadata_*.json"), folder / "df03_copies.json"]:
        try:
            files.update(json.loads(record.read_text()).get("files", {}))
        except (OSError, ValueError, AttributeError):
            continue
    for name, entry in files.items():
        if not name.endswith((".parquet", ".h5ad")):
            continue
        path, csv_path = folder / name, (folder / name).with_suffix(".csv")
        made = (entry.get("built_from") or {}).get("made_from") if isinstance(entry, dict) else None
        if not (path.is_file() and csv_path.is_file() and isinstance(made, dict)):
            continue
        if sha256(path) != entry.get("sha256") or sha256(csv_path) != made.get("sha256"):
            continue  # not called current: a later run must say so
        if why := typed_mismatch(path, csv_path):
            fail(result, f"typed copy {path} recorded as made from {csv_path.name} as it is: {why}")


def _csv_columns(csv_path: Path) -> tuple[list[str], list[list[str]]]:
    import csv

    records = [next(csv.reader([r.decode()])) for r in split_records(csv_path.read_bytes())]
    return records[0], records[1:]


def typed_mismatch(path: Path, csv_path: Path) -> str | None:
    header, rows = _csv_columns(csv_path)
    z_idx = [i for i, n in enumerate(header) if n.startswith("z_mu_")]
    si = header.index("snip_id")
    snips = [r[si] for r in rows]
    z = [[float(r[i]) if r[i] != "" else math.nan for i in z_idx] for r in rows]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if table.num_rows != len(rows):
            return f"{table.num_rows} rows, the CSV {len(rows)}"
        if [str(s) for s in table.column("snip_id").to_pylist()] != snips:
            return "snip_id differs from the CSV's"
        for j, i in enumerate(z_idx):
            got = table.column(header[i]).to_pylist()
            if not all(_same(g, w[j]) for g, w in zip(got, z, strict=True)):
                return f"column {header[i]} differs from the CSV's"
        return None
    if path.suffix == ".h5ad":
        import anndata
        import pandas as pd

        adata = anndata.read_h5ad(path)
        # a repeated snip_id (a training set may repeat a row) is made unique as documented,
        # the anndata way: the second gets "-1"
        if list(adata.obs_names) != list(anndata.utils.make_index_unique(pd.Index(snips))):
            return "obs names are not the CSV's snip ids (made unique)"
        x = adata.obsm["X_morph"]
        if x.shape != (len(rows), len(z_idx)):
            return f"X_morph has shape {x.shape}, the CSV {len(rows)} x {len(z_idx)}"
        for k, row in enumerate(z):
            if not all(_same(float(g), w) for g, w in zip(x[k], row, strict=True)):
                return f"X_morph row {k} ({snips[k]}) differs from the CSV's"
    return None


def _same(got: Any, want: float) -> bool:
    if got is None or (isinstance(got, float) and math.isnan(got)):
        return math.isnan(want)
    return float(got) == want


def check_rerun(first: RunResult, before: Snapshot, after: Snapshot, rerun: RunResult) -> None:
    """An identical rerun after a completed run changes no file."""
    if rerun.code != first.code or rerun.kept != first.kept:
        fail(rerun, f"an identical rerun exited {rerun.code}, the run {first.code}")
    touched = before.changed(after, rewrites=True)
    if first.options.overwrite_latents:
        # --overwrite-latents re-embeds the selected experiments on every run (the upstream
        # flag): the same model on the same images gives the same bytes; only the manifest's
        # written_at may differ
        other_bytes = before.changed(after)
        touched = {p for p in touched if p in other_bytes or not (Path(p).name.startswith("morph_latents_")
                                                           or Path(p).name == "manifest.json")}
    if touched:
        fail(rerun, f"an identical rerun rewrote files: {sorted(touched)}")


GENERATING = ("generate", "regenerate", "top-up")


def check_plan_followed(plan: RunResult, real: RunResult) -> None:
    """A dry run's plan is what the real run then does: the same exit, every output it
    plans to write written and every one it plans to skip skipped, every latent file it
    plans to generate generated (or its images all unreadable)."""
    if plan.interface != real.interface:
        fail(real, f"a dry run through {plan.interface} followed by a run through {real.interface}")
    if plan.code == 0 and not (plan.json.get("outputs") and "experiments" in plan.json):
        fail(plan, f"the dry run exited 0 and showed no plan: {plan.stdout[:300]!r}")
    if plan.code != real.code and not (plan.code == 0 and real.code == 3 and real.options.strict) \
            and not (plan.code == 0 and _api_kept_df03(plan, real)):
        fail(real, f"the dry run exited {plan.code}, the real run {real.code}")
    if plan.code != 0 or real.code != 0:
        return
    # the API returns no summary: what it wrote is what it rewrote on disk
    written = summary_paths(real)[0] if real.has_summary else set(real.touched)
    # in a run that embeds, what the plan says of existing outputs is a forecast: the run decides
    # them again from the latent files it wrote (a re-embedding into the same bytes leaves them current)
    embeds = any(e.get("action") in GENERATING for e in plan.json.get("experiments", []))
    for out in plan.json.get("outputs", []):
        path, action = str(out.get("path")), out.get("action")
        # a plan assumes every image decodes: one that did not may leave a planned output unwritten
        if (action == "write" or (action == "overwrite" and not embeds)) and path not in written \
                and not _undecodable(real):
            fail(real, f"the plan would {action} {path} ({out.get('reason')}); the run did not")
        if action == "skip" and path in written:
            fail(real, f"the plan would skip {path} ({out.get('reason')}); the run wrote it")
    planned = {str(o.get("path")) for o in plan.json.get("outputs", [])}
    planned |= {str(e.get("latent_file")) for e in plan.json.get("experiments", [])}
    if unplanned := {p for p in written if p not in planned and Path(p).name != "manifest.json"}:
        fail(real, f"the run wrote {sorted(unplanned)}, which its plan does not list")
    generated = ({Path(p).stem for p in real.json.get("generated", {}).get("files", [])} if real.has_summary
                 else {Path(p).stem for p in real.touched if Path(p).name.startswith("morph_latents_")})
    planned = {Path(e["latent_file"]).stem for e in plan.json.get("experiments", []) if e.get("action") in GENERATING}
    if extra := generated - planned:
        fail(real, f"the run generated {sorted(extra)}, which the plan did not plan")


def _undecodable(real: RunResult) -> bool:
    """Whether the run found images it could not decode among those it embedded."""
    if real.has_summary:
        return bool(real.json.get("generated", {}).get("unreadable_images"))
    return '"image.unreadable"' in real.stderr


def _api_kept_df03(plan: RunResult, real: RunResult) -> bool:
    """Whether build_df03_with_embeddings raised for a df03 it kept not current (OutputExists;
    with ``overwrite``, kept for want of a latent file, a UserError) where the CLI exits 0 and
    says so: as the plan said (df03 skipped, not current), or because no image of what it
    planned to embed could be read (which no plan knows before decoding them)."""
    status = plan.json.get("df03_status", {})
    planned_kept = status.get("action") == "skip" and status.get("status") != "current"
    said_kept = real.kept or (real.options.overwrite and " kept: " in real.stderr)
    return real.interface == "api" and real.code == 2 and said_kept and (planned_kept or _undecodable(real))
