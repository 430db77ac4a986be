"""Embedding benchmark: Build06's generation against the old path, side by side.

    python -m benchmarks.embed                  # 1,024 snips 576x256, production-shaped encoder
    python -m benchmarks.embed --device cuda    # on a GPU: judge decode and inference apart

Builds (seeded) a pipeline root of 1,024 JPEG snips and a legacy model folder of the
production shape (5 conv layers, 16 channels, 100 dims, orthogonal head). In fresh
processes it measures:

- the bound no implementation can beat on this machine: every image needs its exact
  decode (PIL, one core) and the encoder's FLOPs at the core's float32 GEMM peak,
  ``cores / (t_decode + flops / gemm_peak)``;
- the machine's limit, with plain eval-mode PyTorch:
  ``cores / (t_decode_one_image_on_one_core + cores * t_inference_per_image_on_all_cores)``;
- the baseline (the old path): sequential PIL decode and resize, batches of 64, plain
  eval mode under ``no_grad`` (no inference mode), pandas ``to_csv`` of the latents;
- ours: the embedding phase (``morphseq_stages.generation.embed_images`` with the legacy
  embedder, on each backend: ONNX Runtime when installed, and torch) and the whole
  ``morphseq-stages build06 --generate-missing-latents`` command (default backend);
- ours split in two: decoding alone (the generation workers decoding batches into, on
  CUDA, pinned memory) and inference alone (decoded batches through the embedder in the
  same workers), so that a GPU run shows at once which side limits it.

The ONNX export is made once before timing (its own cache folder under ``--dir``), as
after a first run. It prints medians, the phase's share of the bound, the command's
speed-up, and the largest difference between our latents and the baseline's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from morphseq_stages.generation import cores

from ._common import median, run_child, table

MODEL = "prod_shape"
EXPERIMENT = "20240101"
SIZE = (1, 288, 128)


def build(base: Path, n: int) -> None:
    from morphseq_build06.testing import make_pipeline_root
    from morphseq_legacy.testing import make_legacy_model

    if (base / f".built-{n}").exists() and len(snips(base)) == n:
        return
    shutil.rmtree(base, ignore_errors=True)
    make_pipeline_root(base, {EXPERIMENT: n}, seed=11)
    make_legacy_model(base / "data" / "models" / "legacy" / MODEL, latent_dim=100, n_conv_layers=5,
                      n_out_channels=16, orth=True, seed=11)
    (base / f".built-{n}").write_text("")


def warm_cache(base: Path) -> float:
    """Export the model for ONNX Runtime once (as a first run would); seconds it took, 0 if none."""
    from morphseq_legacy.embedder import LegacyEmbedder
    from morphseq_stages.embedders import EmbedderRequest

    t = time.perf_counter()
    LegacyEmbedder(EmbedderRequest(model_name=MODEL, data_root=base / "data"))
    return time.perf_counter() - t


def snips(base: Path) -> list[Path]:
    return sorted((base / "root" / "training_data" / "bf_embryo_snips" / EXPERIMENT).glob("*.jpg"))


def plain_module(base: Path):
    """The encoder as plain eval-mode PyTorch: rebuilt from the folder, nothing folded."""
    import torch

    from morphseq_legacy.architecture import build_encoder, infer_shape, load_checked
    from morphseq_legacy.folder import resolve
    from morphseq_stages.embedders import EmbedderRequest

    folder = resolve(EmbedderRequest(model_name=MODEL, data_root=base / "data"))
    state = torch.load(folder.weights, map_location="cpu", weights_only=True)["model_state_dict"]
    module = build_encoder(infer_shape(folder.config, state, str(folder.path)))
    load_checked(module, state, str(folder.path))
    return module.eval()


def encoder_flops(module) -> float:
    """Floating-point operations (2 per multiply-add) of one image through the encoder."""
    import torch

    macs = []

    def count(layer, _inputs, out):
        if isinstance(layer, torch.nn.Conv2d):
            macs.append(out.numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1])
        elif isinstance(layer, torch.nn.Linear):
            macs.append(layer.in_features * layer.out_features)

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    with torch.no_grad():
        module(torch.zeros(1, *SIZE))
    for h in hooks:
        h.remove()
    return 2.0 * sum(macs)


def gemm_peak() -> float:
    """This core's sustained float32 matrix-multiply rate (FLOP/s): what any convolution
    library can at best approach."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    a @ b
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * 1024**3 / (time.perf_counter() - t))
    torch.set_num_threads(previous)
    return best


def old_decode(path: Path) -> np.ndarray:
    from PIL import Image

    im = Image.open(path).convert("L").resize((SIZE[2], SIZE[1]), Image.BILINEAR)
    return (np.asarray(im, dtype=np.float32) / np.float32(255))[None]


def old_embed(module, paths: list[Path]) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(paths), 64):
            x = torch.from_numpy(np.stack([old_decode(p) for p in paths[i : i + 64]]))
            out.append(module(x)[0].numpy())
    return np.concatenate(out)


