"""The legacy embedder: pickle-free loading, fidelity to pythae, loader errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from morphseq_build06.testing import snip_image  # noqa: E402
from morphseq_legacy.embedder import LegacyEmbedder  # noqa: E402
from morphseq_legacy.testing import make_legacy_model  # noqa: E402
from morphseq_stages.embedders import EmbedderRequest  # noqa: E402
from morphseq_stages.errors import UserError  # noqa: E402
from morphseq_stages.images import decode_image  # noqa: E402


def load(folder: Path, **options) -> LegacyEmbedder:
    return LegacyEmbedder(EmbedderRequest(model_name="m", model_dir=folder, options=options))


def images(tmp_path: Path, n: int = 3) -> list[Path]:
    paths = []
    for i in range(n):
        p = tmp_path / "img" / f"s{i}.jpg"
        p.parent.mkdir(exist_ok=True)
        snip_image(i).save(p, quality=90)
        paths.append(p)
    return paths


def batch(paths, size=(1, 288, 128)) -> torch.Tensor:
    return torch.from_numpy(np.stack([decode_image(p, size) for p in paths]))


def reference_forward(state: dict, x: torch.Tensor, n_layers: int, orth: bool):
    """SPEC §5 with torch.nn.functional only: independent of the embedder's module."""
    import torch.nn.functional as F

    h = x
    for k in range(n_layers):
        c, b = f"encoder.conv_layers.{3 * k}", f"encoder.conv_layers.{3 * k + 1}"
        first7 = k == 0 and n_layers == 7
        h = F.conv2d(h, state[f"{c}.weight"], state[f"{c}.bias"], stride=1 if first7 else 2, padding=2 if first7 else 1)
        h = F.batch_norm(h, state[f"{b}.running_mean"], state[f"{b}.running_var"], state[f"{b}.weight"],
                         state[f"{b}.bias"], training=False, eps=1e-5)
        h = F.relu(h)
    h = h.reshape(x.shape[0], -1)
    if orth:
        mu = F.linear(F.linear(h, state["encoder.embedding0.weight"], state["encoder.embedding0.bias"]),
                      state["encoder.embedding.weight"])
    else:
        mu = F.linear(h, state["encoder.embedding.weight"], state["encoder.embedding.bias"])
    return mu, F.linear(h, state["encoder.log_var.weight"], state["encoder.log_var.bias"])


def test_preprocessing_is_the_legacy_arithmetic(tmp_path):
    from PIL import Image

    (p,) = images(tmp_path, 1)
    got = np.full((1, 288, 128), -1, np.float32)
    LegacyEmbedder.preprocess(SimpleNamespace(input_size=(1, 288, 128)), p, got)  # the legacy embedder's own
    im = Image.open(p).convert("L").resize((128, 288), Image.BILINEAR)
    # torchvision ToTensor: uint8 -> float32, then / 255 in float32
    want = torch.from_numpy(np.array(im, dtype=np.uint8)).to(torch.float32).div(255).numpy()[None]
    assert got.dtype == np.float32 and got.shape == (1, 288, 128)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("layers", "channels", "orth"), [(5, 4, True), (5, 4, False), (7, 2, True), (7, 2, False)])
def test_latents_match_an_independent_reference(tmp_path, layers, channels, orth):
    folder = make_legacy_model(tmp_path / "m", latent_dim=10, n_conv_layers=layers, n_out_channels=channels,
                               orth=orth, seed=layers)
    emb = load(folder)
    x = batch(images(tmp_path))
    with torch.inference_mode():
        mu, logvar = emb.embed_batch(x)
    state = torch.load(folder / "model.pt", weights_only=True)["model_state_dict"]
    ref_mu, ref_lv = reference_forward(state, x, layers, orth)
    assert float((mu - ref_mu).abs().max()) < 1e-5 and float((logvar - ref_lv).abs().max()) < 1e-5
    assert float(mu.std()) > 1e-3  # not a degenerate model


