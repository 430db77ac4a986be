"""The default preprocessing: an image file into the float32 array a model takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def decode_image(path: Path, size: tuple[int, int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Greyscale (or RGB for three channels), bilinear resize, float32 / 255.

    Same arithmetic as torchvision's Grayscale -> Resize -> ToTensor on PIL images,
    without torchvision. The pixels go into ``out`` (float32, shape ``size``) when given,
    so that a batch is filled in place rather than stacked from copies.
    """
    from PIL import Image

    channels, height, width = size
    mode = "L" if channels == 1 else "RGB"
    with Image.open(path) as im:
        if im.mode != mode:  # converting an image to its own mode would only copy it
            im = im.convert(mode)
        pixels = np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))
    out = np.empty(size, np.float32) if out is None else out
    # uint8 / float32(255) in float32, as ToTensor does
    np.divide(pixels[None] if channels == 1 else pixels.transpose(2, 0, 1), np.float32(255), out=out)
    return out
