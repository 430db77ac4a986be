"""Running the encoder through ONNX Runtime: exported once per model, cached, checked against torch.

The export goes to ``$XDG_CACHE_HOME/morphseq-stages/onnx/<weights sha256>.onnx`` (default
``~/.cache``), never beside the model. What the file was exported from (the weights'
sha256, architecture, torch version, export format) is kept in its metadata: a file from
another export is replaced. Nothing in the cached file vouches for itself, though (anyone
who can write the cache folder can put another model's export there, metadata and all):
every load runs the model on torch and on ONNX Runtime over a probe batch drawn afresh,
and a cached file whose latents differ from torch's is exported again. A model that cannot
be exported, or whose ONNX latents differ, runs on torch instead with the reason logged.
"""

from __future__ import annotations

import importlib.util
import io
import os
import queue
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from morphseq_stages.errors import UserError
from morphseq_stages.files import atomic_write_bytes

if TYPE_CHECKING:  # both are imported when an export or a session is made
    import onnxruntime
    from torch import nn

log = structlog.get_logger()
EXPORT_FORMAT = 1
IDENTITY_KEY = "morphseq_export"
#: ONNX latents must equal torch's within this (absolute and relative) on the probe batch
TOLERANCE = 1e-5


class ExportFailed(Exception):
    """The model cannot run on ONNX Runtime; the message says why."""


