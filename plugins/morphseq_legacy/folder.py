"""Finding and validating a legacy model folder (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from morphseq_stages.embedders import EmbedderRequest
from morphseq_stages.errors import UserError
from morphseq_stages.files import sha256_file

#: the model used when neither --model-name nor --model-dir is given
DEFAULT_MODEL = "20241107_ds_sweep01_optimum"
CONFIG = "model_config.json"
WEIGHTS = "model.pt"
#: the lab's newer layout: the encoder's own state dict (keys without ``encoder.``), read when model.pt is absent
REFORMATTED = "encoder_reformatted.pt"
PICKLED_ENCODER = "encoder.pkl"
#: pythae config names whose encoder is the lab's Encoder_Conv_VAE (SPEC §5)
VAE_CONFIGS = ("MetricVAEConfig", "SeqVAEConfig", "VAEConfig", "BetaVAEConfig")
#: configs whose latent columns split into nuisance and biological dims
SPLIT_CONFIGS = ("MetricVAEConfig", "SeqVAEConfig")


@attrs.frozen(kw_only=True)
class ModelFolder:
    path: Path
    name: str
    config: dict[str, Any]

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS if (self.path / WEIGHTS).is_file() else self.path / REFORMATTED

    @property
    def pickled_encoder(self) -> Path | None:
        p = self.path / PICKLED_ENCODER
        return p if p.is_file() else None

    def fingerprint(self) -> str:
        return sha256_file(self.weights)


def _layout(folder: Path) -> Path | None:
    for candidate in (folder, folder / "final_model"):
        if (candidate / CONFIG).is_file():
            return candidate
    return None


def model_name(request: EmbedderRequest) -> str:
    """The name the model's files go under: ``--model-dir``'s folder (its parent's for a
    ``final_model/`` folder), else ``--model-name``, else the lab's default model."""
    if request.model_dir is not None:
        d = Path(request.model_dir).resolve()
        return d.parent.name if d.name == "final_model" else d.name
    return request.model_name or DEFAULT_MODEL


def resolve(request: EmbedderRequest) -> ModelFolder:
    name = model_name(request)
    if request.model_dir is not None:
        base = Path(request.model_dir)
    else:
        if request.data_root is None:
            raise UserError("no data root to find the model in: pass --data-root or --model-dir")
        base = Path(request.data_root) / "models" / "legacy" / name
    if not base.is_dir():
        raise UserError(f"model folder not found: {base}{_did_you_mean(base)}")
    path = _layout(base)
    if path is None:
        raise UserError(f"no {CONFIG} in model folder {base} (nor in its final_model/)")
    config = read_config(path / CONFIG)
    if not (path / WEIGHTS).is_file() and not (path / REFORMATTED).is_file():
        raise UserError(f"model folder {path} has no {WEIGHTS} (nor {REFORMATTED})")
    return ModelFolder(path=path, name=name, config=config)


def _did_you_mean(missing: Path) -> str:
    import difflib

    known = sorted(p.name for p in missing.parent.iterdir() if p.is_dir()) if missing.parent.is_dir() else []
    close = difflib.get_close_matches(missing.name, known, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a JSON object")
    name = config.get("name")
    if not isinstance(name, str):
        raise UserError(f"{path} has no model 'name'")
    if "latent_dim" in config and not (isinstance(config["latent_dim"], int) and config["latent_dim"] > 0):
        raise UserError(f"{path}: latent_dim must be a positive integer, got {config['latent_dim']!r}")
    dims = config.get("input_dim")
    if dims is not None and not (isinstance(dims, list | tuple) and len(dims) == 3
                                 and all(isinstance(d, int) and d > 0 for d in dims)):
        raise UserError(f"{path}: input_dim must be [channels, height, width], got {dims!r}")
    zn = config.get("zn_frac")
    if zn is not None and not (isinstance(zn, int | float) and 0 <= zn <= 1):
        raise UserError(f"{path}: zn_frac must be between 0 and 1, got {zn!r}")
    return config
