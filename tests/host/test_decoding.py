"""The default preprocessing and batches: bit-identical to PIL convert -> resize -> / 255 (torchvision's
Grayscale -> Resize -> ToTensor), in place, without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from morphseq_stages import generation  # noqa: E402
from morphseq_stages.images import decode_image  # noqa: E402


def picture(seed: int):
    """A greyscale picture with smooth and noisy parts, 256 x 576 like a real snip."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:576, 0:256].astype(np.float32)
    img = 60 + 50 * np.sin(yy / rng.uniform(8, 20)) * np.cos(xx / rng.uniform(5, 15)) + 15 * rng.standard_normal((576, 256))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L")


def reference(path, size):
    """PIL convert -> resize(BILINEAR) -> float32 / 255, the arithmetic the default keeps."""
    from PIL import Image

    channels, height, width = size
    im = Image.open(path).convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
    arr = np.asarray(im, dtype=np.float32) / np.float32(255)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


@pytest.mark.parametrize(("mode", "suffix"), [("L", ".jpg"), ("RGB", ".jpg"), ("RGBA", ".png"), ("I;16", ".png")])
@pytest.mark.parametrize("size", [(1, 288, 128), (1, 100, 61), (3, 288, 128)])
def test_decoding_is_bit_identical_to_the_reference_preprocessing(tmp_path, mode, suffix, size):
    path = tmp_path / f"snip{suffix}"
    base = picture(7)
    if mode == "I;16":
        base = base.convert("I").point(lambda v: v * 200).convert("I;16")
    (base if mode in ("L", "I;16") else base.convert(mode)).save(path)
    want = reference(path, size)
    got = decode_image(path, size)
    assert got.dtype == np.float32 and got.shape == size
    np.testing.assert_array_equal(got, want)
    out = np.full((2, *size), -1, np.float32)
    decode_image(path, size, out=out[1])
    np.testing.assert_array_equal(out[1], want)
    assert (out[0] == -1).all()


def test_a_batch_is_filled_in_place_and_skips_unreadable_images(tmp_path):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"s{i}.jpg")
        picture(i).save(paths[-1], quality=90)
    paths[1].write_bytes(b"\xff\xd8 not a jpeg")
    batch, ok, failed = generation.decode_batch(paths, (1, 288, 128))
    assert ok == [0, 2, 3] and [f[0] for f in failed] == [str(paths[1])] and batch.shape == (3, 1, 288, 128)
    np.testing.assert_array_equal(batch.numpy(), np.stack([reference(paths[i], (1, 288, 128)) for i in ok]))


def test_decoding_workers_follow_the_device(monkeypatch):
    monkeypatch.setattr(generation, "cores", lambda: 32)
    assert generation.default_workers("cpu") == 8  # each model call then gets 4 threads
    assert generation.default_workers("cuda") == 32  # decoding is all the CPU does
    assert generation.default_workers("cuda:1") == 32


def test_a_batch_is_read_through_the_preprocessing_given(tmp_path):
    paths = [tmp_path / f"s{i}.png" for i in range(3)]
    for i, p in enumerate(paths):
        picture(i).save(p)

    def halved(path, out):
        decode_image(path, (1, 16, 8), out=out)
        out /= 2

    batch, ok, failed = generation.decode_batch(paths, (1, 16, 8), preprocess=halved)
    assert ok == [0, 1, 2] and not failed
    np.testing.assert_array_equal(batch.numpy(), np.stack([reference(p, (1, 16, 8)) / 2 for p in paths]))
