"""Embedding images, shared by every embedder: batching, threads, progress.

Each worker thread reads a batch through the embedder's preprocessing (PIL releases the
GIL) straight into the batch tensor and runs the model on it, so decoding and inference
overlap across workers. On CUDA the batch tensor is in pinned memory and copied without
blocking, and there is a decoding worker per core: the CPU's only job is then to keep
the device fed.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import numpy as np
import structlog

if TYPE_CHECKING:
    import torch

from .embedders import Embedder
from .errors import PluginError, UserError
from .images import decode_image
from .progress import Progress

log = structlog.get_logger()


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
        lvs = [p.logvar for p in embedded if p.logvar is not None]
        return EmbedResult(
            mu=np.concatenate([p.mu for p in embedded]) if embedded else np.empty((0, dim), np.float32),
            logvar=np.concatenate(lvs) if lvs and len(lvs) == len(embedded) else None,
            ok=np.concatenate([p.ok + off for p, off in zip(parts, offsets, strict=True)]) if parts else np.empty(0, int),
            failures=tuple(f for p in parts for f in p.failures),
        )


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(device: str = "cpu") -> int:
    """One worker per core; on CPU at most 8 (each model call then gets the rest of the threads)."""
    return max(1, cores() if str(device).startswith("cuda") else min(8, cores()))


def decode_batch(paths: Sequence[Path], size: tuple[int, int, int], *, pin: bool = False,
                 preprocess: Callable[[Path, np.ndarray], None] | None = None,
                 ) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """Read ``paths`` into one float32 batch tensor (in pinned memory with ``pin``), each
    through ``preprocess(path, out)`` (an embedder's; default :func:`~.images.decode_image`);
    unreadable images are left out and reported as ``(path, error)``."""
    import torch

    if preprocess is None:
        def preprocess(path: Path, out: np.ndarray) -> None:
            decode_image(path, size, out=out)

    batch = torch.empty((len(paths), *size), dtype=torch.float32, pin_memory=pin)
    view = batch.numpy()
    ok: list[int] = []
    failed: list[tuple[str, str]] = []
    for i, p in enumerate(paths):
        try:
            preprocess(p, view[len(ok)])
            ok.append(i)
        except Exception as exc:  # an unreadable image is reported, the rest go on
            failed.append((str(p), f"{type(exc).__name__}: {exc}"))
    return batch[: len(ok)], ok, failed


def _embed_checked(embedder: Embedder, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
    """``embed_batch`` at the host boundary: a plugin's exception or an output that breaks
    the contract (not a pair of torch tensors of shape ``(n, latent_dim)``) becomes one
    error naming the embedder and its distribution, before anything is written."""
    who = embedder.origin or f"embedder {type(embedder).__module__}.{type(embedder).__qualname__}"
    try:
        out = embedder.embed_batch(batch)
    except UserError:
        raise
    except Exception as exc:
        raise PluginError(f"{who}: embed_batch failed: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise PluginError(f"{who}: embed_batch must return (mu, logvar), got {_kind(out)}")
    mu, logvar = out
    want = (len(batch), embedder.latent_dim)
    return _as_array(who, "mu", mu, want), None if logvar is None else _as_array(who, "logvar", logvar, want)


def _as_array(who: str, what: str, value: object, want: tuple[int, int]) -> np.ndarray:
    import torch

    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise PluginError(f"{who}: embed_batch returned {what} as {_kind(value)}; "
                          f"expected a floating-point torch.Tensor of shape {want}")
    if tuple(value.shape) != want:
        raise PluginError(f"{who}: embed_batch returned {what} of shape {tuple(value.shape)} for "
                          f"{want[0]} images; expected {want} (latent_dim {want[1]})")
    return value.float().cpu().numpy()


def _kind(value: object) -> str:
    if value is None:
        return "None"
    kind = type(value)
    shape = getattr(value, "shape", None)
    return f"{kind.__module__}.{kind.__qualname__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


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

    on_cpu = not str(embedder.device).startswith("cuda")
    workers = workers or default_workers(embedder.device)
    size = embedder.input_size
    previous_threads = torch.get_num_threads()

    def work(start: int) -> EmbedResult:
        batch, ok, failed = decode_batch(paths[start : start + batch_size], size, pin=not on_cpu,
                                         preprocess=embedder.preprocess)
        if not ok:
            return EmbedResult(mu=np.empty((0, embedder.latent_dim), np.float32), logvar=None,
                               ok=np.empty(0, int), failures=tuple(failed))
        with torch.inference_mode():
            # from pinned memory the copy overlaps; reading the results back waits for it
            mu, logvar = _embed_checked(embedder, batch.to(embedder.device, non_blocking=True))
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
