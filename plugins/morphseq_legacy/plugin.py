"""Registers the ``legacy`` embedder."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from morphseq_stages import (
    EmbedderRequest,
    EmbedderSpec,
    ModelInfo,
    ModelUnavailable,
    UserError,
    hookimpl,
)

if TYPE_CHECKING:
    from .embedder import LegacyEmbedder


def _load(request: EmbedderRequest) -> LegacyEmbedder:
    from .embedder import LegacyEmbedder  # torch: only when a model is loaded

    return LegacyEmbedder(request)


def _describe(request: EmbedderRequest) -> ModelInfo:
    from morphseq_stages.files import sha256_file

    from .folder import CONFIG, model_name, resolve

    try:
        folder = resolve(request)
    except UserError as exc:
        raise ModelUnavailable(str(exc), name=model_name(request)) from None
    return ModelInfo(name=folder.name, location=str(folder.path), fingerprint=folder.fingerprint(),
                     config_sha256=sha256_file(folder.path / CONFIG))


@hookimpl
def morphseq_register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    register(EmbedderSpec(
        name="legacy",
        load=_load,
        describe=_describe,
        help="the lab's pythae/AutoModel VAE folders (Encoder_Conv_VAE), loaded without unpickling",
    ))
