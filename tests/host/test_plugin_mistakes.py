"""Third-party plugin mistakes, each from its own installed distribution: each is recorded
or refused with a line naming the plugin and its distribution, and the rest keep working
(conftest's echo stage, installed as its own distribution, is the rest)."""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import (
    install_fake_distribution,
    load_json_lines,
    make_echo_root,
    needs_torch,
    tree_digest,
)

COLLIDING = """
    from morphseq_stages import EmbedderSpec, hookimpl

    @hookimpl
    def morphseq_register_embedders(register):
        register(EmbedderSpec(name="impostor", load=None, describe=None))
"""

MISSPELLED = """
    from morphseq_stages import Stage, hookimpl

    @hookimpl
    def morphseq_register_stages(register):
        register(Stage(name="typo_stage", help="registered by a plugin with a misspelled hook"))

    @hookimpl
    def morphseq_register_embedder(register):  # the hook is morphseq_register_embedders
        pass
"""

UNMARKED = """
    def morphseq_register_embeders(register):  # misspelled, and without @hookimpl
        pass
"""

BAD_OUTPUT = """
    import hashlib

    import numpy as np

    from morphseq_stages import Embedder, EmbedderSpec, ModelInfo, hookimpl

    DIM = 4

    class Bad(Embedder):
        def __init__(self, request, fault):
            self.input_size, self.latent_dim, self.device = (1, 32, 16), DIM, request.device
            self.mu_columns, self.sigma_columns = tuple(f"z_mu_{n:02}" for n in range(DIM)), ()
            named = (request.model_name or "echo-default") if fault == "echo" else fault
            self.fingerprint = hashlib.sha256(named.encode()).hexdigest()
            self.fault = fault
            if fault == "columns":
                self.mu_columns = self.mu_columns[:-1]

        def embed_batch(self, images):
            import torch

            n = images.shape[0]
            if self.fault in ("numpy", "nodescribe"):
                return np.zeros((n, DIM), np.float32), None
            if self.fault == "raises":
                raise RuntimeError("CUDA kernel image not found")
            if self.fault == "width":
                return torch.zeros(n, DIM + 1), None
            return torch.zeros(n, DIM), None

    def spec(fault):
        def describe(request):
            if fault == "nofingerprint":
                return ModelInfo(name="bad-" + fault)
            if fault == "echo":  # names the model as asked, else its own default
                name = request.model_name or "echo-default"
                return ModelInfo(name=name, fingerprint=hashlib.sha256(name.encode()).hexdigest())
            return ModelInfo(name="bad-" + fault, fingerprint=hashlib.sha256(fault.encode()).hexdigest())

        if fault in ("nodescribe", "none"):  # the identity is learnt by loading the model
            return EmbedderSpec(name="bad_" + fault, load=lambda request: Bad(request, fault))
        return EmbedderSpec(name="bad_" + fault, load=lambda request: Bad(request, fault), describe=describe)

    @hookimpl
    def morphseq_register_embedders(register):
        for fault in ("numpy", "raises", "width", "columns", "nofingerprint", "nodescribe", "none", "echo"):
            register(spec(fault))
"""


def _list(cli) -> dict:
    code, out, _ = cli("list", "--json", "--log-format", "json")
    assert code == 0
    return json.loads(out)


def _files(root) -> dict[str, str]:
    return {p: h for p, h in tree_digest(root).items() if h != "dir"}


def _echo(cli, root, *args: str) -> tuple[int, str, str]:
    return cli("echo", "--root", root, *args, "--log-format", "json")


def _echo_works(cli, tmp_path) -> None:
    root = make_echo_root(tmp_path / "works")
    code, _, err = _echo(cli, root)
    assert code == 0, err
    assert (root / "out" / "echo.json").is_file()


def _model_of(root) -> dict:
    return json.loads((root / "out" / "echo.json").read_text())["model"]


@needs_torch
def test_an_entry_point_named_like_a_first_party_plugin_is_a_recorded_collision(tmp_path, monkeypatch, cli,
                                                                                   fake_plugin):
    install_fake_distribution(
        tmp_path, monkeypatch, "morphseq-impostor",
        "[morphseq_stages.embedders]\nlegacy = impostor_plugin\n[morphseq_stages.stages]\nbuild06 = impostor_plugin\n",
        {"impostor_plugin": COLLIDING},
    )
    listed = _list(cli)
    failed = {(f["plugin"], f["group"]): f for f in listed["failed"]}
    for name, group in (("legacy", "morphseq_stages.embedders"), ("build06", "morphseq_stages.stages")):
        f = failed[(name, group)]
        assert f["distribution"] == "morphseq-impostor"
        assert f["error"].startswith("NameCollision:") and "distribution morphseq-stages" in f["error"]
    rows = {(r["kind"], r["name"]): r for r in listed["plugins"]}
    assert rows[("stage", "build06")]["distribution"] == "morphseq-stages"
    assert rows[("embedder", "legacy")]["distribution"] == "morphseq-stages"
    assert ("embedder", "impostor") not in rows
    code, out, _ = cli("list")
    assert "failed to load" in out and "legacy (morphseq-impostor" in out
    _echo_works(cli, tmp_path)


def test_a_misspelled_unmarked_hook_is_named_too(tmp_path, monkeypatch, cli):
    install_fake_distribution(
        tmp_path, monkeypatch, "morphseq-unmarked",
        "[morphseq_stages.embedders]\nunmarked = unmarked_plugin\n", {"unmarked_plugin": UNMARKED},
    )
    (failure,) = _list(cli)["failed"]
    assert failure["plugin"] == "unmarked" and "'morphseq_register_embeders' is not a hook" in failure["error"]


