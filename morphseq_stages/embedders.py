"""The embedder contract.

An embedder turns a batch of preprocessed images into latent means (and, optionally,
log-variances). Everything around that (finding snips, decoding and resizing images,
batching, threads, progress, writing latent files, the manifest) is the host's, so a
third-party embedder is a registration plus a small :class:`Embedder` subclass::

    @hookimpl
    def morphseq_register_embedders(register):
        register(EmbedderSpec(name="mine", load=load_mine, help="my encoder"))

Image tensors given to :meth:`Embedder.embed_batch` are float32 ``[N, C, H, W]`` in
``[0, 1]``: greyscale, resized bilinearly to ``(H, W)`` from :attr:`Embedder.input_size`.
Torch is imported only by embedders, never by the host at start-up.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # torch stays out of start-up
    import torch


def column_names(latent_dim: int, nuisance_dims: int | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Mean and log-variance column names (SPEC §4); ``nuisance_dims`` set means the b/n naming:
    the first ``nuisance_dims`` dimensions are ``z_mu_n_NN``, the rest ``z_mu_b_NN``; else ``z_mu_NN``."""
    def name(kind: str, n: int) -> str:
        if nuisance_dims is None:
            return f"z_{kind}_{n:02}"
        return f"z_{kind}_{'n' if n < nuisance_dims else 'b'}_{n:02}"

    return tuple(name("mu", n) for n in range(latent_dim)), tuple(name("sigma", n) for n in range(latent_dim))


def nuisance_dims(latent_dim: int, zn_frac: float) -> int:
    return math.floor(latent_dim * zn_frac)


@attrs.frozen(kw_only=True)
class EmbedderRequest:
    """Where the model is and how to run it, as the user asked.

    ``model_dir`` is an explicit folder (``--model-dir``); otherwise the embedder finds
    ``model_name`` under ``data_root`` by its own convention.
    """

    model_name: str
    model_dir: Path | None = None
    data_root: Path | None = None
    device: str = "cpu"
    allow_pickle: bool = False
    #: inference runtime for embedders that offer more than torch: "torch", "onnxruntime" or "auto"
    backend: str = "auto"

    @property
    def folder_name(self) -> str | None:
        """The name ``model_dir`` gives the model: its own, or its parent's for ``final_model/``."""
        if self.model_dir is None:
            return None
        d = Path(self.model_dir).resolve()
        return d.parent.name if d.name == "final_model" else d.name


@attrs.frozen(kw_only=True)
class ModelInfo:
    """Facts about a model known without loading it (and without torch).

    ``name`` names the latent store folder; ``fingerprint`` (sha256 of the weights)
    lets the manifest tell which model wrote a latent file; ``config_sha256``, the sha256
    of the model's configuration file where it has one, goes into provenance records.
    """

    name: str
    location: str | None = None
    fingerprint: str | None = None
    config_sha256: str | None = None


class Embedder(abc.ABC):
    """A loaded model, ready to embed.

    Subclasses set the attributes below in ``__init__`` and implement
    :meth:`embed_batch`.
    """

    #: ``(channels, height, width)`` the model takes.
    input_size: tuple[int, int, int]
    #: number of latent dimensions.
    latent_dim: int
    #: names of the mean columns, in dimension order (see SPEC §4).
    mu_columns: tuple[str, ...]
    #: names of the log-variance columns (``z_sigma_*``), or ``()``.
    sigma_columns: tuple[str, ...] = ()
    #: sha256 of the weights.
    fingerprint: str
    #: the torch device the model lives on.
    device: str = "cpu"

    @abc.abstractmethod
    def embed_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(mu, logvar)`` for a ``[N, C, H, W]`` batch; ``logvar`` may be None."""

    def describe(self) -> dict[str, Any]:
        """Facts for the provenance sidecar."""
        return {
            "input_size": list(self.input_size),
            "latent_dim": self.latent_dim,
            "fingerprint": self.fingerprint,
            "device": self.device,
        }


def _describe_by_name(request: EmbedderRequest) -> ModelInfo:
    return ModelInfo(name=request.model_name)


@attrs.frozen(kw_only=True)
class EmbedderSpec:
    """A registered embedder: a name, a loader, and a cheap ``describe``."""

    name: str
    load: Callable[[EmbedderRequest], Embedder]
    describe: Callable[[EmbedderRequest], ModelInfo] = _describe_by_name
    help: str = ""
