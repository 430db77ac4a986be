"""Merge benchmark: Build06's merge and write path against the old pipeline's, side by side.

    python -m benchmarks.merge                    # 200,000 rows x ~50 columns, 40 experiments
    python -m benchmarks.merge --rows 1000000 --skip-baseline

Builds (seeded) a pipeline root whose df02 looks like the lab's and 40 latent files with
100 mu + 100 sigma columns, then runs, each in a fresh process: the baseline (pandas
default read_csv of df02 and of each latent file, keep snip_id + z_mu_*, concat,
drop_duplicates, left merge, to_csv) and ``morphseq-stages build06`` (merge only). It
prints the median time, peak RSS and their ratios, and checks that both outputs hold
the same values.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ._common import median, peak_rss_mb, run_child, table, workload, workload_args

MODEL = "20241107_ds_sweep01_optimum"


def build(base: Path, rows: int, n_exp: int, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.compute as pc

    from morphseq_build06.csvtext import float_text, write_rows
    from morphseq_build06.latents import latent_file_name
    from morphseq_legacy.columns import column_names
    from morphseq_stages.files import atomic_write

    marker = base / f".built-{rows}-{n_exp}-{seed}"
    if marker.exists():
        return base
    rng = np.random.default_rng(seed)
    exps = [f"2024{m:02}{d:02}" if i % 3 else f"2024{m:02}{d:02}_18ss"
            for i, (m, d) in enumerate((1 + i // 28 % 12, 1 + i % 28) for i in range(n_exp))]
    exp_idx = np.sort(rng.integers(0, n_exp, rows))
    exp_col = np.array(exps, dtype=object)[exp_idx]
    wells = np.array([f"{r}{c:02}" for r in "ABCDEFGH" for c in range(1, 13)], dtype=object)
    well = wells[rng.integers(0, 96, rows)]
    t = np.array([f"t{i:04}" for i in range(1000)], dtype=object)[rng.integers(0, 1000, rows)]
    snip = [f"{e}_{w}_e00_{tt}" for e, w, tt in zip(exp_col, well, t, strict=True)]
    snip = np.array(list(dict.fromkeys(snip)), dtype=object)  # unique snips
    n = len(snip)
    exp_col = np.array([s.rsplit("_", 3)[0] for s in snip], dtype=object)
    cols: dict[str, pa.Array] = {}
    cols["snip_id"] = pa.array(snip.tolist())
    cols["experiment_date"] = pa.array(exp_col.tolist())
    cols["embryo_id"] = pa.array([s.rsplit("_", 1)[0] for s in snip])
    for j in range(47):
        kind = j % 5
        if kind == 0:
            cols[f"f{j}"] = float_text(rng.standard_normal(n) * 100)
        elif kind == 1:
            cols[f"i{j}"] = pa.array(rng.integers(0, 1000, n).astype(str).tolist())
        elif kind == 2:
            cols[f"h{j}"] = pa.array(np.where(rng.random(n) < 0.3, "", "48.0").tolist())
        elif kind == 3:
            cols[f"b{j}"] = pa.array(np.where(rng.random(n) < 0.5, "True", "False").tolist())
        else:
            cols[f"s{j}"] = pa.array(rng.choice(["wik", "lmx1b", "ctrl-inj", "tbxta"], n).tolist())
    cols["use_embryo_flag"] = pa.array(np.where(rng.random(n) < 0.9, "True", "False").tolist())
    names = list(cols)
    records = pc.binary_join_element_wise(*[pc.cast(c, pa.binary()) for c in cols.values()], b",")
    df02 = base / "root" / "metadata" / "combined_metadata_files" / "embryo_metadata_df02.csv"
    atomic_write(df02, lambda fh: write_rows(fh, ",".join(names).encode(), records, b"\n"))
    mu_cols, sigma_cols = column_names(100, 20)
    store = base / "data" / "analysis" / "latent_embeddings" / "legacy" / MODEL
    for e in exps:
        ids = snip[exp_col == e]
        vals = rng.standard_normal((len(ids), 200)).astype(np.float32)
        header = ",".join(["experiment_date", "embryo_id", "snip_id", *mu_cols, *sigma_cols]).encode()
        recs = pa.array([f"{e},{s.rsplit('_', 1)[0]},{s}".encode() for s in ids], pa.binary())
        atomic_write(store / latent_file_name(e), lambda fh, h=header, r=recs, v=vals: write_rows(fh, h, r, b"\n", v))
    marker.write_text("")
    return base


def baseline(base: Path, out: Path) -> None:
    """The old pipeline's merge, written out plainly."""
    import pandas as pd

    df02 = pd.read_csv(base / "root" / "metadata" / "combined_metadata_files" / "embryo_metadata_df02.csv")
    frames = []
    for f in sorted(glob.glob(str(base / "data" / "analysis" / "latent_embeddings" / "legacy" / MODEL / "morph_latents_*.csv"))):
        lat = pd.read_csv(f)
        frames.append(lat[["snip_id"] + [c for c in lat.columns if c.startswith("z_mu_")]])
    latents = pd.concat(frames, ignore_index=True).drop_duplicates()
    df03 = df02.merge(latents, on="snip_id", how="left")
    df03.to_csv(out, index=False)


