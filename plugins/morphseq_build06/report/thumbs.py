"""Thumbnails of the snips behind the report's points and galleries, as data URIs.

Only the snips the page shows are opened. A JPEG is decoded at a reduced scale
(``Image.draft``: the decoder skips the detail a thumbnail drops), so a thumbnail costs
about a millisecond; decoding runs on a few threads (Pillow releases the GIL).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import keys, paths

#: longest side, in pixels, of the thumbnail shown on hover, and of a gallery's
HOVER_PX = 64
GALLERY_PX = 128


def image_paths(root: Path, data_root: Path, experiments: np.ndarray, row_keys: pa.Array,
                rows: np.ndarray) -> list[Path | None]:
    """The snip image of each of ``rows`` (df02 rows; None: no image), matched by the
    normalised snip_id as the plan matches them (``keys``)."""
    out: list[Path | None] = [None] * len(rows)
    for exp in dict.fromkeys(experiments[rows].tolist()):
        at = np.flatnonzero(experiments[rows] == exp)
        folder = next((d for d in paths.snip_dir_candidates(root, data_root, exp) if d.is_dir()), None) if exp else None
        if folder is None:
            continue
        with os.scandir(folder) as it:
            files = [e.path for e in it if e.is_file() and e.name.lower().endswith(paths.IMAGE_SUFFIXES)]
        if not files:
            continue
        image_keys = keys.normalise(pa.array([os.path.basename(f) for f in files], pa.string()))[0]
        pos, _ = keys.match(row_keys.take(pa.array(rows[at], pa.int64())), image_keys,
                            *keys.channel_free_index(image_keys))
        for i, p in zip(at.tolist(), pos.tolist(), strict=True):
            out[i] = Path(files[p]) if p >= 0 else None
    return out


def thumbnail(path: Path | None, px: int) -> str | None:
    """A JPEG data URI of the image at ``path`` fitted in ``px`` x ``px``; None when it
    cannot be read (a missing, truncated or corrupt file)."""
    if path is None:
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("L" if im.mode == "L" else "RGB", (px, px))
            im.load()
            small = im.convert("L" if im.mode in ("L", "I", "I;16", "F", "1") else "RGB")
        small.thumbnail((px, px))
        buf = io.BytesIO()
        small.save(buf, format="JPEG", quality=80)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def thumbnails(images: Sequence[Path | None], px: int) -> list[str | None]:
    workers = min(8, os.cpu_count() or 1)
    if len(images) < 64 or workers == 1:
        return [thumbnail(p, px) for p in images]
    with ThreadPoolExecutor(workers, thread_name_prefix="thumbnails") as pool:
        return list(pool.map(lambda p: thumbnail(p, px), images, chunksize=32))
