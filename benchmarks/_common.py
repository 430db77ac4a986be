"""Shared helpers: run a workload in a child process and read its time and peak RSS."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_child(module: str, *args: str) -> dict:
    """Run ``python -m benchmarks.<module> <args>``; the child prints one JSON line last."""
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"child {module} {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(values):
    return statistics.median(values)


def table(rows: list[tuple], header: tuple) -> str:
    cells = [header, *rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells)


def workload_args(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark shares: the merge benchmark's pipeline root, and how often to run."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--experiments", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "morphseq-bench-merge")
    return p


def workload(parser: argparse.ArgumentParser, child: Callable[[str, Path], None],
             prepare: Callable[[Path, argparse.Namespace], object]) -> tuple[argparse.Namespace, Path] | None:
    """Parse the options; in a child process (``--child``), run ``child`` and return None;
    else lay out the workload with ``prepare`` (timed) and return the options and its folder."""
    a = parser.parse_args()
    base = a.dir / f"rows{a.rows}"
    if a.child:
        child(a.child, base)
        return None
    t0 = time.perf_counter()
    prepare(base, a)
    print(f"data: {base} (built in {time.perf_counter() - t0:.1f}s)")
    return a, base