def test_columns_follow_the_config(tmp_path):
    metric = load(make_legacy_model(tmp_path / "a", latent_dim=100, n_out_channels=2, zn_frac=0.2))
    assert metric.mu_columns[:2] == ("z_mu_n_00", "z_mu_n_01")
    assert metric.mu_columns[19:21] == ("z_mu_n_19", "z_mu_b_20") and metric.mu_columns[-1] == "z_mu_b_99"
    assert metric.sigma_columns[0] == "z_sigma_n_00" and len(metric.sigma_columns) == 100
    plain = load(make_legacy_model(tmp_path / "b", name="VAEConfig", latent_dim=12, n_out_channels=2))
    assert plain.mu_columns == tuple(f"z_mu_{i:02}" for i in range(12))
    seq = load(make_legacy_model(tmp_path / "c", name="SeqVAEConfig", latent_dim=7, zn_frac=0.5, n_out_channels=2))
    assert seq.mu_columns[:4] == ("z_mu_n_00", "z_mu_n_01", "z_mu_n_02", "z_mu_b_03")


@pytest.mark.parametrize(("config", "zn_frac", "first"), [
    ("MetricVAEConfig", 0.2, "z_mu_n_00"), ("SeqVAEConfig", 0.5, "z_mu_n_00"), ("MetricVAEConfig", None, "z_mu_n_00"),
    ("SeqVAEConfig", 0.0, "z_mu_b_00"), ("VAEConfig", 0.2, "z_mu_00"), ("BetaVAEConfig", 0.5, "z_mu_00")])
def test_describe_names_the_columns_load_gives(tmp_path, config, zn_frac, first):
    # the plan refuses a --z-schema that cannot read the model's columns before loading it:
    # describe (no torch, no weights read) must say exactly what the loaded model writes
    from morphseq_stages import get_host

    folder = make_legacy_model(tmp_path / "m", name=config, latent_dim=7, n_out_channels=2,
                               config_overrides={"zn_frac": zn_frac} if zn_frac is not None else {"zn_frac": None})
    request = EmbedderRequest(model_name="m", model_dir=folder)
    info = get_host().registry.describe_model("legacy", request)
    loaded = load(folder)
    assert info.mu_columns[0] == first and len(info.mu_columns) == 7
    assert (info.mu_columns, info.sigma_columns) == (loaded.mu_columns, loaded.sigma_columns)


def test_describe_leaves_the_columns_unknown_when_the_config_does_not_decide_them(tmp_path):
    from morphseq_stages import get_host

    registry = get_host().registry
    bare = make_legacy_model(tmp_path / "bare", latent_dim=6, n_out_channels=2, config_overrides={"latent_dim": None})
    info = registry.describe_model("legacy", EmbedderRequest(model_dir=bare))
    assert info.mu_columns == () and len(load(bare).mu_columns) == 6  # the weights say 6
    pickled = make_legacy_model(tmp_path / "pickled", latent_dim=6, n_out_channels=2)
    (pickled / "encoder.pkl").write_bytes(b"\x80\x04N.")
    assert len(registry.describe_model("legacy", EmbedderRequest(model_dir=pickled)).mu_columns) == 6
    # with --allow-pickle the unpickled module's output could say another size
    unpickled = registry.describe_model("legacy", EmbedderRequest(model_dir=pickled, options={"allow_pickle": True}))
    assert unpickled.mu_columns == ()
    # a config claiming 2**40 dimensions (load refuses it against the weights) names none
    huge = make_legacy_model(tmp_path / "huge", latent_dim=6, n_out_channels=2, config_overrides={"latent_dim": 2**40})
    assert registry.describe_model("legacy", EmbedderRequest(model_dir=huge)).mu_columns == ()


