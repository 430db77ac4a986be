"""A third-party embedder, packaged as its own distribution, found through its entry point."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import read_rows

pytest.importorskip("torch")

from morphseq_build06.testing import make_pipeline_root  # noqa: E402
from morphseq_stages.images import decode_image  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[2] / "examples" / "gridmean_embedder"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Install the example distribution with pip, as a user would (into its own folder)."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(PACKAGE)],
        capture_output=True, text=True,
    )
    if proc.returncode:
        pytest.fail(f"pip could not install the example embedder: {proc.stderr[-2000:]}")
    return target


def run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "morphseq_stages", *args], capture_output=True, text=True, env=env)


def test_listed_with_its_distribution(site):
    proc = run(site, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["plugins"] if r["kind"] == "embedder"}
    assert rows["gridmean"]["distribution"] == "morphseq-example-embedder"
    assert rows["gridmean"]["version"] == "0.3.0"
    assert "legacy" in rows


def test_build06_with_the_third_party_embedder(site, tmp_path):
    synth = make_pipeline_root(tmp_path, {"20231207": 3}, seed=2)
    proc = run(site, "build06", "--root", str(synth.root), "--data-root", str(synth.data_root), "--embedder",
               "gridmean", "--generate-missing-latents", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    # its own model identity names the store folder, not the legacy embedder's default model
    store = synth.latent_dir("gridmean-4x2", embedder="gridmean")
    latent = store / "morph_latents_20231207.csv"
    recorded = json.loads((store / "manifest.json").read_text())["files"][latent.name]
    assert recorded["model_fingerprint"] == hashlib.sha256(b"gridmean-4x2").hexdigest()
    header, rows = read_rows(latent)
    assert header == ["experiment_date", "embryo_id", "snip_id"] + [f"z_mu_{i:02}" for i in range(8)]
    for r in rows:
        img = decode_image(synth.snip_path("20231207", r[2]), (1, 288, 128))[0]
        want = img.reshape(4, 72, 2, 64).mean(axis=(1, 3)).ravel()
        np.testing.assert_allclose([float(v) for v in r[3:]], want, atol=1e-6)
    header, rows = read_rows(synth.root / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.csv")
    assert header[-8:] == [f"z_mu_{i:02}" for i in range(8)] and all(r[-1] for r in rows)
