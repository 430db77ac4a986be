"""The embedder contract: what an embedder registers, declares, and is checked for.

An embedder turns a batch of preprocessed images into latent means (and, optionally,
log-variances). Everything around that (finding images, batching, threads, progress,
writing latent files, the manifest) is the stage's and the host's, so a third-party
embedder is a registration plus a small :class:`Embedder` subclass::

    @hookimpl
    def morphseq_register_embedders(register):
        register(EmbedderSpec(name="mine", load=Mine, describe=describe, help="my encoder"))

``describe(request) -> ModelInfo`` names the model and its fingerprint without loading
it: the latent store folder, the manifest and stale-file detection rest on them (an
embedder without one is loaded to learn them).

Each image is read by :meth:`Embedder.preprocess` into float32 ``[C, H, W]``
(:attr:`Embedder.input_size`); by default greyscale (RGB for three channels), resized
bilinearly, in ``[0, 1]`` (:func:`~.images.decode_image`). An embedder whose model wants
other pixels overrides it. :meth:`Embedder.embed_batch` gets those arrays as one
``[N, C, H, W]`` tensor. Torch is imported only by embedders, never by the host at
start-up.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .errors import PluginError, UserError
from .images import decode_image

if TYPE_CHECKING:  # torch stays out of start-up
    import numpy as np
    import torch


def _non_empty(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _names(instance: object, attribute: attrs.Attribute, value: tuple[object, ...]) -> None:
    if not all(isinstance(v, str) and v for v in value) or len(set(value)) != len(value):
        raise ValueError(f"{attribute.name} must be distinct non-empty strings, got {value!r}")


def _as_tuple(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


def _as_dict(options: Mapping[str, Any]) -> dict[str, Any]:
    return dict(options)


@attrs.frozen(kw_only=True)
class EmbedderRequest:
    """Where the model is and how to run it, as the user asked.

    ``model_dir`` is an explicit folder (``--model-dir``); otherwise the embedder finds
    ``model_name`` (None: its own default) under ``data_root`` by its own convention.
    ``options`` carries what only some embedders understand (``allow_pickle``, for
    example); an embedder ignores the keys it does not know.
    """

    model_name: str | None = None
    model_dir: Path | None = None
    data_root: Path | None = None
    device: str = "cpu"
    # excluded from the hash (a dict is not hashable) but compared: equal requests load one model
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_as_dict, hash=False)


@attrs.frozen(kw_only=True)
class ModelInfo:
    """A model's identity, known without loading it (and without torch).

    ``name`` names the latent store folder, so it must name this model and not another
    embedder's; ``fingerprint`` (for example the sha256 of the weights) lets the manifest
    tell which model wrote a latent file. Both are required. ``config_sha256``, the
    sha256 of the model's configuration file where it has one, goes into provenance records.

    ``mu_columns`` and ``sigma_columns`` are the z column names the loaded model will
    write (its :attr:`Embedder.mu_columns` and :attr:`Embedder.sigma_columns`, which the
    host checks against them), where they are known without loading it: a stage can then
    refuse, before anything is embedded, latents its options could not read. Empty
    ``mu_columns`` means unknown (an embedder may leave both out); with ``mu_columns``
    given, empty ``sigma_columns`` means the model writes none.
    """

    name: str = attrs.field(validator=_non_empty)
    fingerprint: str = attrs.field(validator=_non_empty)
    location: str | None = None
    config_sha256: str | None = None
    mu_columns: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple, validator=_names)
    sigma_columns: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple, validator=_names)

    def __attrs_post_init__(self) -> None:
        if self.sigma_columns and len(self.sigma_columns) != len(self.mu_columns):
            raise ValueError(f"{len(self.sigma_columns)} sigma_columns for {len(self.mu_columns)} mu_columns "
                             f"(none, or one per mean column)")


class ModelUnavailable(UserError):
    """``describe`` cannot find or read the model, but knows the name its files go under.

    A stage can still read latent files that model wrote earlier (under ``name``).
    """

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class Embedder(abc.ABC):
    """A loaded model, ready to embed.

    Subclasses set the attributes below in ``__init__`` and implement
    :meth:`embed_batch`. The host checks them when it loads the embedder, and checks
    what :meth:`embed_batch` returns, naming the embedder and its distribution.
    """

    #: ``(channels, height, width)`` the model takes.
    input_size: tuple[int, int, int]
    #: number of latent dimensions.
    latent_dim: int
    #: names of the mean columns, in dimension order (see SPEC §4): ``latent_dim`` of them.
    mu_columns: tuple[str, ...]
    #: names of the log-variance columns (``z_sigma_*``): none, or ``latent_dim`` of them.
    sigma_columns: tuple[str, ...] = ()
    #: the model's fingerprint, equal to its :class:`ModelInfo` ``fingerprint``.
    fingerprint: str
    #: the torch device the model lives on.
    device: str = "cpu"
    #: who provides it, for messages ("embedder 'x' (plugin p, distribution d 1.0)"); set by the host.
    origin: str = ""

    def preprocess(self, path: Path, out: np.ndarray) -> None:
        """Read the image at ``path`` into ``out`` (float32, shape :attr:`input_size`), as
        the model expects its pixels. Called on worker threads, one image at a time; an
        exception leaves that image out (reported as unreadable), the rest go on.

        The default is :func:`~.images.decode_image`: greyscale (RGB for three channels),
        bilinear resize, ``[0, 1]``.
        """
        decode_image(path, self.input_size, out=out)

    @abc.abstractmethod
    def embed_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(mu, logvar)`` for a ``[N, C, H, W]`` batch: torch tensors of shape
        ``(N, latent_dim)``; ``logvar`` may be None when there are no sigma columns."""

    def describe(self) -> dict[str, Any]:
        """Facts for the provenance sidecar."""
        return {
            "input_size": list(self.input_size),
            "latent_dim": self.latent_dim,
            "fingerprint": self.fingerprint,
            "device": self.device,
        }


