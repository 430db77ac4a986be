"""Start-up benchmark: what `--help`, `list` and a merge-only run import, and how long it takes.

    python -m benchmarks.startup

Prints, side by side, the wall time of ``morphseq-stages --help`` and ``list`` in fresh
processes, the time ``import torch`` alone takes, and whether torch was imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

from ._common import median, table

PROBE = """
import sys, time
t = time.perf_counter()
from morphseq_stages.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print({{"seconds": time.perf_counter() - t, "torch": "torch" in sys.modules}}.__repr__().replace("'", '"').replace("True", "true").replace("False", "false"), file=sys.stderr)
"""


def measure(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return json.loads(proc.stderr.strip().splitlines()[-1])


def main() -> None:
    rows = []
    for argv in (["--help"], ["list"]):
        runs = [measure(PROBE.format(argv=argv)) for _ in range(5)]
        rows.append((f"morphseq-stages {' '.join(argv)}", f"{median([r['seconds'] for r in runs]):.3f}",
                     "yes" if any(r["torch"] for r in runs) else "no"))
    torch_code = ("import sys, time\nt = time.perf_counter()\nimport torch\n"
                  "print('{\"seconds\": %f, \"torch\": true}' % (time.perf_counter() - t), file=sys.stderr)")
    runs = [measure(torch_code) for _ in range(5)]
    rows.append(("import torch (for comparison)", f"{median([r['seconds'] for r in runs]):.3f}", "yes"))
    print(table(rows, ("in a fresh process", "median s", "torch imported")))


if __name__ == "__main__":
    main()
