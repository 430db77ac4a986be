"""The analyst's side: time to load df03 as CSV (pandas default), Parquet and h5ad.

    python -m benchmarks.load                     # 200,000 rows x 150 columns
    python -m benchmarks.load --rows 50000

Builds the merge benchmark's pipeline root (df02 of 50 columns, 100 z_mu dimensions),
runs ``build06 --formats csv,parquet,h5ad`` once, then loads each file in a fresh
process (``pandas.read_csv`` with its defaults, ``pandas.read_parquet``,
``anndata.read_h5ad``) and prints the median time, peak RSS and file size side by side,
with each format's time as a ratio of the CSV's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ._common import median, peak_rss_mb, run_child, table, workload_args
from .merge import build

FORMATS = ("csv", "parquet", "h5ad")


def df03(base: Path, fmt: str) -> Path:
    return base / "root" / "metadata" / "combined_metadata_files" / f"embryo_metadata_df03.{fmt}"


def write_outputs(base: Path) -> float:
    from morphseq_stages.cli import main

    start = time.perf_counter()
    rc = main(["build06", "--root", str(base / "root"), "--data-root", str(base / "data"), "--overwrite",
               "--log-format", "json", "--log-file", str(base / "build06.log"), "--min-coverage", "0",
               "--formats", ",".join(FORMATS), "--quiet"])
    if rc:
        raise SystemExit(rc)
    return time.perf_counter() - start


def child(fmt: str, base: Path) -> None:
    import pandas as pd

    start = time.perf_counter()
    if fmt == "csv":
        shape = pd.read_csv(df03(base, fmt)).shape
    elif fmt == "parquet":
        shape = pd.read_parquet(df03(base, fmt)).shape
    else:
        import anndata

        adata = anndata.read_h5ad(df03(base, fmt))
        shape = (adata.n_obs, adata.obs.shape[1] + adata.obsm["X_morph"].shape[1])
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(), "shape": shape}))


def main() -> None:
    p = workload_args(__doc__)
    p.add_argument("--child", choices=FORMATS)
    a = p.parse_args()
    base = a.dir / f"rows{a.rows}"
    if a.child:
        return child(a.child, base)
    build(base, a.rows, a.experiments)
    print(f"data: {base}; build06 --formats {','.join(FORMATS)} took {write_outputs(base):.1f}s", file=sys.stderr)
    results = {}
    for fmt in FORMATS:
        runs = [run_child("load", "--child", fmt, "--rows", str(a.rows), "--dir", str(a.dir)) for _ in range(a.repeats)]
        results[fmt] = (median([r["seconds"] for r in runs]), median([r["peak_rss_mb"] for r in runs]), runs[0]["shape"])
    csv_s = results["csv"][0]
    rows = [(fmt, f"{r[0]:.2f}", f"{csv_s / r[0]:.1f}x", f"{r[1]:.0f}",
             f"{df03(base, fmt).stat().st_size / 2**20:.0f}", f"{r[2][0]} x {r[2][1]}") for fmt, r in results.items()]
    print(table(rows, ("df03 as", "median s", "vs csv", "peak RSS MB", "file MB", "rows x columns")))


if __name__ == "__main__":
    main()
