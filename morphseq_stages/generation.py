"""Embedding images, shared by every embedder: decoding, batching, threads, progress.

Each worker thread decodes a batch (PIL releases the GIL) and runs the model on it, so
decoding and inference overlap across workers.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import numpy as np
import structlog

from .embedders import Embedder
from .progress import Progress

log = structlog.get_logger()


def decode_image(path: Path, size: tuple[int, int, int]) -> np.ndarray:
    """The legacy preprocessing, exactly: greyscale, bilinear resize, float32 / 255.

    Same arithmetic as torchvision's Grayscale -> Resize -> ToTensor on PIL images,
    without torchvision.
    """
    from PIL import Image

    channels, height, width = size
    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.float32) / np.float32(255)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


@attrs.frozen(kw_only=True)
class EmbedResult:
    """Latents for the images that decoded; ``ok`` indexes the input paths they belong to."""

    mu: np.ndarray
    logvar: np.ndarray | None
    ok: np.ndarray
    failures: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def concat(parts: Sequence[EmbedResult], offsets: Sequence[int], dim: int = 0) -> EmbedResult:
        """Join results of consecutive slices of the inputs, ``offsets`` being where each starts."""
        embedded = [p for p in parts if len(p.ok)]
        lvs = [p.logvar for p in embedded]
        return EmbedResult(
            mu=np.concatenate([p.mu for p in embedded]) if embedded else np.empty((0, dim), np.float32),
            logvar=None if not lvs or any(v is None for v in lvs) else np.concatenate(lvs),
            ok=np.concatenate([p.ok + off for p, off in zip(parts, offsets, strict=True)]) if parts else np.empty(0, int),
            failures=tuple(f for p in parts for f in p.failures),
        )


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _decode_batch(paths: Sequence[Path], size) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    arrays, ok, failed = [], [], []
    for i, p in enumerate(paths):
        try:
            arrays.append(decode_image(p, size))
            ok.append(i)
        except Exception as exc:  # an unreadable image is reported, the rest go on
            failed.append((str(p), f"{type(exc).__name__}: {exc}"))
    batch = np.stack(arrays) if arrays else np.empty((0, *size), np.float32)
    return batch, ok, failed


def embed_images(
    embedder: Embedder,
    paths: Sequence[Path],
    *,
    batch_size: int = 64,
    workers: int | None = None,
    label: str = "embedding",
    on_failure: Callable[[str, str], None] | None = None,
) -> EmbedResult:
    """Embed ``paths`` in order; images that fail to decode are reported and left out.

    ``workers`` threads each decode a batch and run the model on it. On CPU each model
    call gets an equal share of torch's threads (one each on a small machine): CPU
    inference scales poorly across threads, and decoding then overlaps inference for
    free. Results do not depend on the batch size or the number of workers beyond float
    rounding.
    """
    import torch

    workers = workers or default_workers()
    size = embedder.input_size
    on_cpu = not str(embedder.device).startswith("cuda")
    previous_threads = torch.get_num_threads()

    def work(start: int) -> EmbedResult:
        batch, ok, failed = _decode_batch(paths[start : start + batch_size], size)
        mu = logvar = None
        if ok:
            with torch.inference_mode():
                m, lv = embedder.embed_batch(torch.from_numpy(batch).to(embedder.device))
                mu = m.float().cpu().numpy()
                logvar = None if lv is None else lv.float().cpu().numpy()
        return EmbedResult(mu=mu, logvar=logvar, ok=np.asarray(ok, int), failures=tuple(failed))

    progress = Progress(len(paths), label)
    parts: list[EmbedResult] = []
    offsets: list[int] = []
    if on_cpu:
        torch.set_num_threads(max(1, previous_threads // workers))
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embed") as pool:
            starts = iter(range(0, len(paths), batch_size))
            pending: deque = deque((s, pool.submit(work, s)) for s in itertools.islice(starts, 2 * workers))
            while pending:
                start, future = pending.popleft()
                part = future.result()
                nxt = next(starts, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(work, nxt)))
                if on_failure:
                    for path, err in part.failures:
                        on_failure(path, err)
                parts.append(part)
                offsets.append(start)
                progress.advance(len(part.ok) + len(part.failures))
    finally:
        torch.set_num_threads(previous_threads)
        progress.close()
    return EmbedResult.concat(parts, offsets, embedder.latent_dim)
