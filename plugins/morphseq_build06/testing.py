"""Builders for synthetic pipeline roots (df02, snip JPEGs, latent files) in the real formats.

For plugin authors' tests and ours, and for ``morphseq-stages demo``; model folders
come from ``morphseq_legacy.testing``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs
import numpy as np

from morphseq_legacy.columns import column_names
from morphseq_stages.files import atomic_write

from .latents import embryo_id_of, latent_file_name, write_latents

if TYPE_CHECKING:
    from PIL import Image


SNIP_SIZE = (256, 576)  # width, height of the real snips
WELLS = [f"{r}{c:02}" for r in "ABCDEFGH" for c in range(1, 13)]
DF02_COLUMNS = (
    "image_well", "genotype", "stage_hpf", "image_notes", "experiment_date", "snip_id", "embryo_id",
    "predicted_stage_hpf", "surface_area_um", "length_um", "surface_area_um", "use_embryo_flag", "medium",
)


@attrs.frozen(kw_only=True)
class SyntheticRoot:
    root: Path
    data_root: Path
    df02: Path
    snips: Mapping[str, tuple[str, ...]]  # experiment -> snip ids

    def snip_path(self, experiment: str, snip_id: str) -> Path:
        return self.root / "training_data" / "bf_embryo_snips" / experiment / f"{snip_id}.jpg"

    def latent_dir(self, model_name: str, embedder: str = "legacy") -> Path:
        return self.data_root / "analysis" / "latent_embeddings" / embedder / model_name


def snip_image(seed: int, size: tuple[int, int] = SNIP_SIZE, centre: tuple[float, float] | None = None) -> Image.Image:
    """A greyscale embryo-like picture: a bright, textured ellipse on a noisy background.

    ``centre``: where the embryo sits, as fractions of (width, height); by default near
    the middle, as a good snip has it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
    if centre is not None:
        cx, cy = w * centre[0], h * centre[1]
    ry, rx = h * rng.uniform(0.25, 0.4), w * rng.uniform(0.2, 0.35)
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    img = 40 + 15 * rng.standard_normal((h, w))
    body = np.clip(1.2 - inside, 0, 1) * (140 + 40 * np.sin(yy / rng.uniform(8, 20)))
    img = np.clip(img + body, 0, 255).astype(np.uint8)
    return Image.fromarray(img, mode="L")


def make_pipeline_root(
    base: Path,
    experiments: Mapping[str, int] | None = None,
    *,
    seed: int = 0,
    images: bool = True,
    size: tuple[int, int] = SNIP_SIZE,
) -> SyntheticRoot:
    """``base/root`` (df02 + snip JPEGs) and ``base/data`` (the central data root)."""
    experiments = experiments or {"20231207": 4, "20240509_18ss": 3}
    base = Path(base)
    root, data_root = base / "root", base / "data"
    rng = np.random.default_rng(seed)
    rows, snips = [], {}
    n = 0
    for exp, count in experiments.items():
        ids = []
        for i in range(count):
            # two time points per embryo, then the next embryo of the well
            well, embryo, t = WELLS[i // 2 % len(WELLS)], i // (2 * len(WELLS)), i % 2
            snip = f"{exp}_{well}_e{embryo:02}_t{t:04}"
            ids.append(snip)
            area = f"{rng.uniform(2e5, 3e5):.1f}"
            rows.append([well, "wik", "48.0", "" if i % 3 else "Head is cut off", exp, snip, embryo_id_of(snip),
                         f"{48 + rng.uniform(0, 1):.6f}", area, f"{rng.uniform(2e3, 3e3):.3f}", area,
                         "True" if i % 5 else "False", "E3"])
            if images:
                path = root / "training_data" / "bf_embryo_snips" / exp / f"{snip}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                snip_image(seed * 100_003 + n, size).save(path, quality=90)
            n += 1
        snips[exp] = tuple(ids)
    df02 = write_df02(root, DF02_COLUMNS, rows)
    data_root.mkdir(parents=True, exist_ok=True)
    return SyntheticRoot(root=root, data_root=data_root, df02=df02, snips=snips)


BadSnip = Literal["off-centre", "truncated", "noise", "blank"]


def spoil_snip(path: Path, how: BadSnip, seed: int = 0) -> None:
    """Replace the snip JPEG at ``path`` with a bad one, as a failed acquisition or
    segmentation leaves it: the embryo off-centre (cut by the frame), a truncated file
    (unreadable), sensor noise, or an empty frame."""
    from PIL import Image

    path = Path(path)
    with Image.open(path) as im:
        size = im.size
    rng = np.random.default_rng(seed)
    if how == "truncated":
        data = path.read_bytes()
        atomic_write(path, lambda fh: fh.write(data[: len(data) // 3]))
        return
    if how == "off-centre":
        corner = (float(rng.choice([0.08, 0.92])), float(rng.choice([0.1, 0.9])))
        img = snip_image(seed, size, centre=corner)
    elif how == "noise":
        img = Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8), mode="L")
    else:
        img = Image.fromarray(np.full((size[1], size[0]), 35, np.uint8), mode="L")
    atomic_write(path, lambda fh: img.save(fh, format="JPEG", quality=90))


def write_df02(root: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    import csv
    import io

    path = Path(root) / "metadata" / "combined_metadata_files" / "embryo_metadata_df02.csv"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write(path, lambda fh: fh.write(buf.getvalue().encode()))
    return path


def write_latent_file(
    folder: Path,
    experiment: str,
    snip_ids: Sequence[str],
    *,
    latent_dim: int = 8,
    nuisance: int | None = 2,
    seed: int = 0,
    sigma: bool = True,
) -> tuple[Path, np.ndarray]:
    """A latent file in the real format with random values; returns (path, mu)."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((len(snip_ids), latent_dim)).astype(np.float32)
    logvar = rng.standard_normal((len(snip_ids), latent_dim)).astype(np.float32) if sigma else None
    mu_cols, sigma_cols = column_names(latent_dim, nuisance)
    path = Path(folder) / latent_file_name(experiment)
    atomic_write(path, lambda fh: write_latents(fh, experiment, list(snip_ids), mu, logvar, mu_cols,
                                                 sigma_cols if sigma else ()))
    return path, mu




#: the spoiled snips of ``make_qc_root``'s last experiment: (index of the snip, how)
QC_SPOILED: tuple[tuple[int, BadSnip], ...] = (
    (3, "off-centre"), (11, "off-centre"), (20, "off-centre"), (5, "truncated"), (25, "truncated"), (14, "noise"),
    (30, "blank"))
QC_MODEL = "qc_vae"


def make_qc_root(base: Path, experiments: Mapping[str, int] | None = None) -> tuple[SyntheticRoot, dict[str, BadSnip]]:
    """A pipeline root of several experiments whose last one holds spoiled snips (see
    ``QC_SPOILED``), and a tiny legacy model named ``QC_MODEL`` to embed them; for the
    report's tests and its screenshot. Returns the root and {snip_id: how it is spoiled}."""
    from morphseq_legacy.testing import make_legacy_model

    experiments = experiments or {"20240110": 40, "20240117": 36, "20240124": 40}
    synth = make_pipeline_root(base, experiments, seed=3)
    make_legacy_model(synth.data_root / "models" / "legacy" / QC_MODEL, latent_dim=16, n_out_channels=4,
                      layout="final_model", seed=7)
    last = list(experiments)[-1]
    spoiled: dict[str, BadSnip] = {}
    for i, how in QC_SPOILED:
        snip = synth.snips[last][i]
        spoil_snip(synth.snip_path(last, snip), how, seed=i)
        spoiled[snip] = how
    return synth, spoiled