@needs_torch
def test_a_misspelled_hook_unregisters_only_that_plugin(tmp_path, monkeypatch, cli, fake_plugin):
    install_fake_distribution(
        tmp_path, monkeypatch, "morphseq-typo",
        "[morphseq_stages.stages]\ntypo = typo_plugin\n", {"typo_plugin": MISSPELLED},
    )
    listed = _list(cli)
    (failure,) = listed["failed"]
    assert failure["plugin"] == "typo" and failure["distribution"] == "morphseq-typo"
    assert failure["error"] == ("UnknownHook: 'morphseq_register_embedder' is not a hook "
                                "(did you mean 'morphseq_register_embedders'?)")
    assert "typo_stage" not in {r["name"] for r in listed["plugins"]}  # nothing of it stays registered
    code, _, err = cli("list", "--log-format", "json")
    assert code == 0
    assert any(e["event"] == "plugin.load_failed" and e["plugin"] == "typo" for e in load_json_lines(err))
    _echo_works(cli, tmp_path)
    monkeypatch.setenv("MORPHSEQ_STAGES_STRICT_PLUGINS", "1")
    code, _, err = cli("list")
    assert code == 2 and "'typo' (morphseq-typo)" in err and "morphseq_register_embedder" in err


def _install_bad_output(tmp_path, monkeypatch):
    install_fake_distribution(
        tmp_path, monkeypatch, "morphseq-bad-output",
        "[morphseq_stages.embedders]\nbad = bad_output_plugin\n", {"bad_output_plugin": BAD_OUTPUT},
    )


@pytest.mark.parametrize(("fault", "message"), [
    ("numpy", "embed_batch returned mu as numpy.ndarray of shape (2, 4); expected a floating-point torch.Tensor"),
    ("raises", "embed_batch failed: RuntimeError: CUDA kernel image not found"),
    ("width", "embed_batch returned mu of shape (2, 5) for 2 images; expected (2, 4)"),
    ("columns", "it has 3 mu_columns for latent_dim 4"),
    ("nofingerprint", "describe failed: TypeError"),
    ("nodescribe", "embed_batch returned mu as numpy.ndarray"),
])
def test_an_embedder_breaking_the_output_contract_is_one_line_naming_it(tmp_path, monkeypatch, cli, fault, message,
                                                                        fake_plugin):
    pytest.importorskip("torch")
    _install_bad_output(tmp_path, monkeypatch)
    listed = _list(cli)
    assert listed["failed"] == [] and f"bad_{fault}" in {r["name"] for r in listed["plugins"]}
    root = make_echo_root(tmp_path / "p", 2)
    before = _files(root)
    code, _, err = _echo(cli, root, "--embedder", f"bad_{fault}")
    last = err.strip().splitlines()[-1]
    assert code == 2, err
    assert last.startswith(f"morphseq-stages: error: embedder 'bad_{fault}' (plugin bad, distribution "
                           "morphseq-bad-output 1.0)") and message in last, last
    assert "Traceback" not in err
    assert _files(root) == before  # nothing written (the run's lock leaves at most an empty folder)
    _echo_works(cli, tmp_path)


def test_an_embedder_without_describe_is_identified_by_loading_it(tmp_path, monkeypatch, cli, fake_plugin):
    pytest.importorskip("torch")
    _install_bad_output(tmp_path, monkeypatch)
    root = make_echo_root(tmp_path / "p", 2)
    code, _, err = _echo(cli, root, "--embedder", "bad_none")
    assert code == 0, err
    # the embedder's own name, and the loaded model's fingerprint
    assert _model_of(root) == {"name": "bad_none", "fingerprint": hashlib.sha256(b"none").hexdigest()}


def test_an_embedder_gets_no_model_name_unless_one_is_given(tmp_path, monkeypatch, cli, fake_plugin):
    pytest.importorskip("torch")
    _install_bad_output(tmp_path, monkeypatch)
    root = make_echo_root(tmp_path / "p", 2)
    code, _, err = _echo(cli, root, "--embedder", "bad_echo")
    assert code == 0, err
    assert _model_of(root)["name"] == "echo-default"
    code, _, err = _echo(cli, root, "--embedder", "bad_echo", "--model-name", "mine")
    assert code == 0, err
    assert _model_of(root)["name"] == "mine"


def test_three_broken_distributions_at_once(tmp_path, monkeypatch, cli, fake_plugin):
    pytest.importorskip("torch")
    for name, eps, mod, src in (
        ("morphseq-impostor", "[morphseq_stages.embedders]\nlegacy = impostor_plugin\n", "impostor_plugin", COLLIDING),
        ("morphseq-typo", "[morphseq_stages.embedders]\ntypo = typo_plugin\n", "typo_plugin", MISSPELLED),
        ("morphseq-bad-output", "[morphseq_stages.embedders]\nbad = bad_output_plugin\n", "bad_output_plugin",
         BAD_OUTPUT),
    ):
        install_fake_distribution(tmp_path, monkeypatch, name, eps, {mod: src})
    listed = _list(cli)
    assert {(f["plugin"], f["distribution"]) for f in listed["failed"]} == {
        ("legacy", "morphseq-impostor"), ("typo", "morphseq-typo")}
    assert {"build06", "legacy", "echo", "bad_width"} <= {r["name"] for r in listed["plugins"]}
    _echo_works(cli, tmp_path)
    code, _, err = _echo(cli, make_echo_root(tmp_path / "p", 2), "--embedder", "bad_width")
    assert code == 2 and "embedder 'bad_width' (plugin bad, distribution morphseq-bad-output 1.0)" in err
