"""The long profile of the model-based test: ``python -m tests.model --examples 2000 --seed 1``.

Prints the examples, steps, Build06 runs, distinct option pairs covered and, for a
failure, the shrunk sequence of steps (each such sequence becomes a plain regression
test in ``tests/model/test_regressions.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.model", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="sequences to try (default: 200)")
    parser.add_argument("--steps", type=int, default=12, help="most steps in one sequence (default: 12)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default: 0)")
    parser.add_argument("--no-shrink", action="store_true", help="report each failure as found")
    parser.add_argument("--minutes", type=float, default=None,
                        help="go on with the next seeds, --examples at a time, until this much time has passed")
    args = parser.parse_args(argv)
    os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="morphseq-model-cache-"))
    os.environ.pop("MORPHSEQ_DATA_ROOT", None)

    from .machine import STATS
    from .pairwise import all_pairs

    STATS.verbose = True
    start = time.monotonic()
    failures: list[str] = []
    seed = args.seed
    while True:
        if (failure := _one_seed(seed, args)) is not None:
            failures.append(failure)
        seed += 1
        if args.minutes is None or time.monotonic() - start > 60 * args.minutes:
            break
    covered = len(STATS.pairs & all_pairs())
    print(f"seeds {args.seed}-{seed - 1}: {STATS.examples} examples, {STATS.steps} steps, {STATS.runs} Build06 runs "
          f"(exits {dict(sorted(STATS.exits.items()))}), {covered} of {len(all_pairs())} option-value pairs "
          f"covered, {len(failures)} failure(s), {time.monotonic() - start:.0f} s")
    for message, n in sorted(STATS.errors.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {n:5} runs stopped with: {message}")
    for failure in failures:
        print(failure, file=sys.stderr)
    if not failures:
        print("no invariant failed")
    return 1 if failures else 0


def _one_seed(seed: int, args: argparse.Namespace) -> str | None:
    """Run ``args.examples`` sequences from ``seed``; the failure and its shrunk steps, if any."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import seed as hyp_seed
    from hypothesis.stateful import run_state_machine_as_test

    from .machine import STATS, OperatorLoop

    phases = [Phase.generate] if args.no_shrink else [Phase.generate, Phase.shrink]
    try:
        run_state_machine_as_test(hyp_seed(seed)(OperatorLoop), settings=settings(
            max_examples=args.examples, stateful_step_count=args.steps, deadline=None, phases=phases,
            database=None, suppress_health_check=list(HealthCheck), print_blob=False))
    except Exception as exc:
        steps = "\n".join(f"  {t}" for t in STATS.trace)
        return f"FAILED (seed {seed}): {type(exc).__name__}: {exc}\nthe shrunk sequence:\n{steps}"
    return None


if __name__ == "__main__":
    sys.exit(main())
