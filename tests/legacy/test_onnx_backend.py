"""The ONNX Runtime backend: exactness against pythae and torch, the export cache, fallbacks, the choice."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from morphseq_stages.errors import UserError

from conftest import load_json_lines

torch = pytest.importorskip("torch")

from morphseq_build06.testing import make_pipeline_root  # noqa: E402
from morphseq_legacy import onnx_backend  # noqa: E402
from morphseq_legacy.embedder import LegacyEmbedder  # noqa: E402
from morphseq_legacy.testing import make_legacy_model  # noqa: E402
from morphseq_stages.embedders import EmbedderRequest  # noqa: E402

needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs the [onnx] extra (onnxruntime and onnx)")
needs_pythae = pytest.mark.skipif(importlib.util.find_spec("pythae") is None,
                                  reason="needs pythae to save models in its own format (test-only dependency)")


def load(folder, backend="auto", **options) -> LegacyEmbedder:
    return LegacyEmbedder(EmbedderRequest(model_name="m", model_dir=folder, options={"backend": backend, **options}))


def embed(emb, x):
    with torch.inference_mode():
        return [t.numpy() for t in emb.embed_batch(x)]


def probe(n=4, size=(1, 288, 128)):
    return torch.from_numpy(np.random.default_rng(3).random((n, *size), dtype=np.float32))


@needs_ort
@needs_pythae
@pytest.mark.parametrize(("layers", "channels", "orth"), [(5, 4, True), (5, 4, False), (7, 2, True), (7, 2, False)])
def test_onnx_latents_equal_pythae_and_torch(tmp_path, layers, channels, orth):
    from pythae.models import VAE, AutoModel, VAEConfig

    from pythae_encoder import LabConvEncoder, TinyDecoder, randomise_batchnorm

    torch.manual_seed(layers * 10 + orth)
    config = VAEConfig(input_dim=(1, 288, 128), latent_dim=12)
    encoder = LabConvEncoder(config, n_conv_layers=layers, n_out_channels=channels, orth=orth)
    randomise_batchnorm(encoder, seed=layers)
    folder = tmp_path / "saved"
    VAE(model_config=config, encoder=encoder, decoder=TinyDecoder(config)).save(str(folder))
    x = probe()
    with torch.no_grad():
        out = AutoModel.load_from_folder(str(folder)).eval().encoder(x)
    ours = load(folder, "onnxruntime")
    assert ours.describe()["backend"] == "onnxruntime"
    mu, logvar = embed(ours, x)
    t_mu, t_logvar = embed(load(folder, "torch"), x)
    assert np.abs(mu - out.embedding.numpy()).max() < 1e-5
    assert np.abs(logvar - out.log_covariance.numpy()).max() < 1e-5
    assert np.abs(mu - t_mu).max() < 1e-5 and np.abs(logvar - t_logvar).max() < 1e-5
    assert float(np.std(mu)) > 1e-3


@needs_ort
def test_export_is_cached_once_per_fingerprint_outside_the_model_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = make_legacy_model(tmp_path / "m", latent_dim=6, n_out_channels=2, seed=4)
    before = sorted(p.name for p in folder.iterdir())
    first = load(folder, "onnxruntime")
    cached = tmp_path / "cache" / "morphseq-stages" / "onnx" / f"{first.fingerprint}.onnx"
    assert cached.is_file() and sorted(p.name for p in folder.iterdir()) == before
    stamp = cached.stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(onnx_backend, "export", lambda *a: calls.append(a))
    second = load(folder, "onnxruntime")
    assert calls == [] and cached.stat().st_mtime_ns == stamp and second.describe()["backend"] == "onnxruntime"
    x = probe(2)
    np.testing.assert_array_equal(embed(first, x)[0], embed(second, x)[0])


@needs_ort
@pytest.mark.parametrize("damage", ["truncated", "other_export", "other_latents"])
def test_a_damaged_or_foreign_cache_file_is_exported_again(tmp_path, monkeypatch, damage):
    import onnx

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = make_legacy_model(tmp_path / "m", latent_dim=6, n_out_channels=2, seed=5)
    emb = load(folder, "onnxruntime")
    cached = onnx_backend.cache_path(emb.fingerprint)
    if damage == "truncated":
        cached.write_bytes(cached.read_bytes()[:1000])
    elif damage == "other_export":
        cached.write_bytes(onnx_backend.export(emb.module, emb.input_size, "format 0; another exporter"))
    else:  # same identity, but its weights no longer give torch's probe latents
        model = onnx.load(str(cached))
        weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
        weight.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weight) * 1.01, weight.name))
        cached.write_bytes(model.SerializeToString())
    damaged = cached.read_bytes()
    again = load(folder, "onnxruntime")
    assert again.describe()["backend"] == "onnxruntime" and cached.read_bytes() != damaged
    np.testing.assert_allclose(embed(again, probe(2))[0], embed(load(folder, "torch"), probe(2))[0], atol=1e-5)


@needs_ort
def test_failed_export_or_check_falls_back_to_torch_with_the_reason(tmp_path, monkeypatch):
    folder = make_legacy_model(tmp_path / "m", latent_dim=6, n_out_channels=2, seed=6)

    def broken(*a, **k):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c1"))
    emb = load(folder, "onnxruntime")
    assert emb.onnx is None and emb.describe()["backend"] == "torch"
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c2"))
    monkeypatch.setattr(onnx_backend, "TOLERANCE", -1.0)  # any difference at all is too much
    assert load(folder).onnx is None
    monkeypatch.undo()
    (tmp_path / "c3").write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c3"))
    assert load(folder).describe()["backend"] == "onnxruntime"  # not cached, still used


def test_backend_choice(monkeypatch):
    installed = importlib.util.find_spec("onnxruntime") is not None
    assert onnx_backend.choose_backend("torch", "cpu")[0] == "torch"
    assert onnx_backend.choose_backend("auto", "cuda") == ("torch", "the model runs on CUDA (ONNX Runtime is used on CPU only)")
    with pytest.raises(UserError, match="runs on the CPU, but the model runs on cuda"):
        onnx_backend.choose_backend("onnxruntime", "cuda")
    assert onnx_backend.choose_backend("auto", "cpu")[0] == ("onnxruntime" if installed else "torch")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name))
    assert onnx_backend.choose_backend("auto", "cpu") == ("torch", "onnxruntime is not installed")
    with pytest.raises(UserError, match=r"pip install 'morphseq-stages\[onnx\]'"):
        onnx_backend.choose_backend("onnxruntime", "cpu")


def test_device_choice_without_a_gpu(monkeypatch):
    from morphseq_build06.generate import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(UserError, match="no CUDA device"):
        resolve_device("cuda")


@needs_ort
def test_cli_backends_agree_and_are_recorded(tmp_path, cli):
    s = make_pipeline_root(tmp_path, {"20231207": 6}, seed=2)
    make_legacy_model(s.data_root / "models" / "legacy" / "tiny", latent_dim=8, n_out_channels=2, seed=2)
    runs = {}
    for backend in ("torch", "onnxruntime"):
        shutil.rmtree(s.latent_dir("tiny"), ignore_errors=True)
        code, _, err = cli("build06", "--root", s.root, "--data-root", s.data_root, "--model-name", "tiny",
                           "--generate-missing-latents", "--overwrite", "--backend", backend, "--log-format", "json")
        assert code == 0, err
        chosen = [e for e in load_json_lines(err) if e["event"] == "backend.chosen"]
        assert [e["backend"] for e in chosen] == [backend]
        store = s.latent_dir("tiny")
        entry = json.loads((store / "manifest.json").read_text())["files"]["morph_latents_20231207.csv"]
        side = json.loads((s.df02.with_name("embryo_metadata_df03.json")).read_text())
        version = __import__("onnxruntime" if backend == "onnxruntime" else "torch").__version__
        assert (entry["backend"], entry["backend_version"]) == (backend, version)
        assert (side["embedder"]["backend"], side["embedder"]["backend_version"]) == (backend, version)
        lines = (store / "morph_latents_20231207.csv").read_text().splitlines()[1:]
        runs[backend] = np.array([[float(v) for v in line.split(",")[3:]] for line in lines])
    assert np.abs(runs["torch"] - runs["onnxruntime"]).max() < 1e-5
    code, _, err = cli("build06", "--root", s.root, "--data-root", s.data_root, "--backend", "tensorrt")
    assert code == 2 and "tensorrt" in err.splitlines()[-1]
