"""Where embedding runs: in this process, or on a Dask cluster.

Either way the caller gets the same :class:`~.generation.EmbedResult` and writes the
latent files itself, so files written through Dask are byte-identical to local ones.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import structlog

from .embedders import Embedder, EmbedderRequest
from .errors import UserError
from .generation import EmbedResult, embed_images

log = structlog.get_logger()
EXECUTORS = ("local", "dask")


class LocalExecutor:
    """Embeds on this machine, through the host's decode/batch/thread pipeline."""

    def __init__(self, embedder: Embedder, *, batch_size: int, workers: int | None = None) -> None:
        self.embedder, self.batch_size, self.workers = embedder, batch_size, workers

    def embed(self, paths: Sequence[Path], label: str) -> EmbedResult:
        """Embed ``paths`` in order; ``label`` names the work in progress events."""
        return embed_images(self.embedder, paths, batch_size=self.batch_size, workers=self.workers, label=label)

    def close(self) -> None:
        """Nothing to release: the embedder belongs to the caller."""
        pass


# -- Dask: one task per chunk of images, the model loaded once per worker process ------

_MODELS: dict[tuple[str, EmbedderRequest], Embedder] = {}
_MODELS_LOCK = threading.Lock()


def _worker_embedder(name: str, request: EmbedderRequest) -> Embedder:
    with _MODELS_LOCK:
        if (name, request) not in _MODELS:
            from .manager import get_host

            _MODELS[(name, request)] = get_host().registry.load_embedder(name, request)
        return _MODELS[(name, request)]


def embed_chunk(name: str, request: EmbedderRequest, paths: Sequence[str], batch_size: int) -> EmbedResult:
    """A Dask task: embed one chunk of images with the worker's cached model."""
    embedder = _worker_embedder(name, request)
    return embed_images(embedder, [Path(p) for p in paths], batch_size=batch_size, label="chunk")


class DaskExecutor:
    """Embeds on a Dask cluster: one task per chunk of images, the model loaded once per worker; the client writes."""

    def __init__(
        self,
        name: str,
        request: EmbedderRequest,
        *,
        batch_size: int,
        scheduler: str | None = None,
        chunk_size: int = 512,
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UserError("--executor dask needs Dask: pip install 'morphseq-stages[dask]'") from None
        self.name, self.request, self.batch_size, self.chunk_size = name, request, batch_size, chunk_size
        self._cluster = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout="30s")
            except OSError as exc:
                raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        else:
            self._cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
            self.client = Client(self._cluster)
        log.info("dask.connected", scheduler=scheduler or "local in-process cluster",
                 workers=len(self.client.scheduler_info().get("workers", {})))

    def embed(self, paths: Sequence[Path], label: str) -> EmbedResult:
        """Embed ``paths`` as one Dask task per chunk; results come back in the order given."""
        offsets = list(range(0, len(paths), self.chunk_size))
        futures = [
            self.client.submit(
                embed_chunk, self.name, self.request,
                [str(p) for p in paths[o : o + self.chunk_size]], self.batch_size, pure=False,
            )
            for o in offsets
        ]
        parts = self.client.gather(futures)
        log.info("dask.embedded", what=label, tasks=len(futures), images=len(paths))
        return EmbedResult.concat(parts, offsets)

    def close(self) -> None:
        """Close the client, and the local cluster when this executor started one."""
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
