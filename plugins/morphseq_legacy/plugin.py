"""Registers the ``legacy`` embedder."""

from __future__ import annotations

from morphseq_stages import EmbedderRequest, EmbedderSpec, ModelInfo, hookimpl


def _load(request: EmbedderRequest):
    from .embedder import LegacyEmbedder

    return LegacyEmbedder(request)


def _describe(request: EmbedderRequest) -> ModelInfo:
    from morphseq_stages.files import sha256_file

    from .folder import CONFIG, resolve

    folder = resolve(request)
    return ModelInfo(name=folder.name, location=str(folder.path), fingerprint=folder.fingerprint(),
                     config_sha256=sha256_file(folder.path / CONFIG))


@hookimpl
def morphseq_register_embedders(register) -> None:
    register(EmbedderSpec(
        name="legacy",
        load=_load,
        describe=_describe,
        help="the lab's pythae/AutoModel VAE folders (Encoder_Conv_VAE), loaded without unpickling",
    ))
