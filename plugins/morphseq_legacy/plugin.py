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

from .columns import config_columns
from .folder import VAE_CONFIGS, ModelFolder

if TYPE_CHECKING:
    from .embedder import LegacyEmbedder

#: the most dimensions describe names from a config alone (the lab's models have 10 to 100)
MAX_NAMED_DIMS = 4096


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
    mu, sigma = _columns(folder, request)
    return ModelInfo(name=folder.name, location=str(folder.path), fingerprint=folder.fingerprint(),
                     config_sha256=sha256_file(folder.path / CONFIG), mu_columns=mu, sigma_columns=sigma)


def _columns(folder: ModelFolder, request: EmbedderRequest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The columns ``load`` will give, where the config alone decides them: an encoder
    rebuilt from the config has its ``latent_dim`` (``load`` refuses weights of another
    size). Unknown (empty) when the config lacks ``latent_dim`` (the weights' shape says
    it) or the model may be unpickled (``--allow-pickle``: the module's output says it), and
    past ``MAX_NAMED_DIMS``: a config claiming 2**40 dimensions (which ``load`` refuses
    against the weights) must not make 2**40 names here."""
    config = folder.config
    rebuilt = config["name"] in VAE_CONFIGS and config.get("uses_default_encoder") is not True
    may_unpickle = folder.pickled_encoder is not None and bool(request.options.get("allow_pickle", False))
    if "latent_dim" not in config or config["latent_dim"] > MAX_NAMED_DIMS or not rebuilt or may_unpickle:
        return (), ()
    return config_columns(config, config["latent_dim"])


@hookimpl
def morphseq_register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    register(EmbedderSpec(
        name="legacy",
        load=_load,
        describe=_describe,
        help="the lab's pythae/AutoModel VAE folders (Encoder_Conv_VAE), loaded without unpickling",
    ))
