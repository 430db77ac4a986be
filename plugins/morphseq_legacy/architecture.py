"""The lab's Encoder_Conv_VAE, rebuilt from its config and checked against the weights.

State-dict names match pythae's ``encoder.*`` keys, so weights load with no renaming.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from morphseq_stages.errors import UserError

if TYPE_CHECKING:  # torch is imported when a model is built
    from torch import nn

KERNEL, STRIDE, PAD = 4, 2, 1


@attrs.frozen(kw_only=True)
class EncoderShape:
    input_dim: tuple[int, int, int]
    latent_dim: int
    n_conv_layers: int
    n_out_channels: int
    orth: bool

    @property
    def feature_dim(self) -> int:
        h, w = self.input_dim[1:]
        for _ in range(min(self.n_conv_layers, 6)):
            h, w = (h + 2 * PAD - KERNEL) // STRIDE + 1, (w + 2 * PAD - KERNEL) // STRIDE + 1
        return h * w * self.n_out_channels * 2 ** (self.n_conv_layers - 1)


def infer_shape(config: dict[str, Any], state: dict[str, Any], source: str) -> EncoderShape:
    """Config values first; what the config lacks comes from the tensor shapes."""
    conv = sorted(int(k.split(".")[2]) for k, v in state.items()
                  if k.startswith("encoder.conv_layers.") and k.endswith(".weight") and getattr(v, "ndim", 0) == 4)
    if not conv or "encoder.log_var.weight" not in state:
        raise UserError(f"{source}: no Encoder_Conv_VAE weights (encoder.conv_layers.*, encoder.log_var.*) found")
    first = state[f"encoder.conv_layers.{conv[0]}.weight"]
    n_layers = int(config.get("n_conv_layers") or len(conv))
    channels = int(config.get("n_out_channels") or first.shape[0])
    latent = int(config.get("latent_dim") or state["encoder.log_var.weight"].shape[0])
    orth = bool(config["orth_flag"]) if "orth_flag" in config else "encoder.embedding0.weight" in state
    dims = config.get("input_dim")
    if dims is None:
        # pythae configs always hold input_dim; older exports may not: take the
        # production snip size and let the feature size confirm it
        dims = (int(first.shape[1]), 288, 128)
    c, h, w = (int(d) for d in dims)
    shape = EncoderShape(input_dim=(c, h, w), latent_dim=latent, n_conv_layers=n_layers,
                         n_out_channels=channels, orth=orth)
    feat = state["encoder.log_var.weight"].shape[1]
    if config.get("input_dim") is None and feat != shape.feature_dim:
        raise UserError(f"{source}: input_dim is missing and cannot be inferred (features {feat})")
    # the config is checked against the weights before anything is allocated for it
    # (a latent_dim of 2**40 must not reach torch)
    if n_layers != len(conv):
        raise UserError(f"{source}: the weights hold {len(conv)} conv layers, model_config.json's "
                        f"n_conv_layers is {n_layers}")
    log_var, conv0 = "encoder.log_var.weight", f"encoder.conv_layers.{conv[0]}.weight"
    for key, said, tensor, found in (("latent_dim", latent, log_var, state[log_var].shape[0]),
                                     ("n_out_channels", channels, conv0, first.shape[0]),
                                     ("input_dim", shape.feature_dim, log_var, feat)):
        if said != found:
            value = list(shape.input_dim) if key == "input_dim" else said
            raise UserError(f"{source}: {tensor} has shape {tuple(state[tensor].shape)}, which does not fit "
                            f"model_config.json's {key} {value}")
    return shape


def build_encoder(shape: EncoderShape) -> nn.Module:
    import torch
    from torch import nn

    class LegacyConvEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            for k in range(shape.n_conv_layers):
                n_in = shape.input_dim[0] if k == 0 else shape.n_out_channels * 2 ** (k - 1)
                n_out = shape.n_out_channels * 2**k
                if k == 0 and shape.n_conv_layers == 7:
                    layers.append(nn.Conv2d(n_in, n_out, kernel_size=5, stride=1, padding=2))
                else:
                    layers.append(nn.Conv2d(n_in, n_out, kernel_size=KERNEL, stride=STRIDE, padding=PAD))
                layers += [nn.BatchNorm2d(n_out), nn.ReLU()]
            self.conv_layers = nn.Sequential(*layers)
            feat = shape.feature_dim
            if shape.orth:
                self.embedding0 = nn.Linear(feat, shape.latent_dim)
                self.embedding = nn.Linear(shape.latent_dim, shape.latent_dim, bias=False)
            else:
                self.embedding = nn.Linear(feat, shape.latent_dim)
            self.log_var = nn.Linear(feat, shape.latent_dim)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.conv_layers(x).reshape(x.shape[0], -1)
            mu = self.embedding(self.embedding0(h)) if shape.orth else self.embedding(h)
            return mu, self.log_var(h)

    return LegacyConvEncoder()


def load_checked(module: nn.Module, state: dict[str, Any], source: str) -> None:
    """Load the ``encoder.*`` tensors, naming the first key whose shape or presence differs."""
    enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in enc:
            raise UserError(f"{source}: weights lack encoder.{key} that the config's architecture needs")
        if tuple(enc[key].shape) != tuple(tensor.shape):
            raise UserError(f"{source}: encoder.{key} has shape {tuple(enc[key].shape)}, "
                            f"the config's architecture needs {tuple(tensor.shape)}")
    extra = sorted(set(enc) - set(expected))
    if extra:
        raise UserError(f"{source}: weights hold encoder.{extra[0]} that the rebuilt architecture does not have")
    module.load_state_dict(enc, strict=True)


def fold_batchnorm(module: nn.Module) -> None:
    """Fold each eval-mode BatchNorm into the conv before it (in place).

    Same function, one pass less: ``bn(conv(x)) = conv'(x)`` with
    ``w' = w * g / sqrt(var + eps)`` and ``b' = (b - mean) * g / sqrt(var + eps) + beta``;
    results change only by float rounding (about 1e-6 here).
    """
    import torch
    from torch import nn

    seq: Any = module.conv_layers  # conv, BatchNorm, ReLU per layer, as built above (stubs type BN stats Optional)
    with torch.no_grad():
        for k in range(0, len(seq), 3):
            conv, bn = seq[k], seq[k + 1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
            seq[k + 1] = nn.Identity()
