"""The lab's Encoder_Conv_VAE as a pythae encoder, written here from SPEC §5, for the
fidelity test: a model saved by pythae with it is what the lab's folders hold."""

from __future__ import annotations

import torch
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from torch import nn


class LabConvEncoder(BaseEncoder):
    def __init__(self, config, n_conv_layers=5, n_out_channels=16, orth=True):
        BaseEncoder.__init__(self)
        c, h, w = config.input_dim
        for _ in range(min(n_conv_layers, 6)):
            h, w = (h + 2 - 4) // 2 + 1, (w + 2 - 4) // 2 + 1
        feature_dim = h * w * n_out_channels * 2 ** (n_conv_layers - 1)
        self.conv_layers = nn.Sequential()
        for n in range(n_conv_layers):
            n_in = c if n == 0 else n_out_channels * 2 ** (n - 1)
            n_out = n_out_channels * 2**n
            if n == 0 and n_conv_layers == 7:
                self.conv_layers.append(nn.Conv2d(n_in, n_out, kernel_size=5, stride=1, padding=2))
            else:
                self.conv_layers.append(nn.Conv2d(n_in, n_out, kernel_size=4, stride=2, padding=1))
            self.conv_layers.append(nn.BatchNorm2d(n_out))
            self.conv_layers.append(nn.ReLU())
        self.orth = orth
        if orth:
            self.embedding0 = nn.Linear(feature_dim, config.latent_dim)
            self.embedding = nn.Linear(config.latent_dim, config.latent_dim, bias=False)
            nn.init.orthogonal_(self.embedding.weight)
        else:
            self.embedding = nn.Linear(feature_dim, config.latent_dim)
        self.log_var = nn.Linear(feature_dim, config.latent_dim)

    def forward(self, x: torch.Tensor):
        h1 = self.conv_layers(x).reshape(x.shape[0], -1)
        mu = self.embedding(self.embedding0(h1)) if self.orth else self.embedding(h1)
        return ModelOutput(embedding=mu, log_covariance=self.log_var(h1))


class TinyDecoder(BaseDecoder):
    def __init__(self, config):
        BaseDecoder.__init__(self)
        self.shape = tuple(config.input_dim)
        self.fc = nn.Linear(config.latent_dim, 4)

    def forward(self, z: torch.Tensor):
        out = torch.sigmoid(self.fc(z)).mean(dim=1).reshape(-1, 1, 1, 1).expand(-1, *self.shape)
        return ModelOutput(reconstruction=out)


def randomise_batchnorm(module: nn.Module, seed: int) -> None:
    """Trained-looking BatchNorm statistics, so that eval mode matters."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))


class PooledEncoder(BaseEncoder):
    """An architecture the legacy embedder cannot rebuild (only encoder.pkl describes it)."""

    def __init__(self, config):
        BaseEncoder.__init__(self)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d((6, 3)))
        self.mu_head = nn.Linear(72, config.latent_dim)
        self.lv_head = nn.Linear(72, config.latent_dim)

    def forward(self, x: torch.Tensor):
        h = self.features(x).flatten(1)
        return ModelOutput(embedding=self.mu_head(h), log_covariance=self.lv_head(h))