def test_missing_config_keys_are_inferred_from_the_weights(tmp_path):
    full = make_legacy_model(tmp_path / "full", latent_dim=6, n_out_channels=3, n_conv_layers=7, orth=False, seed=3)
    bare = make_legacy_model(tmp_path / "bare", latent_dim=6, n_out_channels=3, n_conv_layers=7, orth=False, seed=3,
                             config_overrides={"n_conv_layers": None, "n_out_channels": None, "orth_flag": None,
                                               "latent_dim": None, "input_dim": None})
    x = batch(images(tmp_path, 2))
    with torch.inference_mode():
        assert torch.equal(load(full).embed_batch(x)[0], load(bare).embed_batch(x)[0])


def test_final_model_layout_and_data_root_lookup(tmp_path):
    make_legacy_model(tmp_path / "models" / "legacy" / "mymodel", latent_dim=4, n_out_channels=2, layout="final_model")
    emb = LegacyEmbedder(EmbedderRequest(model_name="mymodel", data_root=tmp_path))
    assert emb.folder.path.name == "final_model" and emb.folder.name == "mymodel"
    assert len(emb.fingerprint) == 64


def _config(d: Path) -> dict:
    return json.loads((d / "model_config.json").read_text())


def _truncate(d: Path) -> None:
    data = (d / "model.pt").read_bytes()
    (d / "model.pt").write_bytes(data[: len(data) // 2])


LOADER_ERRORS = {
    "no folder": (lambda d: shutil.rmtree(d), "model folder not found"),
    "no config": (lambda d: (d / "model_config.json").unlink(), "no model_config.json"),
    "bad json": (lambda d: (d / "model_config.json").write_text("{not json"), "cannot read .*model_config.json"),
    "unknown architecture": (
        lambda d: (d / "model_config.json").write_text(json.dumps({**_config(d), "name": "VQVAEConfig"})),
        "'VQVAEConfig' is not one this embedder rebuilds"),
    "shapes differ": (
        lambda d: (d / "model_config.json").write_text(json.dumps({**_config(d), "n_out_channels": 8})),
        r"encoder\.conv_layers\.0\.weight has shape \(2, 1, 4, 4\)"),
    "truncated weights": (_truncate, "cannot read weights .*model.pt"),
    "no weights": (lambda d: (d / "model.pt").unlink(), "has no model.pt"),
}


@pytest.mark.parametrize("case", LOADER_ERRORS)
def test_loader_errors_are_clear(tmp_path, case):
    spoil, message = LOADER_ERRORS[case]
    d = make_legacy_model(tmp_path / "m", latent_dim=4, n_out_channels=2)
    spoil(d)
    with pytest.raises(UserError, match=message):
        load(d)


def test_encoder_reformatted_pt_is_read_when_model_pt_is_absent(tmp_path):
    kw = dict(name="SeqVAEConfig", latent_dim=6, n_out_channels=2, seed=4)
    pythae_folder = make_legacy_model(tmp_path / "pythae", **kw)
    lab_folder = make_legacy_model(tmp_path / "lab", reformatted=True, **kw)
    assert not (lab_folder / "model.pt").exists() and (lab_folder / "encoder_reformatted.pt").is_file()
    state = torch.load(lab_folder / "encoder_reformatted.pt", weights_only=True)
    assert "conv_layers.0.weight" in state and not any(k.startswith("encoder.") for k in state)
    x = batch(images(tmp_path, 2))
    lab = load(lab_folder)
    with torch.inference_mode():
        assert torch.equal(load(pythae_folder).embed_batch(x)[0], lab.embed_batch(x)[0])
    assert lab.folder.weights.name == "encoder_reformatted.pt" and len(lab.fingerprint) == 64
    state["log_var.weight"] = state["log_var.weight"][:, :-1]
    torch.save(state, lab_folder / "encoder_reformatted.pt")
    with pytest.raises(UserError, match=r"log_var\.weight has shape \(6, 1151\)"):
        load(lab_folder)
    (lab_folder / "encoder_reformatted.pt").unlink()
    with pytest.raises(UserError, match="has no model.pt \\(nor encoder_reformatted.pt\\)"):
        load(lab_folder)


def test_weights_that_need_unpickling_are_refused(tmp_path):
    import argparse

    d = make_legacy_model(tmp_path / "m", latent_dim=4, n_out_channels=2)
    state = torch.load(d / "model.pt", weights_only=True)
    state["extra"] = argparse.Namespace(a=1)  # an arbitrary object: weights_only refuses the file
    torch.save(state, d / "model.pt")
    with pytest.raises(UserError, match="cannot read weights"):
        load(d)


def test_pickle_only_architecture_needs_the_opt_in(tmp_path):
    d = make_legacy_model(tmp_path / "m", latent_dim=4, n_out_channels=2)
    state = torch.load(d / "model.pt", weights_only=True)["model_state_dict"]
    renamed = {k.replace("encoder.log_var", "encoder.logvar_head"): v for k, v in state.items()}
    torch.save({"model_state_dict": renamed}, d / "model.pt")
    (d / "encoder.pkl").write_bytes(b"\x80\x04N.")  # never read without the opt-in
    with pytest.raises(UserError, match="--allow-pickle"):
        load(d)
    (d / "encoder.pkl").unlink()
    with pytest.raises(UserError, match="no Encoder_Conv_VAE weights"):
        load(d)


def needs_pythae() -> None:
    pytest.importorskip("pythae", reason="needs the real pythae to save the model folder (the [pythae] extra)")


@pytest.mark.parametrize(("layers", "channels", "orth"), [(5, 4, True), (5, 4, False), (7, 2, True), (7, 2, False)])
def test_fidelity_to_pythae(tmp_path, layers, channels, orth):
    """A folder saved by pythae itself: our pickle-free latents equal pythae's own."""
    needs_pythae()
    from pythae.models import VAE, AutoModel, VAEConfig

    from pythae_encoder import LabConvEncoder, TinyDecoder, randomise_batchnorm

    torch.manual_seed(layers * 10 + orth)
    config = VAEConfig(input_dim=(1, 288, 128), latent_dim=12)
    encoder = LabConvEncoder(config, n_conv_layers=layers, n_out_channels=channels, orth=orth)
    randomise_batchnorm(encoder, seed=layers)
    VAE(model_config=config, encoder=encoder, decoder=TinyDecoder(config)).save(str(tmp_path / "saved"))
    folder = tmp_path / "saved"
    assert {"model_config.json", "model.pt", "encoder.pkl"} <= {p.name for p in folder.iterdir()}

    x = batch(images(tmp_path, 4))
    reference = AutoModel.load_from_folder(str(folder)).eval()
    with torch.no_grad():
        out = reference.encoder(x)
    emb = load(folder)  # no --allow-pickle: rebuilt from config + shapes
    with torch.inference_mode():
        mu, logvar = emb.embed_batch(x)
    assert float((mu - out.embedding).abs().max()) < 1e-5
    assert float((logvar - out.log_covariance).abs().max()) < 1e-5
    assert emb.mu_columns[0] == "z_mu_00"  # VAEConfig: flat naming


def test_allow_pickle_loads_an_architecture_it_cannot_rebuild(tmp_path):
    needs_pythae()
    from pythae.models import VAE, AutoModel, VAEConfig

    from pythae_encoder import PooledEncoder, TinyDecoder

    torch.manual_seed(5)
    config = VAEConfig(input_dim=(1, 288, 128), latent_dim=6)
    folder = tmp_path / "saved"
    VAE(model_config=config, encoder=PooledEncoder(config), decoder=TinyDecoder(config)).save(str(folder))
    with pytest.raises(UserError, match="--allow-pickle"):
        load(folder)
    x = batch(images(tmp_path, 2))
    with torch.no_grad():
        want = AutoModel.load_from_folder(str(folder)).eval().encoder(x)
    emb = load(folder, allow_pickle=True)
    with torch.inference_mode():
        mu, logvar = emb.embed_batch(x)
    assert float((mu - want.embedding).abs().max()) < 1e-6
    assert float((logvar - want.log_covariance).abs().max()) < 1e-6
    assert emb.latent_dim == 6 and emb.mu_columns[-1] == "z_mu_05"
