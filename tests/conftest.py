"""Shared test helpers, and a fake stage and embedder for the host's own tests.

The host is tested on :class:`FakePlugin` (stage ``echo``, embedder ``fake``), as llm's
tests use ``MockModel``: a host test then fails for the host's reasons only, never
because a first-party plugin changed.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import structlog

from morphseq_stages import (
    Embedder,
    EmbedderRequest,
    EmbedderSpec,
    ModelInfo,
    Stage,
    StageContext,
    StageOutcome,
    StagePlan,
    hookimpl,
)
from morphseq_stages.cli import main
from morphseq_stages.errors import UserError
from morphseq_stages.files import atomic_write_json
from morphseq_stages.options import option

#: a test that runs the echo stage's generate phase: the host's embed_images runs on torch,
#: which the tox envs other than py311 do not install
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="the host's embed_images runs on torch")

UPSTREAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "upstream"
FIXTURES = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, _cache_home):
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))  # ONNX exports never land in the real cache
    for var in ("MORPHSEQ_DATA_ROOT", "MORPHSEQ_STAGES_DISABLE_PLUGINS", "MORPHSEQ_STAGES_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    yield
    structlog.reset_defaults()


class CLI:
    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cli(capsys):
    return CLI(capsys)


def upstream_file(name: str) -> Path:
    """The lab's real rows (shared/data/upstream), or the copy kept in tests/data."""
    for folder in (UPSTREAM, FIXTURES):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(name)


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def tree_digest(*folders: Path) -> dict[str, str]:
    """Every file and folder under ``folders`` with a hash of its bytes."""
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """``folder`` on a size-limited tmpfs of its own, holding what it held (a full disk to
    test against); skips where a tmpfs cannot be mounted (not root, not Linux)."""
    if os.geteuid() != 0 or sys.platform != "linux":
        pytest.skip("mounting a size-limited tmpfs needs root on Linux")
    folder.mkdir(parents=True, exist_ok=True)
    aside = folder.with_name(folder.name + ".aside")
    shutil.move(folder, aside)
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        shutil.rmtree(folder)
        shutil.move(aside, folder)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        for f in aside.iterdir():
            shutil.copy2(f, folder / f.name)
        shutil.rmtree(aside)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(folder: Path, leave_pages: int) -> Path:
    """Fill ``folder``'s disk, then free ``leave_pages`` pages of 4 KiB; returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, (filler.stat().st_size // 4096 - leave_pages) * 4096)
    return filler


def run_without_torch(body: str) -> subprocess.CompletedProcess:
    """Run ``body`` (with ``main`` imported) in a fresh interpreter; fail if it imports torch."""
    code = f"import sys\nfrom morphseq_stages.cli import main\n{body}\nassert 'torch' not in sys.modules, 'torch imported'\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def load_json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]



def install_fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, entry_points: str,
                              modules: dict[str, str]) -> None:
    """A distribution on sys.path (dist-info + modules), as pip would leave it."""
    site = tmp_path / f"site-{name}"
    dist = site / f"{name.replace('-', '_')}-1.0.dist-info"  # as pip names it: the stem parses to the name
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for mod, src in modules.items():
        (site / f"{mod}.py").write_text(textwrap.dedent(src))
    monkeypatch.syspath_prepend(str(site))


# ---------------------------------------------------------------- a fake stage and embedder

FAKE_SIZE = (1, 8, 4)
FAKE_FINGERPRINT = hashlib.sha256(b"fake-v1").hexdigest()


class FakeEmbedder(Embedder):
    """Two latent dimensions: each image's mean and its largest pixel, after preprocessing."""

    def __init__(self, request: EmbedderRequest) -> None:
        self.input_size, self.latent_dim, self.device = FAKE_SIZE, 2, request.device
        self.mu_columns, self.sigma_columns = ("fake_mean", "fake_max"), ()
        self.fingerprint = FAKE_FINGERPRINT

    def embed_batch(self, images: Any) -> tuple[Any, None]:
        import torch

        flat = images.flatten(start_dim=1)
        return torch.stack([flat.mean(dim=1), flat.max(dim=1).values], dim=1), None


def fake_describe(request: EmbedderRequest) -> ModelInfo:
    return ModelInfo(name="fake-v1", fingerprint=FAKE_FINGERPRINT, location="built in")


@attrs.frozen(kw_only=True)
class EchoOptions:
    """The fake stage's options: one of each kind the host's option schema knows."""

    root: Path = option(type=Path, metavar="ROOT", help="folder holding in/*.png; echo.json is written to out/")
    embedder: str = option(type=str, default="fake", help="embedder plugin")
    model_name: str | None = option(type=str, default=None, help="the model's name (default: the embedder's own)")
    batch_size: int = option(type=int, default=2, minimum=1, help="images per batch")
    level: str = option(type=str, default="low", choices=("low", "high"), help="how much")
    ratio: float = option(type=float, default=1.0, minimum=0, maximum=1, help="a fraction")
    overwrite: bool = option(type=bool, help="write echo.json even when it is current")
    names: tuple[str, ...] | None = option(type=list, default=None, help="only these images")


