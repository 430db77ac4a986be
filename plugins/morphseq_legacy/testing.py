"""Legacy model folders in pythae's format (SPEC §5), for tests and the demo.

The writer is independent of the legacy embedder's loader: it lays tensors out under
pythae's ``encoder.*`` names as the lab's ``Encoder_Conv_VAE`` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def legacy_state_dict(
    *,
    input_dim: tuple[int, int, int] = (1, 288, 128),
    latent_dim: int = 100,
    n_conv_layers: int = 5,
    n_out_channels: int = 16,
    orth: bool = True,
    seed: int = 0,
) -> dict:
    """Random ``encoder.*`` tensors of the lab's Encoder_Conv_VAE (plus a token decoder)."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    state: dict = {}
    h, w = input_dim[1:]
    for k in range(n_conv_layers):
        c_in = input_dim[0] if k == 0 else n_out_channels * 2 ** (k - 1)
        c_out = n_out_channels * 2**k
        ks = 5 if (k == 0 and n_conv_layers == 7) else 4
        p = f"encoder.conv_layers.{3 * k}"
        state[f"{p}.weight"] = randn(c_out, c_in, ks, ks, scale=(2.0 / (c_in * ks * ks)) ** 0.5)
        state[f"{p}.bias"] = randn(c_out, scale=0.05)
        b = f"encoder.conv_layers.{3 * k + 1}"
        state[f"{b}.weight"] = 1 + randn(c_out, scale=0.1)
        state[f"{b}.bias"] = randn(c_out, scale=0.1)
        state[f"{b}.running_mean"] = randn(c_out, scale=0.1)
        state[f"{b}.running_var"] = 0.5 + torch.rand(c_out, generator=g)
        state[f"{b}.num_batches_tracked"] = torch.tensor(1000)
    for _ in range(min(n_conv_layers, 6)):
        h, w = (h + 2 - 4) // 2 + 1, (w + 2 - 4) // 2 + 1
    feat = h * w * n_out_channels * 2 ** (n_conv_layers - 1)
    if orth:
        state["encoder.embedding0.weight"] = randn(latent_dim, feat, scale=feat**-0.5)
        state["encoder.embedding0.bias"] = randn(latent_dim, scale=0.05)
        q, _ = torch.linalg.qr(randn(latent_dim, latent_dim))
        state["encoder.embedding.weight"] = q.contiguous()
    else:
        state["encoder.embedding.weight"] = randn(latent_dim, feat, scale=feat**-0.5)
        state["encoder.embedding.bias"] = randn(latent_dim, scale=0.05)
    state["encoder.log_var.weight"] = randn(latent_dim, feat, scale=feat**-0.5)
    state["encoder.log_var.bias"] = randn(latent_dim, scale=0.05)
    state["decoder.fc.weight"] = randn(8, latent_dim, scale=0.1)
    state["decoder.fc.bias"] = randn(8, scale=0.1)
    return state


def make_legacy_model(
    folder: Path,
    *,
    name: str = "MetricVAEConfig",
    input_dim: tuple[int, int, int] = (1, 288, 128),
    latent_dim: int = 100,
    n_conv_layers: int = 5,
    n_out_channels: int = 16,
    orth: bool = True,
    zn_frac: float = 0.2,
    layout: str = "direct",
    seed: int = 0,
    config_overrides: Mapping[str, object] | None = None,
    reformatted: bool = False,
) -> Path:
    """A model folder as pythae's ``model.save`` writes it; returns the folder given.

    ``layout="final_model"`` puts the files in ``folder/final_model/``. Config keys set
    to None in ``config_overrides`` are left out (to test inference from shapes).
    ``reformatted=True`` writes the lab's newer ``encoder_reformatted.pt`` (the encoder's
    own state dict, keys without ``encoder.``) instead of ``model.pt``.
    """
    import torch

    target = Path(folder) / ("final_model" if layout == "final_model" else "")
    target.mkdir(parents=True, exist_ok=True)
    config = {
        "name": name, "input_dim": list(input_dim), "latent_dim": latent_dim,
        "uses_default_encoder": False, "uses_default_decoder": False, "reconstruction_loss": "mse",
        "zn_frac": zn_frac, "orth_flag": orth, "n_conv_layers": n_conv_layers,
        "n_out_channels": n_out_channels, "distance_metric": "euclidean", "temperature": 1.0,
    }
    for k, v in (config_overrides or {}).items():
        if v is None:
            config.pop(k, None)
        else:
            config[k] = v
    state = legacy_state_dict(input_dim=input_dim, latent_dim=latent_dim, n_conv_layers=n_conv_layers,
                              n_out_channels=n_out_channels, orth=orth, seed=seed)
    (target / "model_config.json").write_text(json.dumps(config, indent=4))
    if reformatted:
        torch.save({k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")},
                   target / "encoder_reformatted.pt")
    else:
        torch.save({"model_state_dict": state}, target / "model.pt")
    (target / "environment.json").write_text(json.dumps({"python_version": "3.9"}))
    (target / "training_config.json").write_text(json.dumps({"name": "BaseTrainerConfig", "num_epochs": 100}))
    return Path(folder)
