"""The contracts the host offers plugins: an embedder's own preprocessing, and what a
stage's plan may offer the runner (locks, folders it reads, whether it is still current)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from morphseq_stages import HoldsLocks, KnowsIfCurrent, ReadsFolders, StagePlan, hookimpl, run_stage
from morphseq_stages.files import JOURNAL, LockBusy, exclusive_lock
from morphseq_stages.images import decode_image
from morphseq_stages.manager import get_host

from conftest import FAKE_SIZE, EchoPlan, FakeEmbedder, FakePlugin, make_echo_root

torch = pytest.importorskip("torch")


def fake_host(*plugins: tuple[str, object], embedder: type = FakeEmbedder):
    return get_host(plugins=[("fakes", FakePlugin(embedder)), *plugins], load_entry_points=False)


def latents(root: Path) -> dict[str, list[float]]:
    return json.loads((root / "out" / "echo.json").read_text())["latents"]


class Inverted(FakeEmbedder):
    """A model that wants its pixels inverted: its own preprocessing, not the host's default."""

    def preprocess(self, path: Path, out: np.ndarray) -> None:
        decode_image(path, self.input_size, out=out)
        np.subtract(np.float32(1), out, out=out)


def test_an_embedders_own_preprocess_is_what_its_model_gets(tmp_path):
    root = make_echo_root(tmp_path)
    run_stage(fake_host(embedder=Inverted), "echo", {"root": root})
    for name, (mean, largest) in latents(root).items():
        default = decode_image(root / "in" / name, FAKE_SIZE)
        assert mean == pytest.approx(float((1 - default).mean()), abs=1e-6)
        assert largest == pytest.approx(float((1 - default).max()), abs=1e-6)
        assert mean != pytest.approx(float(default.mean()), abs=1e-3)


def test_without_an_override_the_default_decode_is_used(tmp_path):
    root = make_echo_root(tmp_path)
    run_stage(fake_host(), "echo", {"root": root})
    for name, (mean, _) in latents(root).items():
        assert mean == pytest.approx(float(decode_image(root / "in" / name, FAKE_SIZE).mean()), abs=1e-6)


def test_an_image_its_preprocess_refuses_is_left_out_and_the_rest_go_on(tmp_path):
    class Picky(FakeEmbedder):
        def preprocess(self, path: Path, out: np.ndarray) -> None:
            if path.name == "img1.png":
                raise ValueError("not my kind of image")
            super().preprocess(path, out)

    root = make_echo_root(tmp_path)
    run_stage(fake_host(embedder=Picky), "echo", {"root": root})
    assert sorted(latents(root)) == ["img0.png", "img2.png"]
    assert json.loads((root / "out" / "echo.json").read_text())["failed"] == [str(root / "in" / "img1.png")]


def test_the_echo_plan_offers_all_three_and_a_bare_plan_none():
    class Bare(StagePlan):
        def as_dict(self):
            return {}

        def render(self):
            return ""

    plan = EchoPlan(root=Path("r"), images=(), seen=())
    assert isinstance(plan, HoldsLocks) and isinstance(plan, ReadsFolders) and isinstance(plan, KnowsIfCurrent)
    assert not any(isinstance(Bare(), p) for p in (HoldsLocks, ReadsFolders, KnowsIfCurrent))


def test_a_plans_locks_are_held_from_generate_to_export(tmp_path):
    root = make_echo_root(tmp_path)
    held = []

    class Probe:
        @hookimpl(wrapper=True)
        def morphseq_stage_generate(self, stage, context, plan):
            for path, what in plan.locks():
                with pytest.raises(LockBusy, match="another run is writing the echo output"):
                    with exclusive_lock(path, what):
                        pass
                held.append(path.name)
            return (yield)

    run_stage(fake_host(("probe", Probe())), "echo", {"root": root})
    assert held == [".echo.lock"] and not (root / "out" / ".echo.lock").exists()


def test_a_plan_no_longer_current_under_the_locks_is_made_again(tmp_path):
    root = make_echo_root(tmp_path)
    plans = []

    class ChangesAnInput:
        @hookimpl(wrapper=True)
        def morphseq_stage_plan(self, stage, context):
            plan = yield
            plans.append(plan)
            if len(plans) == 1:  # another run rewrites an input between the plan and the locks
                st = os.stat(root / "in" / "img0.png")
                os.utime(root / "in" / "img0.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
            return plan

    result = run_stage(fake_host(("changer", ChangesAnInput())), "echo", {"root": root})
    assert len(plans) == 2 and result.plan is plans[1] and plans[1].still_current()


def test_a_folder_the_plan_only_reads_is_recovered_when_free(tmp_path):
    root = make_echo_root(tmp_path)
    (root / "in" / ".in.lock").write_text("{}")  # left by a killed run, with its half-renamed set
    (root / "in" / ".img9.png.abcd1234.tmp").write_bytes(b"new")
    (root / "in" / JOURNAL).write_text(json.dumps([[".img9.png.abcd1234.tmp", "img9.png"]]))
    run_stage(fake_host(), "echo", {"root": root, "names": ["img0.png"]})
    assert (root / "in" / "img9.png").read_bytes() == b"new"
    assert not (root / "in" / JOURNAL).exists() and not (root / "in" / ".in.lock").exists()


def test_describes_columns_are_what_the_loaded_embedder_must_write():
    # a stage checks its options against the columns describe names, before loading the
    # model: a loaded model that writes others is the plugin's mistake, named
    from morphseq_stages import ModelInfo, PluginError
    from morphseq_stages.embedders import EmbedderRequest, check_embedder

    loaded = FakeEmbedder(EmbedderRequest())
    said = ModelInfo(name="fake-v1", fingerprint=loaded.fingerprint, mu_columns=("fake_mean", "fake_max"))
    check_embedder(loaded, "embedder 'fake'", said)
    check_embedder(loaded, "embedder 'fake'", ModelInfo(name="fake-v1", fingerprint=loaded.fingerprint))  # unknown
    for other in (("fake_max", "fake_mean"), ("z_mu_00", "z_mu_01")):
        with pytest.raises(PluginError, match=r"embedder 'fake': its columns \(fake_mean .. fake_max \(2\); sigma "
                                              r"none\) differ from describe\(\)'s"):
            check_embedder(loaded, "embedder 'fake'", ModelInfo(name="f", fingerprint=loaded.fingerprint,
                                                                mu_columns=other))
    with pytest.raises(PluginError, match="differ from describe"):  # a sigma column it does not write
        check_embedder(loaded, "embedder 'fake'", ModelInfo(name="f", fingerprint=loaded.fingerprint,
                                                            mu_columns=said.mu_columns, sigma_columns=("s0", "s1")))
    for mu, sigma in ((("a",), ("s0", "s1")), (("a", "a"), ()), (("a", ""), ()), ((), ("s0",))):
        with pytest.raises(ValueError):
            ModelInfo(name="f", fingerprint="x", mu_columns=mu, sigma_columns=sigma)


def test_an_embedder_without_describe_is_described_with_its_loaded_columns():
    from morphseq_stages import EmbedderSpec
    from morphseq_stages.embedders import EmbedderRequest
    from morphseq_stages.registry import Provider, Registry

    registry = Registry()
    registry.add_embedder(EmbedderSpec(name="fake", load=FakeEmbedder), Provider(plugin="tests"))
    info = registry.describe_model("fake", EmbedderRequest())
    assert (info.mu_columns, info.sigma_columns) == (("fake_mean", "fake_max"), ())