@attrs.frozen(kw_only=True)
class EchoPlan(StagePlan):
    """Embed every image under ``root/in`` and write ``root/out/echo.json``, under one lock."""

    root: Path
    images: tuple[Path, ...]
    seen: tuple[tuple[str, int], ...]  # (name, mtime_ns) of each image as planned
    model: ModelInfo | None = None
    request: EmbedderRequest = EmbedderRequest()

    @property
    def out(self) -> Path:
        return self.root / "out" / "echo.json"

    def as_dict(self) -> dict[str, Any]:
        return {"stage": "echo", "images": [p.name for p in self.images], "output": str(self.out)}

    def render(self) -> str:
        return f"echo: {len(self.images)} image(s) -> {self.out}"

    def locks(self) -> list[tuple[Path, str]]:
        return [(self.root / "out" / ".echo.lock", "the echo output")]

    def reads(self) -> list[tuple[Path, str]]:
        return [(self.root / "in" / ".in.lock", "the echo inputs")]

    def still_current(self) -> bool:
        return _seen(self.images) == self.seen


def _seen(images: tuple[Path, ...]) -> tuple[tuple[str, int], ...]:
    return tuple((p.name, p.stat().st_mtime_ns) for p in images if p.exists())


def make_echo_root(folder: Path, n: int = 3) -> Path:
    """A root for the echo stage: ``n`` small greyscale PNGs under ``in/``."""
    from PIL import Image

    (folder / "in").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 8), dtype=np.uint8), "L").save(folder / "in" / f"img{i}.png")
    return folder


class FakePlugin:
    """Registers stage ``echo`` and embedder ``fake``; its phases decline every other stage."""

    def __init__(self, embedder: type[Embedder] = FakeEmbedder) -> None:
        self.embedder = embedder

    @hookimpl
    def morphseq_register_stages(self, register: Callable[[Stage], None]) -> None:
        register(Stage(name="echo", help="embed in/*.png into out/echo.json", options=EchoOptions,
                       demo=lambda folder: ["--root", str(make_echo_root(folder))]))

    @hookimpl
    def morphseq_register_embedders(self, register: Callable[[EmbedderSpec], None]) -> None:
        register(EmbedderSpec(name="fake", load=self.embedder, describe=fake_describe, help="mean and max"))

    @hookimpl
    def morphseq_stage_plan(self, stage: str, context: StageContext) -> EchoPlan | None:
        if stage != "echo":
            return None
        root, names = context.options["root"], context.options["names"]
        if not root.is_dir():
            raise UserError(f"echo root not found: {root}")
        images = tuple(sorted(p for p in (root / "in").glob("*.png") if names is None or p.name in names))
        for name in sorted(set(names or ()) - {p.name for p in images}):
            structlog.get_logger().warning("echo.warning", message=f"no image named {name}")
        request = EmbedderRequest(model_name=context.options["model_name"])
        model = context.registry.describe_model(context.options["embedder"], request)
        return EchoPlan(root=root, images=images, seen=_seen(images), model=model, request=request)

    @hookimpl
    def morphseq_stage_generate(self, stage: str, context: StageContext, plan: EchoPlan) -> dict | None:
        if stage != "echo":
            return None
        from morphseq_stages.generation import embed_images

        embedder = context.registry.load_embedder(context.options["embedder"], plan.request, expected=plan.model)
        result = embed_images(embedder, list(plan.images), batch_size=context.options["batch_size"], workers=1)
        names = [plan.images[i].name for i in result.ok]
        model = {"name": plan.model.name, "fingerprint": plan.model.fingerprint} if plan.model else None
        return {"model": model, "columns": list(embedder.mu_columns),
                "latents": dict(zip(names, result.mu.tolist(), strict=True)), "failed": [f for f, _ in result.failures]}

    @hookimpl
    def morphseq_stage_merge(self, stage: str, context: StageContext, plan: EchoPlan, generated: dict) -> dict | None:
        return None if stage != "echo" else {**generated, "run_id": context.run_id}

    @hookimpl
    def morphseq_stage_export(self, stage: str, context: StageContext, plan: EchoPlan, merged: dict
                              ) -> StageOutcome | None:
        if stage != "echo":
            return None
        atomic_write_json(plan.out, merged)
        structlog.get_logger().info("echo.summary", images=len(merged["latents"]))
        return StageOutcome(summary={"written": [str(plan.out)], "skipped": [], "warnings": [], "sidecar": None},
                            text=f"echo: {plan.out}")


FAKE_PLUGIN_MODULE = """
    from conftest import FakePlugin

    plugin = FakePlugin()
"""


@pytest.fixture
def fake_plugin(tmp_path, monkeypatch) -> None:
    """The fake plugin installed as a distribution (``morphseq-fakes``), found through its entry points."""
    install_fake_distribution(tmp_path, monkeypatch, "morphseq-fakes",
                              "[morphseq_stages.stages]\nfakes = morphseq_fakes:plugin\n",
                              {"morphseq_fakes": FAKE_PLUGIN_MODULE})
