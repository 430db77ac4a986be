"""Small pipeline roots for the reliability tests and the crash driver (no pytest here)."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

from morphseq_build06.testing import make_pipeline_root, snip_image, write_latent_file
from morphseq_stages.files import JOURNAL

MODEL = "m"
SNIP_SIZE = (32, 72)  # width, height: small, so that embedding is instant
INPUT_DIM = (1, 72, 32)
EXPERIMENTS = {"20231207": 6, "20240509_18ss": 4, "20250612_ctrl": 4}


def merge_root(base: Path):
    """A root with latent files for every df02 row (merge-only runs; no torch needed)."""
    synth = make_pipeline_root(base, EXPERIMENTS, seed=5, images=False)
    store = synth.latent_dir(MODEL)
    for n, (exp, ids) in enumerate(synth.snips.items()):
        write_latent_file(store, exp, ids, latent_dim=4, nuisance=None, seed=n)
    return synth


def model_root(base: Path):
    """A root with snip images and a tiny legacy model (generation needs torch)."""
    from morphseq_legacy.testing import make_legacy_model

    synth = make_pipeline_root(base, EXPERIMENTS, seed=5, size=SNIP_SIZE)
    make_legacy_model(synth.data_root / "models" / "legacy" / MODEL, input_dim=INPUT_DIM, latent_dim=4,
                      n_conv_layers=3, n_out_channels=2, seed=2)
    return synth


def args(synth, *extra: str) -> list[str]:
    return ["build06", "--root", str(synth.root), "--data-root", str(synth.data_root), "--model-name", MODEL,
            "--log-format", "json", *extra]


def add_rows(synth, n: int = 2, *, latents: bool, images: bool) -> None:
    """Append ``n`` new snips per experiment to df02 (and their latent rows or images),
    so that the next run's outputs all differ from the current ones."""
    with open(synth.df02, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    si, ei = header.index("snip_id"), header.index("experiment_date")
    new_ids: dict[str, list[str]] = {}
    for exp in synth.snips:
        for k in range(n):
            template = next(r for r in body if r[ei] == exp)
            row = list(template)
            row[si] = f"{exp}_H12_e{90 + k:02}_t0000"
            body.append(row)
            new_ids.setdefault(exp, []).append(row[si])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *body])
    synth.df02.write_text(buf.getvalue())
    for n_exp, (exp, ids) in enumerate(new_ids.items()):
        if latents:
            all_ids = [r[si] for r in body if r[ei] == exp]
            write_latent_file(synth.latent_dir(MODEL), exp, all_ids, latent_dim=4, nuisance=None, seed=n_exp)
        if images:
            for i, snip in enumerate(ids):
                path = synth.snip_path(exp, snip)
                snip_image(1000 + 10 * n_exp + i, SNIP_SIZE).save(path, quality=90)


def run_cli(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "morphseq_stages", *argv], capture_output=True, text=True, **kw)


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) with a hash of its bytes."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def leftovers(folder: Path) -> list[str]:
    """Temporary files, journals and lock files: none may stay after a completed run."""
    return sorted(k for k in digest(folder) if Path(k).name.startswith(".")
                  and (Path(k).name.endswith((".tmp", ".lock")) or Path(k).name == JOURNAL))