def ours(base: Path) -> None:
    from morphseq_stages.cli import main

    rc = main(["build06", "--root", str(base / "root"), "--data-root", str(base / "data"), "--overwrite",
               "--log-format", "json", "--min-coverage", "0"])
    if rc:
        raise SystemExit(rc)


def child(which: str, base: Path) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the child's logs are not measured output
    # a df03 that is current is not rewritten: remove the last run's, so that each run merges and writes
    for old in (base / "root" / "metadata" / "combined_metadata_files").glob("embryo_metadata_df03*"):
        old.unlink()
    start = time.perf_counter()
    if which == "baseline":
        baseline(base, base / "baseline_df03.csv")
    else:
        ours(base)
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}))


def check_same(base: Path) -> str:
    """Ours keeps df02's text and the latent files' text; the baseline re-prints what pandas'
    fast float parser read (off by an ulp now and then), so values agree to 1e-12 and
    ours' df02 columns equal df02's text exactly."""
    import pandas as pd

    folder = base / "root" / "metadata" / "combined_metadata_files"
    a = pd.read_csv(base / "baseline_df03.csv", low_memory=False)
    b = pd.read_csv(folder / "embryo_metadata_df03.csv", low_memory=False)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=0)
    text = pd.read_csv(folder / "embryo_metadata_df02.csv", dtype=str, keep_default_na=False)
    ours = pd.read_csv(folder / "embryo_metadata_df03.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(ours[text.columns], text)
    return f"same values: {a.shape[0]} rows x {a.shape[1]} columns; df02's columns text for text"


def main() -> None:
    p = workload_args(__doc__)
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--child", choices=("baseline", "ours"))
    started = workload(p, child, lambda base, a: build(base, a.rows, a.experiments))
    if started is None:
        return
    a, base = started
    results = {}
    for which in (("ours",) if a.skip_baseline else ("baseline", "ours")):
        runs = [run_child("merge", "--child", which, "--rows", str(a.rows), "--dir", str(a.dir)) for _ in range(a.repeats)]
        results[which] = (median([r["seconds"] for r in runs]), median([r["peak_rss_mb"] for r in runs]))
    rows = [(k, f"{t:.2f}", f"{m:.0f}") for k, (t, m) in results.items()]
    print(table(rows, ("merge path", "median s", "peak RSS MB")))
    if "baseline" in results:
        (tb, mb), (to, mo) = results["baseline"], results["ours"]
        print(f"speed-up: {tb / to:.1f}x   peak memory: {mo / mb:.2f}x of the baseline")
        print(check_same(base))


if __name__ == "__main__":
    main()
