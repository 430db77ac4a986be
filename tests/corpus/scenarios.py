"""Scenarios of Build06's options, each a few CLI (or API) steps on a fresh root.

Roots come from ``reliability.scenario`` (``merge_root``: latent files for every row, no
images; ``model_root``: snip images and a tiny legacy model ``m``) and from
``morphseq_build06.testing``; every seed is fixed.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

from reliability import scenario as roots

from morphseq_build06.testing import make_pipeline_root, make_qc_root, spoil_snip, write_latent_file

from .session import Session

MODEL = roots.MODEL
EXP, EXP2, EXP3 = roots.EXPERIMENTS


def b06(synth: Any, *extra: str) -> list[str]:
    """A build06 command line on ``synth`` (model ``m``, one decoding thread, JSON logs)."""
    return [*roots.args(synth, "--workers", "1", "--batch-size", "8"), *extra]


def df02_rows(synth: Any) -> tuple[list[str], list[list[str]]]:
    with open(synth.df02, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def write_csv(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue())


def edit_df02(synth: Any, row: int, column: str, value: str) -> None:
    header, body = df02_rows(synth)
    body[row][header.index(column)] = value
    write_csv(synth.df02, [header, *body])


def write_training_set(synth: Any, name: str, rows: list[int]) -> Path:
    header, body = df02_rows(synth)
    path = synth.root / "training_data" / name / "embryo_metadata_df_train.csv"
    write_csv(path, [header, *[body[i] for i in rows]])
    return path


def store(synth: Any) -> Path:
    return synth.latent_dir(MODEL)


def demo(s: Session) -> None:
    """morphseq-stages demo DIR, then its printed command, an identical rerun, --overwrite."""
    folder = s.base / "demo"
    proc = s.cli("demo", "demo", str(folder))
    printed = next(line for line in proc.stdout.splitlines() if line.startswith("running: morphseq-stages "))
    argv = printed.removeprefix("running: morphseq-stages ").split()
    s.cli("printed-command", *argv)
    s.cli("identical-rerun", *argv)
    s.cli("overwrite", *argv, "--overwrite", "--json")


def generate(s: Session) -> None:
    """--generate-missing-latents, an identical rerun, --overwrite-latents, --overwrite."""
    synth = roots.model_root(s.base)
    s.cli("generate-missing", *b06(synth, "--generate-missing-latents", "--json"))
    s.cli("identical-rerun", *b06(synth, "--generate-missing-latents", "--json"))
    s.cli("overwrite-latents", *b06(synth, "--overwrite-latents", "--json"))
    s.cli("overwrite", *b06(synth, "--overwrite", "--json"))


def generate_parquet(s: Session) -> None:
    """--latent-format parquet generation, a rerun, CSV latents re-embedded beside them, a dry run."""
    synth = roots.model_root(s.base)
    s.cli("generate-parquet", *b06(synth, "--generate-missing-latents", "--latent-format", "parquet", "--json"))
    s.cli("identical-rerun", *b06(synth, "--generate-missing-latents", "--latent-format", "parquet", "--json"))
    s.cli("csv-latents-too", *b06(synth, "--overwrite-latents", "--experiments", EXP, "--json"))
    s.cli("dry-run", *b06(synth, "--dry-run", "--json"))


def generate_only_then_merge(s: Session) -> None:
    """--generate-only per experiment (CSV and Parquet), then one merge and a dry run."""
    synth = roots.model_root(s.base)
    s.cli("generate-only-one", *b06(synth, "--generate-only", "--experiments", EXP, "--json"))
    s.cli("generate-only-parquet", *b06(synth, "--generate-only", "--latent-format", "parquet",
                                        "--experiments", EXP2, "--json"))
    s.cli("generate-only-rest", *b06(synth, "--generate-only", "--json"))
    s.cli("merge", *b06(synth, "--json"))
    s.cli("dry-run", *b06(synth, "--dry-run", "--json"))


def formats(s: Session) -> None:
    """--formats csv,parquet,h5ad, a rerun, df02 edited with typed copies kept, --overwrite."""
    synth = roots.merge_root(s.base)
    s.cli("csv-parquet-h5ad", *b06(synth, "--formats", "csv,parquet,h5ad", "--json"))
    s.cli("identical-rerun", *b06(synth, "--formats", "csv,parquet,h5ad", "--json"))
    edit_df02(synth, 2, "genotype", "tbxta")
    s.cli("df02-edited-parquet-only", *b06(synth, "--formats", "csv,parquet", "--json"))
    s.cli("overwrite-h5ad", *b06(synth, "--formats", "csv,h5ad", "--overwrite", "--json"))


def report(s: Session) -> None:
    """--report with generation, a rerun, --report-color-by with --overwrite."""
    synth = roots.model_root(s.base)
    s.cli("generate-with-report", *b06(synth, "--generate-missing-latents", "--report", "--json"))
    s.cli("identical-rerun", *b06(synth, "--report", "--json"))
    s.cli("colour-by", *b06(synth, "--report", "--report-color-by", "genotype", "--overwrite", "--json"))


def qc_filter(s: Session) -> None:
    """make_qc_root's spoiled snips: --qc-filter --report, then without the filter."""
    synth, _ = make_qc_root(s.base, {"20240110": 6, "20240124": 32})
    args = ["build06", "--root", str(synth.root), "--data-root", str(synth.data_root), "--model-name", "qc_vae",
            "--log-format", "json", "--workers", "1", "--batch-size", "16"]
    s.cli("generate-qc-filter-report", *args, "--generate-missing-latents", "--qc-filter", "--report", "--json")
    s.cli("without-qc-filter", *args, "--json")
    s.cli("overwrite-without-qc-filter", *args, "--overwrite", "--min-coverage", "0", "--json")


