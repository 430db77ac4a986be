"""The legacy models' z column names (SPEC §4): ``z_mu_n_NN``/``z_mu_b_NN`` for split configs, else ``z_mu_NN``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .folder import SPLIT_CONFIGS

#: the nuisance share of a split config that does not say (pythae's MetricVAEConfig default)
DEFAULT_ZN_FRAC = 0.2


def column_names(latent_dim: int, nuisance_dims: int | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Mean and log-variance column names (SPEC §4); ``nuisance_dims`` set means the b/n naming:
    the first ``nuisance_dims`` dimensions are ``z_mu_n_NN``, the rest ``z_mu_b_NN``; else ``z_mu_NN``."""
    def name(kind: str, n: int) -> str:
        if nuisance_dims is None:
            return f"z_{kind}_{n:02}"
        return f"z_{kind}_{'n' if n < nuisance_dims else 'b'}_{n:02}"

    return tuple(name("mu", n) for n in range(latent_dim)), tuple(name("sigma", n) for n in range(latent_dim))


def nuisance_dims(latent_dim: int, zn_frac: float) -> int:
    """How many leading dimensions are nuisance (``z_mu_n_*``): ``floor(latent_dim * zn_frac)``."""
    return math.floor(latent_dim * zn_frac)


def config_columns(config: Mapping[str, Any], latent_dim: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The columns a model of this ``model_config.json`` writes: the config's name alone decides
    the naming (b/n for the split configs, with ``zn_frac`` of the dimensions nuisance), the
    latent dimension the count."""
    if config.get("name") not in SPLIT_CONFIGS:
        return column_names(latent_dim)
    zn = config.get("zn_frac")
    return column_names(latent_dim, nuisance_dims(latent_dim, DEFAULT_ZN_FRAC if zn is None else zn))
