"""``python -m tests.corpus record OUT_DIR`` | ``compare A_DIR B_DIR [--ignore GLOB]`` | ``list``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.corpus",
                                     description="record Build06's behaviour on a corpus of scenarios; compare two "
                                                 "recordings")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run every scenario and write the recording to OUT_DIR (a new folder)")
    rec.add_argument("out", type=Path, metavar="OUT_DIR")
    rec.add_argument("--only", nargs="+", metavar="SCENARIO", help="only these scenarios")
    cmp = sub.add_parser("compare", help="print the differences of B from A; exit 0 when identical, 1 otherwise")
    cmp.add_argument("a", type=Path, metavar="A_DIR")
    cmp.add_argument("b", type=Path, metavar="B_DIR")
    cmp.add_argument("--ignore", action="append", default=[], metavar="GLOB",
                     help="leave out entries matching GLOB (a file's path such as '*typed_copies.json', '@stderr', "
                          "or 'SCENARIO/STEP/PATH'); repeatable")
    cmp.add_argument("--common", action="store_true",
                     help="only the scenarios both recorded (B recorded with --only)")
    cmp.add_argument("--lines", type=int, default=12, help="diff lines shown per differing file (default: 12)")
    sub.add_parser("list", help="name the scenarios")
    args = parser.parse_args(argv)

    from .catalogue import SCENARIOS, chosen

    if args.command == "list":
        for scenario in SCENARIOS:
            print(f"{scenario.name:34} {scenario.about}")
        return 0
    if args.command == "record":
        from .recording import record

        meta = record(args.out, chosen(args.only), log=lambda line: print(line, file=sys.stderr))
        print(f"recorded {args.out} from {meta['commit']} (code of {meta['code_commit']}) in {meta['seconds']} s")
        return 0
    from .compare import compare
    from .recording import Recording

    return 1 if compare(Recording.read(args.a), Recording.read(args.b), ignore=args.ignore, lines=args.lines,
                        common=args.common) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # compare ... | head
        sys.stderr.close()
        sys.exit(1)
