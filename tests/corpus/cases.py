"""Scenarios through the public API, the reliability cases that end with files on disk
(as ``tests/reliability`` sets them up), and the Snakemake example."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from reliability import scenario as roots

from morphseq_build06.testing import make_pipeline_root
from morphseq_stages.files import JOURNAL

from . import REPO
from .scenarios import EXP, EXP2, MODEL, b06, edit_df02, store, write_training_set
from .session import Session

# -- the public API ------------------------------------------------------------------------


def _call(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"call": name, "args": [str(a) if isinstance(a, Path) else a for a in args], "kwargs": kwargs}


def api_build(s: Session) -> None:
    """api.build_df03_with_embeddings: a build, a rerun, a dry run and declared_files, kept, --overwrite, a typo."""
    synth = roots.merge_root(s.base)
    r, d = synth.root, synth.data_root
    s.api("build", [_call("build_df03_with_embeddings", r, d, MODEL, formats=["csv", "parquet"],
                          export_analysis=True, workers=1)])
    s.api("identical-rerun", [_call("build_df03_with_embeddings", r, d, MODEL, formats=["csv", "parquet"],
                                    export_analysis=True, workers=1)])
    s.api("dry-run-and-declared", [_call("build_df03_with_embeddings", r, d, MODEL, dry_run=True),
                                   _call("declared_files", r, d, model_name=MODEL, generate_missing_latents=True)])
    edit_df02(synth, 3, "genotype", "lmx1b")
    s.api("out-of-date-kept", [_call("build_df03_with_embeddings", r, d, MODEL)])
    s.api("overwrite", [_call("build_df03_with_embeddings", r, d, MODEL, overwrite=True, train_name=None)])
    s.api("misspelled-option", [_call("build_df03_with_embeddings", r, d, MODEL, min_coverag=0)])


def api_pieces(s: Session) -> None:
    """The API's pieces: ensure_latents, load_latents, merge_df02, export copies, the training join; then the CLI."""
    synth = roots.model_root(s.base)
    r, d = str(synth.root), str(synth.data_root)
    write_training_set(synth, "t", [0, 3, 4, 8])
    s.api("ensure-load-merge-export", [
        _call("ensure_latents_for_experiments", d, MODEL, None, True, root=r, workers=1, batch_size=8),
        _call("load_latents", {"result": 0}),
        _call("merge_df02_with_embeddings", r, {"result": 1}),
        _call("export_df03_copies_by_experiment", {"result": 2}, d, MODEL),
        _call("merge_train_with_embeddings", r, "t", {"result": 1}),
    ])
    s.cli("cli-after-api", *b06(synth, "--export-analysis-copies", "--train-name", "t", "--json"))
    s.api("load-bio-nuisance-and-merge-other-name", [
        _call("ensure_latents_for_experiments", d, MODEL, [EXP, EXP2], root=r),
        _call("load_latents", {"result": 0}, "bio_nuisance"),
        _call("merge_df02_with_embeddings", r, {"result": 1}, out_name="df03_two_experiments.csv"),
        _call("resolve_model_dir", d, MODEL),
    ])
    s.api("merge-again-kept", [
        _call("ensure_latents_for_experiments", d, MODEL, root=r),
        _call("load_latents", {"result": 0}),
        _call("merge_df02_with_embeddings", r, {"result": 1}, out_name="df03_two_experiments.csv"),
    ])


# -- the reliability cases -----------------------------------------------------------------

def _lock(path: Path, pid: int) -> None:
    path.write_text(json.dumps({"pid": pid, "host": "h", "since": "s"}))


def dead_run_leftovers(s: Session) -> None:
    """A dead run's lock and temporary file, a lock beside current copies, a half-renamed set, an empty lock."""
    synth = roots.merge_root(s.base)
    folder = synth.df02.parent
    _lock(folder / ".embryo_metadata_df03.csv.lock", 4_000_321)
    (folder / ".embryo_metadata_df03.csv.k3Jx_9aZ.tmp").write_bytes(b"half a df03")
    s.cli("lock-and-temp-taken-over", *b06(synth, "--export-analysis-copies", "--json"))
    copies = synth.data_root / "metadata" / "metadata_n_embeddings" / MODEL
    _lock(copies / ".df03_copies.lock", 4_000_322)
    s.cli("lock-beside-current-copies", *b06(synth, "--export-analysis-copies", "--json"))
    (folder / ".embryo_metadata_df03.json.k3Jx_9aZ.tmp").write_text("{}")
    (folder / JOURNAL).write_text(json.dumps([[".embryo_metadata_df03.json.k3Jx_9aZ.tmp", "embryo_metadata_df03.json"]]))
    s.cli("half-renamed-set-dry-run", *b06(synth, "--dry-run", "--json"))
    s.cli("half-renamed-set-recovered", *b06(synth, "--json"))
    (folder / ".embryo_metadata_df03.csv.lock").write_bytes(b"")
    s.cli("empty-lock", *b06(synth, "--overwrite", "--json"))