def cache_path(weights_sha256: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "morphseq-stages" / "onnx" / f"{weights_sha256}.onnx"


def choose_backend(asked: str, device: str) -> tuple[str, str]:
    """The backend to use and why; an impossible explicit choice is a UserError."""
    installed = importlib.util.find_spec("onnxruntime") is not None
    if asked == "torch":
        return "torch", "asked for"
    if str(device).startswith("cuda"):
        if asked == "onnxruntime":
            raise UserError(f"--backend onnxruntime runs on the CPU, but the model runs on {device}: "
                            "pass --device cpu, or --backend torch or auto")
        return "torch", "the model runs on CUDA (ONNX Runtime is used on CPU only)"
    if not installed:
        if asked == "onnxruntime":
            raise UserError("--backend onnxruntime needs ONNX Runtime: pip install 'morphseq-stages[onnx]'")
        return "torch", "onnxruntime is not installed"
    return "onnxruntime", "asked for" if asked == "onnxruntime" else "onnxruntime is installed"


class OnnxEncoder:
    """``(mu, logvar)`` through ONNX Runtime, one session per concurrent caller.

    A call takes an idle session made for the thread share torch has at that moment
    (generation gives each worker thread an equal share: one thread each on a small
    machine), so the data-parallel design of ``morphseq_stages.generation`` carries over
    unchanged, and sessions are reused from one batch, and one experiment, to the next.
    """

    def __init__(self, model: bytes) -> None:
        import onnxruntime

        self._ort = onnxruntime
        self._model = model
        self._idle: dict[int, queue.SimpleQueue] = {}
        self.version = onnxruntime.__version__
        session = self._session(1)
        meta = session.get_modelmeta().custom_metadata_map
        self._idle[1].put(session)
        self.identity = meta.get(IDENTITY_KEY)

    def _session(self, threads: int) -> onnxruntime.InferenceSession:
        try:
            return self._idle.setdefault(threads, queue.SimpleQueue()).get_nowait()
        except queue.Empty:
            opts = self._ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
            return self._ort.InferenceSession(self._model, opts, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        import torch

        threads = threads or torch.get_num_threads()
        session = self._session(threads)
        try:
            mu, logvar = session.run(None, {"images": images})
        finally:
            self._idle[threads].put(session)
        return mu, logvar


def _probe(input_size: tuple[int, int, int]) -> np.ndarray:
    """Two images drawn afresh for each check: a cached file cannot be made to give the
    right latents on a batch known in advance only."""
    return np.random.default_rng().random((2, *input_size), dtype=np.float32)


def _torch_latents(module: nn.Module, images: np.ndarray) -> np.ndarray:
    """torch's latents of the probe batch, on one thread: a run forked from a process whose
    torch had started its thread pool hangs in a parallel region, and two images need none."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            mu, logvar = module(torch.from_numpy(images))
    finally:
        torch.set_num_threads(threads)
    return np.concatenate([mu.float().numpy(), logvar.float().numpy()], axis=1)


def _difference(encoder: OnnxEncoder, module: nn.Module, input_size: tuple[int, int, int]) -> float:
    """Largest difference between ONNX Runtime's latents and torch's, computed now on a probe
    batch, scaled as ``TOLERANCE`` is (absolute near zero, relative above one)."""
    images = _probe(input_size)
    try:
        got = np.concatenate(encoder(images, threads=1), axis=1)
    except Exception:  # a graph of another shape (another model's export) does not even run
        return float("inf")
    want = _torch_latents(module, images)
    if want.shape != got.shape:
        return float("inf")
    return float(np.max(np.abs(got - want) / (1 + np.abs(want))))


def export(module: nn.Module, input_size: tuple[int, int, int], identity: str) -> bytes:
    """The module as ONNX bytes, batch size free, with ``identity`` in its metadata.

    The TorchScript exporter (``dynamo=False``) needs only the ``onnx`` package; torch's
    default dynamo exporter would also need onnxscript, for the same graph here.
    """
    import copy

    import torch

    try:
        import onnx
    except ImportError:
        raise ExportFailed("exporting needs the onnx package: pip install 'morphseq-stages[onnx]'") from None
    plain = copy.deepcopy(module).to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    buf = io.BytesIO()
    axes = {name: {0: "n"} for name in ("images", "mu", "logvar")}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(  # the stubs omit file objects, which it takes
                plain, (torch.zeros(1, *input_size),), buf, dynamo=False, opset_version=17,  # type: ignore[arg-type]
                input_names=["images"], output_names=["mu", "logvar"], dynamic_axes=axes)
    except Exception as exc:  # any exporter failure means: run on torch
        raise ExportFailed(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc)[:300]}") from None
    model = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(model, {IDENTITY_KEY: identity})
    return model.SerializeToString()


def _cached(path: Path, identity: str, module: nn.Module, input_size: tuple[int, int, int]) -> OnnxEncoder | None:
    """The cached export when it says it is from these weights and exporter, and gives torch's
    latents on a probe batch now."""
    try:
        encoder = OnnxEncoder(path.read_bytes())
    except FileNotFoundError:
        return None
    except Exception as exc:  # an unreadable or truncated cache file is exported again
        log.info("onnx.cache_unusable", path=str(path), error=f"{type(exc).__name__}: {str(exc)[:200]}")
        return None
    if encoder.identity != identity:
        log.info("onnx.cache_unusable", path=str(path), error="exported from other weights or by another exporter")
        return None
    diff = _difference(encoder, module, input_size)
    if not diff <= TOLERANCE:
        log.warning("onnx.cache_unusable", path=str(path),
                    error=f"its latents differ from torch's by {diff:.1e}: not an export of these weights; exported again")
        return None
    return encoder


def prepare(module: nn.Module, input_size: tuple[int, int, int], weights_sha256: str, identity: str) -> OnnxEncoder:
    """The ONNX encoder for ``module`` (whose weights' sha256 is ``weights_sha256``): from the
    cache, else exported (and cached), checked against torch on a probe batch either way.

    Raises :class:`ExportFailed` when the module cannot run on ONNX Runtime as it does on torch.
    """
    path = cache_path(weights_sha256)
    identity = f"weights sha256 {weights_sha256}; {identity}"
    encoder = _cached(path, identity, module, input_size)
    if encoder is not None:
        return encoder
    data = export(module, input_size, identity)
    encoder = OnnxEncoder(data)
    diff = _difference(encoder, module, input_size)
    if not diff <= TOLERANCE:
        raise ExportFailed(f"ONNX Runtime's latents differ from torch's by {diff:.1e} (more than {TOLERANCE:g})")
    try:
        atomic_write_bytes(path, data)
        log.info("onnx.exported", path=str(path), probe_difference=f"{diff:.1e}")
    except (OSError, UserError) as exc:  # an unwritable cache costs an export per run, nothing else
        log.warning("onnx.cache_unwritable", path=str(path), error=str(exc))
    return encoder


def describe(encoder: OnnxEncoder | None) -> dict[str, Any]:
    import torch

    if encoder is None:
        return {"backend": "torch", "backend_version": torch.__version__}
    return {"backend": "onnxruntime", "backend_version": encoder.version}
