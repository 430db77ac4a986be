"""Loading a legacy model folder into an :class:`~morphseq_stages.Embedder`."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from morphseq_stages.embedders import Embedder, EmbedderRequest
from morphseq_stages.errors import UserError
from morphseq_stages.images import decode_image

from . import onnx_backend
from .architecture import build_encoder, fold_batchnorm, infer_shape, load_checked
from .columns import DEFAULT_ZN_FRAC, config_columns
from .folder import REFORMATTED, SPLIT_CONFIGS, VAE_CONFIGS, ModelFolder, resolve

if TYPE_CHECKING:  # torch is imported when a model is loaded
    import numpy as np
    import torch
    from torch import nn

log = structlog.get_logger()


def read_weights(folder: ModelFolder) -> dict[str, Any]:
    """``model.pt`` (or ``encoder_reformatted.pt``) through ``torch.load(weights_only=True)``:
    tensors only, no code runs. The encoder's tensors come back under ``encoder.*`` names."""
    import torch

    path = folder.weights
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read weights {path} (truncated or not a torch file?): {first[:300]}") from None
    state = obj.get("model_state_dict", obj) if isinstance(obj, dict) else None
    if path.name == REFORMATTED and isinstance(state, dict) and not any(str(k).startswith("encoder.") for k in state):
        state = {f"encoder.{k}": v for k, v in state.items()}
    if not isinstance(state, dict) or not any(str(k).startswith("encoder.") for k in state):
        raise UserError(f"{path} holds no model_state_dict with encoder.* weights")
    return state


def _rebuild(folder: ModelFolder, state: dict[str, Any]) -> tuple[nn.Module, tuple[int, int, int], int]:
    name = folder.config["name"]
    source = str(folder.path)
    if name not in VAE_CONFIGS:
        raise UserError(f"{folder.path / 'model_config.json'}: model name {name!r} is not one this embedder "
                        f"rebuilds (known: {', '.join(VAE_CONFIGS)})")
    if folder.config.get("uses_default_encoder") is True:
        raise UserError(f"{source}: the model uses pythae's default encoder, not the lab's Encoder_Conv_VAE")
    shape = infer_shape(folder.config, state, source)
    module = build_encoder(shape)
    load_checked(module, state, source)
    module.eval()
    fold_batchnorm(module)
    return module, shape.input_dim, shape.latent_dim


class _PickledEncoder:
    """An encoder.pkl module adapted to return (mu, logvar); only with --allow-pickle."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.module(x)
        return out["embedding"], out.get("log_covariance") if hasattr(out, "get") else None

    def eval(self) -> _PickledEncoder:
        self.module.eval()
        return self

    def to(self, device: str) -> _PickledEncoder:
        self.module.to(device)
        return self


def _unpickle(
    folder: ModelFolder, pkl: Path, state: dict[str, Any], why: str
) -> tuple[_PickledEncoder, tuple[int, int, int], int]:
    import torch

    log.warning("legacy.unpickling", path=str(pkl), reason=why,
                note="runs code from the file; allowed by --allow-pickle")
    try:
        with open(pkl, "rb") as fh:
            module = pickle.load(fh)  # noqa: S301 - explicit user opt-in
    except Exception as exc:
        raise UserError(f"cannot unpickle {pkl}: {type(exc).__name__}: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise UserError(f"{pkl} does not hold an encoder: it unpickled to {type(module).__name__}, not a torch module")
    enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    try:
        module.load_state_dict(enc)
    except RuntimeError as exc:
        raise UserError(f"{pkl}: weights do not fit the unpickled encoder: {str(exc).splitlines()[0]}") from None
    dims = folder.config.get("input_dim")
    if dims is None:
        raise UserError(f"{folder.path}: input_dim is needed in model_config.json for a pickled encoder")
    try:  # one tiny batch through it: an unpickled module that does not embed fails here, not mid-run
        with torch.inference_mode():
            out = module.eval()(torch.zeros(1, *dims))
        latent = int(out["embedding"].shape[1])
    except Exception as exc:
        raise UserError(f"{pkl}: the unpickled encoder does not embed a {list(dims)} image into "
                        f"{{'embedding': ...}}: {type(exc).__name__}: {exc}") from None
    channels, height, width = (int(d) for d in dims)
    return _PickledEncoder(module), (channels, height, width), latent


class LegacyEmbedder(Embedder):
    def __init__(self, request: EmbedderRequest) -> None:
        import torch

        folder = resolve(request)
        state = read_weights(folder)
        module: nn.Module | _PickledEncoder
        try:
            module, self.input_size, self.latent_dim = _rebuild(folder, state)
        except UserError as exc:
            pkl = folder.pickled_encoder
            if pkl is None:
                raise
            if not request.options.get("allow_pickle", False):
                raise UserError(f"{exc}; the folder has {pkl.name}, which "
                                "--allow-pickle would unpickle (only if you trust its author: it runs code)") from None
            module, self.input_size, self.latent_dim = _unpickle(folder, pkl, state, str(exc))
        self._torch = torch
        self.device = request.device
        self.module = module.eval().to(self.device)
        # channels-last convolutions are faster on CPU (see benchmarks/embed.py)
        self.channels_last = self.device == "cpu" and isinstance(self.module, torch.nn.Module)
        if isinstance(self.module, torch.nn.Module) and self.channels_last:
            self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.folder = folder
        self.fingerprint = folder.fingerprint()
        self.onnx = self._onnx_encoder(str(request.options.get("backend", "auto")))
        if folder.config["name"] in SPLIT_CONFIGS and folder.config.get("zn_frac") is None:
            log.warning("legacy.zn_frac_missing", assumed=DEFAULT_ZN_FRAC, path=str(folder.path))
        self.mu_columns, self.sigma_columns = config_columns(folder.config, self.latent_dim)

    def _onnx_encoder(self, asked: str) -> onnx_backend.OnnxEncoder | None:
        backend, reason = onnx_backend.choose_backend(asked, self.device)
        if backend == "onnxruntime" and isinstance(self.module, _PickledEncoder):
            backend, reason = "torch", "an unpickled encoder runs on torch"
        encoder = None
        if backend == "onnxruntime" and not isinstance(self.module, _PickledEncoder):
            identity = f"format {onnx_backend.EXPORT_FORMAT}; torch {self._torch.__version__}; {self.module!r}"
            try:
                encoder = onnx_backend.prepare(self.module, self.input_size, self.fingerprint, identity)
            except onnx_backend.ExportFailed as exc:
                backend, reason = "torch", str(exc)
                log.warning("backend.fallback", backend="torch", reason=reason)
        log.info("backend.chosen", backend=backend, reason=reason)
        return encoder

    def preprocess(self, path: Path, out: np.ndarray) -> None:
        """The preprocessing the legacy models were trained with, exactly: torchvision's
        Grayscale -> Resize(BILINEAR) -> ToTensor, which the host's default decode
        reproduces bit for bit (tests/legacy pin it: a change there changes every latent)."""
        decode_image(path, self.input_size, out=out)

    def embed_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.onnx is not None:
            mu, logvar = self.onnx(images.numpy())
            return self._torch.from_numpy(mu), self._torch.from_numpy(logvar)
        if self.channels_last:
            images = images.contiguous(memory_format=self._torch.channels_last)
        return self.module(images)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "folder": str(self.folder.path), "config_name": self.folder.config["name"],
                **onnx_backend.describe(self.onnx)}