def _with_cell(synth: Any, cell: str, row: int = 1, column: int = 2) -> None:
    """Put ``cell`` (raw CSV text) in one z column of one row of EXP's latent file."""
    path = store(synth) / f"morph_latents_{EXP}.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    z = [i for i, n in enumerate(header) if n.startswith("z_mu")][column]
    cells = lines[row + 1].split(",")
    cells[z] = cell
    lines[row + 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def latent_cells(s: Session) -> None:
    """Latent cells that are not one number (inf, a quoted decimal comma) and one that is (+1.5e-03)."""
    synth = roots.merge_root(s.base)
    _with_cell(synth, "inf")
    _with_cell(synth, "+1.5e-03", row=2)
    s.cli("not-one-number-typed", *b06(synth, "--formats", "csv,parquet,h5ad", "--min-coverage", "0", "--json"))
    s.cli("not-one-number-strict", *b06(synth, "--strict", "--overwrite", "--min-coverage", "0"))
    _with_cell(synth, '"0,5"', row=3)
    s.cli("decimal-comma-cell", *b06(synth, "--overwrite", "--min-coverage", "0", "--json"))


def latent_sources(s: Session) -> None:
    """A store CSV changed since its manifest entry, then with a dimension fewer, then a repeated z column."""
    synth = roots.model_root(s.base)
    s.cli("generate", *b06(synth, "--generate-missing-latents", "--json"))
    path = store(synth) / f"morph_latents_{EXP}.csv"
    text = path.read_text().splitlines()
    cells = text[1].split(",")
    cells[-1] = "0.125"
    text[1] = ",".join(cells)
    path.write_text("\n".join(text) + "\n")
    s.cli("changed-since-manifest", *b06(synth, "--overwrite", "--min-coverage", "0", "--json"))
    lines = [ln.split(",") for ln in path.read_text().splitlines()]
    at = max(i for i, n in enumerate(lines[0]) if n.startswith("z_mu"))
    path.write_text("\n".join(",".join(c[:at] + c[at + 1:]) for c in lines) + "\n")
    s.cli("fewer-dimensions", *b06(synth, "--overwrite", "--min-coverage", "0", "--json"))
    lines = path.read_text().splitlines()
    first = next(c for c in lines[0].split(",") if c.startswith("z_mu"))
    path.write_text("\n".join([lines[0] + "," + first] + [ln + "," + ln.split(",")[3] for ln in lines[1:]]) + "\n")
    s.cli("repeated-z-column", *b06(synth, "--overwrite", "--min-coverage", "0"))


def parquet_of_another_model(s: Session) -> None:
    """A store Parquet naming another model, then a lab-layout file (--latents-root)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    synth = roots.model_root(s.base)
    s.cli("generate-parquet", *b06(synth, "--generate-missing-latents", "--latent-format", "parquet", "--json"))
    path = store(synth) / f"morph_latents_{EXP}.parquet"
    table = pq.read_table(path)
    at = table.column_names.index("embedding_model_name")
    pq.write_table(table.set_column(at, "embedding_model_name", pa.array(["another_model"] * table.num_rows)), path)
    s.cli("not-merged", *b06(synth, "--overwrite", "--min-coverage", "0", "--latent-format", "parquet", "--json"))
    lab = s.base / "lab" / "feature_extraction" / EXP2 / "latent_embeddings"
    lab.mkdir(parents=True)
    shutil.copy(store(synth) / f"morph_latents_{EXP2}.parquet", lab / f"{EXP2}_latents.parquet")
    (lab / f"{EXP2}_latents.parquet.validated").write_text("ok\n")
    s.cli("lab-layout", *b06(synth, "--overwrite", "--min-coverage", "0", "--latents-root", str(s.base / "lab"),
                             "--json"))


def training_rows_added(s: Session) -> None:
    """df02 rows added after a run with --train-name: generation of the new snips, --overwrite."""
    synth = roots.model_root(s.base)
    write_training_set(synth, "t", [0, 1, 6])
    s.cli("generate-train", *b06(synth, "--generate-missing-latents", "--train-name", "t", "--json"))
    roots.add_rows(synth, 1, latents=False, images=True)
    s.cli("rows-added-generate", *b06(synth, "--generate-missing-latents", "--train-name", "t", "--json"))
    s.cli("overwrite", *b06(synth, "--generate-missing-latents", "--train-name", "t", "--overwrite", "--json"))


# -- the Snakemake example -----------------------------------------------------------------

def snakemake(s: Session) -> None:
    """examples/snakemake/Snakefile: a first run, then an experiment appended and a rerun."""
    if importlib.util.find_spec("snakemake") is None:
        s.record("snakemake-not-installed", "snakemake", 0, "", "")
        return
    from morphseq_legacy.testing import make_legacy_model

    synth = make_pipeline_root(s.base / "p", {"20231207": 3, "20240509_18ss": 2}, seed=4, size=(64, 144))
    make_legacy_model(synth.data_root / "models" / "legacy" / "tiny", latent_dim=8, n_out_channels=2, seed=2)
    argv = [sys.executable, "-m", "snakemake", "-s", str(REPO / "examples" / "snakemake" / "Snakefile"),
            "--directory", str(s.base), "-c", "1", "--quiet", "all", "--config", f"root={synth.root}",
            f"data_root={synth.data_root}", "model_name=tiny"]
    s.command("first-run", argv, streams=_snakemake_lines)
    new = make_pipeline_root(s.base / "n", {"20250612_30hpf_ctrl_atf6": 2}, seed=5, size=(64, 144))
    with open(synth.df02, "ab") as fh:
        fh.write(b"".join(new.df02.read_bytes().splitlines(keepends=True)[1:]))
    shutil.copytree(new.root / "training_data" / "bf_embryo_snips" / "20250612_30hpf_ctrl_atf6",
                    synth.root / "training_data" / "bf_embryo_snips" / "20250612_30hpf_ctrl_atf6")
    shutil.rmtree(s.base / "n")
    s.command("experiment-appended", argv, streams=_snakemake_lines)


def _snakemake_lines(text: str) -> str:
    """Of Snakemake's own log (dates, durations, job ids), the rules it ran and any error."""
    return "".join(line + "\n" for line in text.splitlines()
                   if line.startswith(("rule ", "localrule ")) or "rror" in line)
