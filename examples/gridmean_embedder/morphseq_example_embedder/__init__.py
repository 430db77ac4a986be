"""An embedder plugin as a third party would ship it: registration plus one class.

Its "latent" is the mean intensity of each cell of a ``rows x cols`` grid over the
preprocessed image, which makes its output easy to check by hand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

from morphseq_stages import (
    Embedder,
    EmbedderRequest,
    EmbedderSpec,
    ModelInfo,
    hookimpl,
)

ROWS, COLS = 4, 2
#: this model's identity: its latent files go under <embedder>/<NAME>/ in the store
NAME = f"gridmean-{ROWS}x{COLS}"
FINGERPRINT = hashlib.sha256(NAME.encode()).hexdigest()  # no weights: the grid is the model


class GridMean(Embedder):
    def __init__(self, request: EmbedderRequest) -> None:
        self.input_size = (1, 288, 128)
        self.latent_dim = ROWS * COLS
        self.mu_columns, self.sigma_columns = tuple(f"z_mu_{n:02}" for n in range(self.latent_dim)), ()
        self.fingerprint = FINGERPRINT
        self.device = request.device

    def embed_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        n, _, h, w = images.shape
        cells = images.reshape(n, ROWS, h // ROWS, COLS, w // COLS)
        return cells.mean(dim=(2, 4)).reshape(n, -1), None


def describe(request: EmbedderRequest) -> ModelInfo:
    return ModelInfo(name=NAME, fingerprint=FINGERPRINT, location="built in")


@hookimpl
def morphseq_register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    register(EmbedderSpec(name="gridmean", load=GridMean, describe=describe, help="mean intensity on a 4x2 grid"))
