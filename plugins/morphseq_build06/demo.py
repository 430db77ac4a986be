"""``morphseq-stages demo``: a synthetic pipeline root, a tiny legacy model, one Build06 run.

Registered as the build06 stage's demo; the host's ``demo`` command runs what it returns.
"""

from __future__ import annotations

from pathlib import Path

from morphseq_stages.errors import UserError

MARKER = ".morphseq-demo"
MODEL = "demo_vae"
EXPERIMENTS = {"20231207": 8, "20240509_18ss": 6, "20250612_30hpf_ctrl_atf6": 6}


def build_demo(folder: Path) -> list[str]:
    """Lay out the demo under ``folder``; return the build06 arguments that run it on it."""
    try:  # before anything is laid out: the demo's tiny model is built and run with torch
        import torch  # noqa: F401
    except ImportError as exc:
        raise UserError(f"the demo needs torch ({exc}): pip install torch==2.13.0") from None
    from morphseq_legacy.testing import make_legacy_model

    from .testing import make_pipeline_root

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).exists():
        raise UserError(f"{folder} exists and is not a demo folder; choose another")
    if not (folder / MARKER).exists():
        folder.mkdir(parents=True, exist_ok=True)
        synth = make_pipeline_root(folder, EXPERIMENTS, seed=7)
        make_legacy_model(synth.data_root / "models" / "legacy" / MODEL, latent_dim=16, n_out_channels=4,
                          layout="final_model", seed=7)
        train = synth.root / "training_data" / "demo_train"
        train.mkdir(parents=True)
        lines = synth.df02.read_bytes().split(b"\n")
        (train / "embryo_metadata_df_train.csv").write_bytes(b"\n".join(lines[:1] + lines[1:-1:2]) + b"\n")
        (folder / MARKER).write_text("made by morphseq-stages demo\n")
    return ["--root", str(folder / "root"), "--data-root", str(folder / "data"),
            "--model-name", MODEL, "--generate-missing-latents", "--export-analysis-copies",
            "--train-name", "demo_train", "--batch-size", "8"]