def train_name(s: Session) -> None:
    """--train-name: a join, a rerun, the training set recut, --overwrite, a missing set."""
    synth = roots.merge_root(s.base)
    write_training_set(synth, "t", [0, 2, 5, 7, 9])
    s.cli("train-name", *b06(synth, "--train-name", "t", "--json"))
    s.cli("identical-rerun", *b06(synth, "--train-name", "t", "--json"))
    write_training_set(synth, "t", [1, 2, 3])
    s.cli("training-set-edited", *b06(synth, "--train-name", "t", "--json"))
    s.cli("overwrite", *b06(synth, "--train-name", "t", "--overwrite", "--json"))
    s.cli("missing-training-set", *b06(synth, "--train-name", "nope", "--json"))


def analysis_copies(s: Session) -> None:
    """--export-analysis-copies: a rerun, df02 edited, one experiment with --overwrite."""
    synth = roots.merge_root(s.base)
    s.cli("export", *b06(synth, "--export-analysis-copies", "--json"))
    s.cli("identical-rerun", *b06(synth, "--export-analysis-copies", "--json"))
    edit_df02(synth, 7, "medium", "E2")
    s.cli("df02-edited", *b06(synth, "--export-analysis-copies", "--json"))
    s.cli("one-experiment-overwrite", *b06(synth, "--export-analysis-copies", "--experiments", EXP2, "--overwrite",
                                           "--json"))


def experiments(s: Session) -> None:
    """--experiments: one, two, one without latents, a typo (exit 2)."""
    synth = roots.merge_root(s.base)
    (store(synth) / f"morph_latents_{EXP3}.csv").unlink()
    s.cli("one", *b06(synth, "--experiments", EXP, "--json"))
    s.cli("two", *b06(synth, "--experiments", EXP, EXP2, "--min-coverage", "0", "--json"))
    s.cli("one-without-latents", *b06(synth, "--experiments", EXP3, "--overwrite", "--json"))
    s.cli("typo", *b06(synth, "--experiments", "20990101_not_in_df02", "--json"))


def z_schema(s: Session) -> None:
    """--z-schema bio_nuisance/flat/auto and --include-sigma on n/b latent columns, typed copies too."""
    synth = make_pipeline_root(s.base, roots.EXPERIMENTS, seed=8, images=False)
    for n, (exp, ids) in enumerate(synth.snips.items()):
        write_latent_file(store(synth), exp, ids, latent_dim=10, nuisance=2, seed=20 + n)
    s.cli("bio-nuisance", *b06(synth, "--z-schema", "bio_nuisance", "--json"))
    s.cli("flat-on-bn-columns", *b06(synth, "--z-schema", "flat", "--overwrite", "--json"))
    s.cli("include-sigma", *b06(synth, "--include-sigma", "--overwrite", "--json"))
    s.cli("sigma-typed", *b06(synth, "--include-sigma", "--formats", "csv,parquet,h5ad", "--json"))
    s.cli("auto-again", *b06(synth, "--z-schema", "auto", "--json"))


def strict(s: Session) -> None:
    """--strict failing on low coverage (exit 3), without it, with --min-coverage 0."""
    synth = roots.merge_root(s.base)
    path = store(synth) / f"morph_latents_{EXP}.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]))  # three rows fewer: coverage under --min-coverage's 0.95
    s.cli("strict-fails", *b06(synth, "--strict", "--json"))
    s.cli("not-strict", *b06(synth, "--json"))
    s.cli("strict-min-coverage-0", *b06(synth, "--strict", "--min-coverage", "0", "--overwrite", "--json"))