@attrs.frozen(kw_only=True)
class EmbedderSpec:
    """A registered embedder: a name, a loader, and a cheap ``describe``.

    ``describe(request)`` gives the model's identity without loading it (no torch); it
    raises :class:`ModelUnavailable` when the model cannot be found. Without one, the
    host loads the model (on the CPU) whenever it needs the identity: the name is then
    the embedder's and the fingerprint the loaded model's, so every plan, even a
    merge-only one, pays for a load.
    """

    name: str
    load: Callable[[EmbedderRequest], Embedder]
    describe: Callable[[EmbedderRequest], ModelInfo] | None = None
    help: str = ""


def check_embedder(embedder: Embedder, origin: str, expected: ModelInfo | None = None) -> None:
    """Refuse a loaded embedder whose declared shape or identity is inconsistent."""
    size = getattr(embedder, "input_size", None)
    dim = getattr(embedder, "latent_dim", None)
    problems = []
    if not (isinstance(size, tuple | list) and len(size) == 3 and all(_positive(d) for d in size)):
        problems.append(f"input_size must be (channels, height, width), got {size!r}")
    if not _positive(dim):
        problems.append(f"latent_dim must be a positive integer, got {dim!r}")
    else:
        mu = tuple(getattr(embedder, "mu_columns", ()))
        sigma = tuple(getattr(embedder, "sigma_columns", ()))
        if len(mu) != dim:
            problems.append(f"it has {len(mu)} mu_columns for latent_dim {dim}")
        if len(sigma) not in (0, dim):
            problems.append(f"it has {len(sigma)} sigma_columns for latent_dim {dim} (0 or {dim})")
    fingerprint = getattr(embedder, "fingerprint", None)
    if not isinstance(fingerprint, str) or not fingerprint:
        problems.append(f"fingerprint must be a non-empty string, got {fingerprint!r}")
    elif expected is not None and fingerprint != expected.fingerprint:
        problems.append(f"its fingerprint {fingerprint[:16]} differs from describe()'s {expected.fingerprint[:16]}")
    if expected is not None and expected.mu_columns:
        loaded = (tuple(getattr(embedder, "mu_columns", ())), tuple(getattr(embedder, "sigma_columns", ())))
        if loaded != (expected.mu_columns, expected.sigma_columns):
            problems.append(f"its columns ({_span(loaded[0])}; sigma {_span(loaded[1])}) differ from describe()'s "
                            f"({_span(expected.mu_columns)}; sigma {_span(expected.sigma_columns)})")
    if not isinstance(getattr(embedder, "device", None), str):
        problems.append(f"device must be a string such as 'cpu', got {getattr(embedder, 'device', None)!r}")
    problems += [f"it has no {m} method" for m in ("preprocess", "embed_batch", "describe")
                 if not callable(getattr(embedder, m, None))]
    if problems:
        raise PluginError(f"{origin}: {'; '.join(problems)}")


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _span(names: tuple[str, ...]) -> str:
    """``first .. last (count)``, for messages."""
    return "none" if not names else names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]} ({len(names)})"
