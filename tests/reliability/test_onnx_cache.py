"""The ONNX cache is checked against something it cannot forge (issue 17 item 4): another
model's export put under this model's name, with or without this model's metadata, is
exported again from this model's weights, never used."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from . import scenario

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs the [onnx] extra (onnxruntime and onnx)")

from morphseq_legacy import onnx_backend  # noqa: E402
from morphseq_legacy.embedder import LegacyEmbedder  # noqa: E402
from morphseq_legacy.testing import make_legacy_model  # noqa: E402
from morphseq_stages.embedders import EmbedderRequest  # noqa: E402


def _load(folder, backend="onnxruntime") -> LegacyEmbedder:
    return LegacyEmbedder(EmbedderRequest(model_name=folder.name, model_dir=folder, options={"backend": backend}))


def _mu(emb, x):
    with torch.inference_mode():
        return emb.embed_batch(x)[0].numpy()


def _metadata(data: bytes) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load_from_string(data).metadata_props}


def _with_metadata(data: bytes, props: dict[str, str]) -> bytes:
    import onnx

    model = onnx.load_from_string(data)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    return model.SerializeToString()


def _forgeries(mine: bytes, other: bytes) -> dict[str, bytes]:
    """Another model's export as someone who can write the cache folder could leave it."""
    return {
        "copied as it is": other,
        "with this model's metadata": _with_metadata(other, _metadata(mine)),
        "with this model's metadata and probe text": _with_metadata(
            other, {**_metadata(mine), **{k: v for k, v in _metadata(other).items() if k != onnx_backend.IDENTITY_KEY},
                    "morphseq_torch_probe": "AAAA"}),
        "without metadata": _with_metadata(other, {}),
    }


@pytest.mark.parametrize("forgery", ["copied as it is", "with this model's metadata",
                                     "with this model's metadata and probe text", "without metadata"])
@pytest.mark.parametrize("other_seed", [8, 9])
def test_another_models_export_under_this_models_name_is_exported_again(tmp_path, monkeypatch, forgery, other_seed):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mine = make_legacy_model(tmp_path / "mine", latent_dim=6, n_out_channels=2, seed=7)
    other = make_legacy_model(tmp_path / "other", latent_dim=6, n_out_channels=2, seed=other_seed)
    emb, theirs = _load(mine), _load(other)
    path, their_path = onnx_backend.cache_path(emb.fingerprint), onnx_backend.cache_path(theirs.fingerprint)
    assert path != their_path and path.is_file() and their_path.is_file()
    forged = _forgeries(path.read_bytes(), their_path.read_bytes())[forgery]
    path.write_bytes(forged)
    x = torch.from_numpy(np.random.default_rng(1).random((3, *emb.input_size), dtype=np.float32))
    assert np.abs(_mu(theirs, x) - _mu(_load(mine, "torch"), x)).max() > 1e-3  # the forgery would show
    again = _load(mine)
    assert again.describe()["backend"] == "onnxruntime"
    np.testing.assert_allclose(_mu(again, x), _mu(_load(mine, "torch"), x), atol=1e-5)
    assert path.read_bytes() != forged  # rebuilt from this model's weights


def test_the_cache_is_keyed_by_the_weights(tmp_path, monkeypatch):
    """Two models of one architecture: two cache files, each named by its weights' sha256."""
    import hashlib

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a = make_legacy_model(tmp_path / "a", latent_dim=6, n_out_channels=2, seed=7)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    other = make_legacy_model(tmp_path / "other", latent_dim=6, n_out_channels=2, seed=8)
    shutil.copy(other / "model.pt", b / "model.pt")  # same config, other weights
    for folder in (a, b):
        assert _load(folder).describe()["backend"] == "onnxruntime"
        sha = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
        assert onnx_backend.cache_path(sha).is_file()
        assert sha in _metadata(onnx_backend.cache_path(sha).read_bytes())[onnx_backend.IDENTITY_KEY]


def test_latents_generated_through_a_forged_cache_are_this_models(tmp_path, cli, monkeypatch):
    """Through the CLI: the latent file written with --backend onnxruntime after the cache
    was forged holds what torch gives."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    synth = scenario.model_root(tmp_path / "run")
    folder = synth.data_root / "models" / "legacy" / scenario.MODEL
    other = make_legacy_model(tmp_path / "other", input_dim=scenario.INPUT_DIM, latent_dim=4, n_conv_layers=3,
                              n_out_channels=2, seed=3)
    mine, theirs = _load(folder), _load(other)
    onnx_backend.cache_path(mine.fingerprint).write_bytes(
        _forgeries(onnx_backend.cache_path(mine.fingerprint).read_bytes(),
                   onnx_backend.cache_path(theirs.fingerprint).read_bytes())["copied as it is"])
    store = synth.latent_dir(scenario.MODEL)
    code, _, err = cli(*scenario.args(synth, "--generate-missing-latents", "--workers", "1", "--backend", "onnxruntime",
                                      "--experiments", "20231207"))
    assert code == 0, err
    onnx_file = (store / "morph_latents_20231207.csv").read_text()
    shutil.rmtree(store)
    code, _, err = cli(*scenario.args(synth, "--generate-missing-latents", "--workers", "1", "--backend", "torch",
                                      "--experiments", "20231207"))
    assert code == 0, err
    torch_file = (store / "morph_latents_20231207.csv").read_text()
    got = np.array([[float(v) for v in ln.split(",")[3:]] for ln in onnx_file.splitlines()[1:]])
    want = np.array([[float(v) for v in ln.split(",")[3:]] for ln in torch_file.splitlines()[1:]])
    np.testing.assert_allclose(got, want, atol=1e-5)
