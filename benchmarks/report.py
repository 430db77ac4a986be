"""Report benchmark: the time ``--report`` adds to a Build06 run on a large df03, thumbnails included.

    python -m benchmarks.report                   # 200,000 rows, 40 experiments, 100-dim z_mu
    python -m benchmarks.report --rows 20000

Builds the merge benchmark's pipeline root (``benchmarks.merge``: df02 like the lab's,
latent files with 100 mu + 100 sigma columns) and gives every row a snip JPEG (hard links
to a pool of distinct synthetic snips, so every drawn point has a real image to decode).
After one run that writes df03, it times, each in a fresh process: a run without
``--report`` (df03 is current: nothing is written) and one with ``--report
--report-color-by`` a numeric and a text column (only the report is written). The
difference is the report's cost: statistics, projection, thumbnails and the page; its CPU
time is printed too (on a machine others load, the wall time says more about them).
Target: under 30 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ._common import median, peak_rss_mb, run_child, table, workload, workload_args
from .merge import MODEL, build

REPORT = "embryo_metadata_df03_report.html"
POOL = 64  # distinct snip images behind the hard links


def add_snips(base: Path) -> None:
    """A snip JPEG for every df02 row, as hard links into a pool of distinct images."""
    import pyarrow.csv as pacsv

    from morphseq_build06.testing import snip_image

    marker = base / ".snips"
    if marker.exists():
        return
    pool_dir = base / "snip_pool"
    pool_dir.mkdir(exist_ok=True)
    pool = []
    for i in range(POOL):
        p = pool_dir / f"{i}.jpg"
        snip_image(i).save(p, quality=90)
        pool.append(p)
    df02 = pacsv.read_csv(base / "root" / "metadata" / "combined_metadata_files" / "embryo_metadata_df02.csv",
                          convert_options=pacsv.ConvertOptions(include_columns=["snip_id", "experiment_date"],
                                                               column_types={"experiment_date": "string"}))
    snips = base / "root" / "training_data" / "bf_embryo_snips"
    for k, (snip, exp) in enumerate(zip(df02["snip_id"].to_pylist(), df02["experiment_date"].to_pylist(), strict=True)):
        folder = snips / exp
        if k == 0 or not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
        os.link(pool[k % POOL], folder / f"{snip}.jpg")
    marker.write_text("")


def child(which: str, base: Path) -> None:
    import logging

    from morphseq_stages.cli import main

    logging.disable(logging.CRITICAL)
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the child's logs are not measured output
    (base / "root" / "metadata" / "combined_metadata_files" / REPORT).unlink(missing_ok=True)
    args = ["build06", "--root", str(base / "root"), "--data-root", str(base / "data"), "--model-name", MODEL,
            "--log-format", "json", "--min-coverage", "0"]
    if which == "report":
        args += ["--report-color-by", "f0,s4"]
    if which == "df03":
        args += ["--overwrite"]
    start, cpu = time.perf_counter(), time.process_time()
    rc = main(args)
    if rc:
        raise SystemExit(rc)
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                      "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    p = workload_args(__doc__)
    p.add_argument("--child", choices=("df03", "plain", "report"))
    def prepare(base: Path, a: argparse.Namespace) -> None:
        build(base, a.rows, a.experiments)
        add_snips(base)

    started = workload(p, child, prepare)
    if started is None:
        return
    a, base = started
    run_child("report", "--child", "df03", "--rows", str(a.rows), "--dir", str(a.dir))
    results = {}
    for which in ("plain", "report"):
        runs = [run_child("report", "--child", which, "--rows", str(a.rows), "--dir", str(a.dir))
                for _ in range(a.repeats)]
        results[which] = tuple(median([r[k] for r in runs]) for k in ("seconds", "cpu_seconds", "peak_rss_mb"))
    rows = [(k, f"{t:.2f}", f"{c:.2f}", f"{m:.0f}") for k, (t, c, m) in results.items()]
    print(table(rows, ("build06 run (df03 current)", "median s", "CPU s", "peak RSS MB")))
    page = base / "root" / "metadata" / "combined_metadata_files" / REPORT
    load = os.getloadavg()[0]
    print(f"the report adds {results['report'][0] - results['plain'][0]:.2f} s "
          f"({results['report'][1] - results['plain'][1]:.2f} s of CPU) on {a.rows:,} rows "
          f"(target: under 30 s); page {page.stat().st_size / 1e6:.1f} MB; load average {load:.1f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