def dry_runs(s: Session) -> None:
    """--dry-run --json before and after a run, as text, out of date, with --overwrite."""
    synth = roots.merge_root(s.base)
    s.cli("dry-run-nothing-yet", *b06(synth, "--dry-run", "--json", "--export-analysis-copies"))
    s.cli("real-run", *b06(synth, "--json", "--export-analysis-copies"))
    s.cli("dry-run-current", *b06(synth, "--dry-run", "--json", "--export-analysis-copies"))
    s.cli("dry-run-text", *b06(synth, "--dry-run", "--export-analysis-copies"))
    edit_df02(synth, 0, "stage_hpf", "24")
    s.cli("dry-run-out-of-date", *b06(synth, "--dry-run", "--json"))
    s.cli("dry-run-overwrite", *b06(synth, "--dry-run", "--overwrite", "--formats", "csv,parquet", "--json"))


def df02_edit(s: Session) -> None:
    """df02 edited: df03 out of date and kept, --strict, --overwrite, rows appended."""
    synth = roots.merge_root(s.base)
    s.cli("first-run", *b06(synth, "--json"))
    edit_df02(synth, 4, "image_notes", "edited, by hand")
    s.cli("out-of-date-kept", *b06(synth, "--json"))
    s.cli("out-of-date-strict", *b06(synth, "--strict", "--json"))
    s.cli("overwrite", *b06(synth, "--overwrite", "--json"))
    roots.add_rows(synth, 1, latents=True, images=False)
    s.cli("rows-appended-overwrite", *b06(synth, "--overwrite", "--json"))


def edited_output(s: Session) -> None:
    """df03 edited by hand (foreign): kept, its dry run, --overwrite, its sidecar removed."""
    synth = roots.merge_root(s.base)
    s.cli("first-run", *b06(synth, "--json"))
    df03 = synth.df02.with_name("embryo_metadata_df03.csv")
    df03.write_bytes(df03.read_bytes().replace(b"wik", b"wiK", 1))
    s.cli("foreign-df03", *b06(synth, "--json"))
    s.cli("foreign-dry-run", *b06(synth, "--dry-run", "--json"))
    s.cli("overwrite", *b06(synth, "--overwrite", "--json"))
    sidecar = df03.with_suffix(".json")
    sidecar.unlink()
    s.cli("sidecar-removed", *b06(synth, "--json"))


def other_model_latent(s: Session) -> None:
    """A store CSV whose manifest entry names another model: not merged, --strict, re-embedded."""
    synth = roots.model_root(s.base)
    s.cli("generate", *b06(synth, "--generate-missing-latents", "--json"))
    manifest = store(synth) / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"][f"morph_latents_{EXP}.csv"].update(model_fingerprint="f" * 64, model_name="another_model")
    manifest.write_text(json.dumps(data))
    s.cli("not-merged", *b06(synth, "--overwrite", "--min-coverage", "0", "--json"))
    s.cli("strict", *b06(synth, "--overwrite", "--min-coverage", "0", "--strict"))
    s.cli("re-embedded", *b06(synth, "--overwrite-latents", "--experiments", EXP, "--overwrite", "--json"))


def unreadable_snip(s: Session) -> None:
    """A truncated snip and a missing one: generation, a rerun, --strict."""
    synth = roots.model_root(s.base)
    spoil_snip(synth.snip_path(EXP, synth.snips[EXP][1]), "truncated", seed=1)
    synth.snip_path(EXP2, synth.snips[EXP2][0]).unlink()
    s.cli("generate", *b06(synth, "--generate-missing-latents", "--min-coverage", "0", "--json"))
    s.cli("identical-rerun", *b06(synth, "--generate-missing-latents", "--min-coverage", "0", "--json"))
    s.cli("strict", *b06(synth, "--generate-missing-latents", "--strict", "--json"))


def upstream_rows(s: Session) -> None:
    """The lab's real df02 rows (shared/data/upstream), latents written for their snips."""
    from model.world import upstream_sample

    sample = upstream_sample()
    synth = make_pipeline_root(s.base, {EXP: 1}, images=False)
    shutil.copyfile(sample, synth.df02)
    header, body = df02_rows(synth)
    si, ei = header.index("snip_id"), header.index("experiment_date")
    by_exp: dict[str, list[str]] = {}
    for row in body:
        by_exp.setdefault(row[ei], []).append(row[si])
    for n, (exp, ids) in enumerate(by_exp.items()):
        write_latent_file(store(synth), exp, ids[: max(1, len(ids) - 1)], latent_dim=6, nuisance=1, seed=30 + n)
    s.cli("all-formats-copies", *b06(synth, "--formats", "csv,parquet,h5ad", "--export-analysis-copies",
                                     "--min-coverage", "0", "--json"))
    s.cli("identical-rerun", *b06(synth, "--formats", "csv,parquet,h5ad", "--export-analysis-copies",
                                  "--min-coverage", "0", "--json"))
    other = sample.with_name("20250612_30hpf_ctrl_atf6_embryo_metadata.csv")
    if other.is_file():  # the newer pipeline's metadata: not a df02
        shutil.copyfile(other, synth.df02)
        s.cli("newer-metadata-as-df02", *b06(synth, "--overwrite", "--json"))
