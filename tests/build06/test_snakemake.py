"""examples/snakemake/Snakefile with real Snakemake: a first run, then an experiment
appended to df02 and a rerun that embeds only it and rebuilds df03."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from morphseq_build06.testing import make_pipeline_root

from conftest import read_rows

pytest.importorskip("snakemake", reason="needs the [snakemake] extra")
pytest.importorskip("torch")

SNAKEFILE = Path(__file__).resolve().parents[2] / "examples" / "snakemake" / "Snakefile"
MODEL = "tiny"


def _snakemake(workdir: Path, root: Path, data_root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), "-c", "2",
         "--config", f"root={root}", f"data_root={data_root}", f"model_name={MODEL}"],
        capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_snakefile_runs_build06_then_updates_df03_for_an_appended_experiment(tmp_path):
    from morphseq_legacy.testing import make_legacy_model

    synth = make_pipeline_root(tmp_path / "p", {"20231207": 3, "20240509_18ss": 2}, seed=4, size=(64, 144))
    make_legacy_model(synth.data_root / "models" / "legacy" / MODEL, latent_dim=8, n_out_channels=2, seed=2)
    store = synth.latent_dir(MODEL)
    df03 = synth.df02.with_name("embryo_metadata_df03.csv")

    _snakemake(tmp_path / "w", synth.root, synth.data_root)
    header, rows = read_rows(df03)
    assert len(rows) == 5 and all(r[-1] for r in rows) and header[-1] == "z_mu_b_07"
    first = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in store.glob("morph_latents_*.csv")}
    assert sorted(first) == ["morph_latents_20231207.csv", "morph_latents_20240509_18ss.csv"]

    # Build05 appends an experiment to df02, with its snips
    new = make_pipeline_root(tmp_path / "n", {"20250612_30hpf_ctrl_atf6": 2}, seed=5, size=(64, 144))
    with open(synth.df02, "ab") as fh:
        fh.write(b"".join(new.df02.read_bytes().splitlines(keepends=True)[1:]))
    shutil.copytree(new.root / "training_data" / "bf_embryo_snips" / "20250612_30hpf_ctrl_atf6",
                    synth.root / "training_data" / "bf_embryo_snips" / "20250612_30hpf_ctrl_atf6")

    proc = _snakemake(tmp_path / "w", synth.root, synth.data_root)
    assert "rule latents" in proc.stdout + proc.stderr
    header, rows = read_rows(df03)
    assert len(rows) == 7 and all(r[-1] for r in rows)
    assert [r[header.index("experiment_date")] for r in rows[-2:]] == ["20250612_30hpf_ctrl_atf6"] * 2
    # the experiments embedded before were not embedded again
    assert {n: (store / n).read_bytes() for n in first} == {n: b for n, (b, _) in first.items()}
    assert {n: (store / n).stat().st_mtime_ns for n in first} == {n: t for n, (_, t) in first.items()}
    assert (store / "morph_latents_20250612_30hpf_ctrl_atf6.csv").is_file()