def ours_embedder(base: Path, backend: str = "auto", device: str = "cpu"):
    from morphseq_legacy.embedder import LegacyEmbedder
    from morphseq_stages.embedders import EmbedderRequest

    return LegacyEmbedder(EmbedderRequest(model_name=MODEL, data_root=base / "data", device=device,
                                          options={"backend": backend}))


def split_rates(base: Path, device: str) -> dict:
    """Decoding alone and inference alone, each in the generation workers (``--device``)."""
    import torch

    from morphseq_stages.generation import decode_batch, default_workers

    paths, size, on_cuda = snips(base), SIZE, device.startswith("cuda")
    workers = default_workers(device)
    starts = range(0, len(paths), 64)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda s: decode_batch(paths[s : s + 64], size, pin=on_cuda), starts[:workers]))  # warm-up
        t = time.perf_counter()
        batches = [b for b, _, _ in pool.map(lambda s: decode_batch(paths[s : s + 64], size, pin=on_cuda), starts)]
        decode = len(paths) / (time.perf_counter() - t)
    emb = ours_embedder(base, device=device)
    previous = torch.get_num_threads()
    if not on_cuda:
        torch.set_num_threads(max(1, previous // workers))

    def infer(batch):
        with torch.inference_mode():
            mu, _ = emb.embed_batch(batch.to(device, non_blocking=True))
            return mu.cpu()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(infer, batches[:workers]))  # warm-up: sessions, allocator, kernels
        t = time.perf_counter()
        list(pool.map(infer, batches))
        inference = len(paths) / (time.perf_counter() - t)
    torch.set_num_threads(previous)
    return {"decode_img_s": decode, "inference_img_s": inference, "workers": workers,
            "backend": emb.describe()["backend"], "device": device}


def child(which: str, base: Path, device: str = "cpu") -> dict:
    import torch

    paths = snips(base)
    if which == "split":
        return split_rates(base, device)
    if which == "limit":
        old_decode(paths[0])
        t = time.perf_counter()
        xs = [old_decode(p) for p in paths]
        t_decode = (time.perf_counter() - t) / len(paths)
        module = plain_module(base)
        batches = [torch.from_numpy(np.stack(xs[i : i + 64])) for i in range(0, len(xs), 64)]
        with torch.no_grad():
            for x in batches:  # warm-up: one full pass (allocator, oneDNN primitives)
                module(x)
            t = time.perf_counter()
            for x in batches:
                module(x)
            t_infer = (time.perf_counter() - t) / len(xs)
        c = cores()
        flops, peak = encoder_flops(module), gemm_peak()
        return {"t_decode_ms": t_decode * 1e3, "t_infer_ms": t_infer * 1e3, "cores": c,
                "limit_img_s": c / (t_decode + c * t_infer), "mflop": flops / 1e6, "gemm_gflop_s": peak / 1e9,
                # every image needs its decode and its FLOPs at the GEMM peak, on one of the cores
                "bound_img_s": c / (t_decode + flops / peak)}
    if which == "baseline_phase":
        module = plain_module(base)
        t = time.perf_counter()
        mu = old_embed(module, paths)
        dt = time.perf_counter() - t
        np.save(base / "baseline_mu.npy", mu)
        return {"img_s": len(paths) / dt}
    if which in ("ours_phase", "ours_phase_torch"):
        from morphseq_stages.generation import embed_images

        emb = ours_embedder(base, "torch" if which == "ours_phase_torch" else "auto", device)
        t = time.perf_counter()
        res = embed_images(emb, paths, batch_size=64)
        dt = time.perf_counter() - t
        np.save(base / f"{which}_mu.npy", res.mu)
        return {"img_s": len(paths) / dt, "backend": emb.describe()["backend"]}
    store = base / "data" / "analysis" / "latent_embeddings" / "legacy" / MODEL
    shutil.rmtree(store, ignore_errors=True)
    df03 = base / "root" / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.csv"
    df03.unlink(missing_ok=True)
    t = time.perf_counter()
    if which == "baseline_command":
        import pandas as pd

        from morphseq_legacy.columns import column_names

        module = plain_module(base)
        mu_cols, sigma_cols = column_names(100, 20)
        mus, lvs = [], []
        with torch.no_grad():
            for i in range(0, len(paths), 64):
                x = torch.from_numpy(np.stack([old_decode(p) for p in paths[i : i + 64]]))
                m, lv = module(x)
                mus.append(m.numpy())
                lvs.append(lv.numpy())
        ids = [p.stem for p in paths]
        lat = pd.DataFrame(np.concatenate(mus), columns=mu_cols)
        lat = pd.concat([lat, pd.DataFrame(np.concatenate(lvs), columns=sigma_cols)], axis=1)
        lat.insert(0, "snip_id", ids)
        lat.insert(0, "embryo_id", [s.rsplit("_", 1)[0] for s in ids])
        lat.insert(0, "experiment_date", EXPERIMENT)
        store.mkdir(parents=True, exist_ok=True)
        lat.to_csv(store / f"morph_latents_{EXPERIMENT}.csv", index=False)
        df02 = pd.read_csv(df03.with_name("embryo_metadata_df02.csv"))
        df02.merge(lat[["snip_id", *mu_cols]], on="snip_id", how="left").to_csv(df03, index=False)
    else:
        from morphseq_stages.cli import main

        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - logs are not what is measured
        rc = main(["build06", "--root", str(base / "root"), "--data-root", str(base / "data"),
                   "--model-name", MODEL, "--generate-missing-latents", "--log-format", "json", "--device", device])
        if rc:
            raise SystemExit(rc)
    return {"seconds": time.perf_counter() - t}


WORKLOADS = ("limit", "baseline_phase", "ours_phase", "ours_phase_torch", "split", "baseline_command", "ours_command")


def report(res: dict, images: int, device: str) -> None:
    lim = res["limit"]
    limit = median([r["limit_img_s"] for r in lim])
    rate = {w: median([r["img_s"] for r in res[w]]) for w in ("baseline_phase", "ours_phase", "ours_phase_torch")}
    secs = {w: median([r["seconds"] for r in res[w]]) for w in ("baseline_command", "ours_command")}
    split = res["split"]
    print(f"{images} snips, {lim[0]['cores']} cores; plain PyTorch: decode {median([r['t_decode_ms'] for r in lim]):.2f} ms"
          f"/image on one core, inference {median([r['t_infer_ms'] for r in lim]):.2f} ms/image on all cores")
    mflop, peak, bound = (median([r[k] for r in lim]) for k in ("mflop", "gemm_gflop_s", "bound_img_s"))
    print(f"bound: the encoder takes {mflop:.0f} MFLOP/image; at this core's float32 GEMM peak ({peak:.0f} GFLOP/s) "
          f"that is {mflop / peak:.2f} ms/image, plus the exact decode; {lim[0]['cores']} cores cannot embed more than "
          f"{bound:.0f} images/s, whatever runs the model")
    print(table([
        ("bound (decode + FLOPs at the GEMM peak)", f"{bound:.0f}", "100%", ""),
        ("machine limit (plain PyTorch)", f"{limit:.0f}", f"{limit / bound:.0%}", ""),
        ("baseline embedding phase", f"{rate['baseline_phase']:.0f}", f"{rate['baseline_phase'] / bound:.0%}", ""),
        (f"ours embedding phase ({res['ours_phase'][0]['backend']})", f"{rate['ours_phase']:.0f}",
         f"{rate['ours_phase'] / bound:.0%}", ""),
        ("ours embedding phase (torch)", f"{rate['ours_phase_torch']:.0f}", f"{rate['ours_phase_torch'] / bound:.0%}", ""),
        (f"ours decoding only ({split[0]['workers']} workers)", f"{median([r['decode_img_s'] for r in split]):.0f}", "", ""),
        (f"ours inference only ({split[0]['backend']}, {device})", f"{median([r['inference_img_s'] for r in split]):.0f}",
         "", ""),
        ("baseline whole command", "", "", f"{secs['baseline_command']:.2f}"),
        ("ours whole command", "", "", f"{secs['ours_command']:.2f}"),
    ], ("", "images/s", "of bound", "seconds")))
    print(f"whole command speed-up: {secs['baseline_command'] / secs['ours_command']:.2f}x; embedding phase: "
          f"{rate['ours_phase'] / rate['baseline_phase']:.2f}x the baseline, {rate['ours_phase'] / rate['ours_phase_torch']:.2f}x "
          "our torch backend")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu or cuda: where ours runs (the baseline stays on CPU)")
    p.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "morphseq-bench-embed")
    p.add_argument("--child")
    a = p.parse_args()
    if a.child:
        print(json.dumps({"seconds": warm_cache(a.dir)} if a.child == "warm" else child(a.child, a.dir, a.device)))
        return
    build(a.dir, a.images)
    os.environ["XDG_CACHE_HOME"] = str(a.dir / "cache")  # the children's ONNX export cache
    args = ("--dir", str(a.dir), "--images", str(a.images), "--device", a.device)
    print(f"ONNX export (once, cached): {run_child('embed', '--child', 'warm', *args)['seconds']:.2f} s with model load")
    res: dict[str, list[dict]] = {w: [] for w in WORKLOADS}
    for _ in range(a.repeats):  # rounds, so that a change in the machine's load touches every workload alike
        for w in WORKLOADS:
            res[w].append(run_child("embed", "--child", w, *args))
    report(res, a.images, a.device)
    base = np.load(a.dir / "baseline_mu.npy")
    for which in ("ours_phase", "ours_phase_torch"):
        diff = np.abs(np.load(a.dir / f"{which}_mu.npy") - base).max()
        print(f"largest |ours - baseline| over all latents, {which.replace('_phase', '')}: {diff:.2e}")


if __name__ == "__main__":
    main()
