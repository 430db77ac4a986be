"""Kill Build06 with SIGKILL at random points: every output must stay old or new, each
output set must hang together, and the next run must recover and complete.

    python -m tests.reliability.crash --kills 200                      # generation + analysis copies, overwriting
    python -m tests.reliability.crash --kills 10 --merge-only --fork   # the fast variant the test suite runs
    python -m tests.reliability.crash --kills 100 --variant every-output --fork
                  # + the training join, --formats csv,parquet,h5ad and --report
    python -m tests.reliability.crash --kills 100 --variant generate-only --fork
                  # --generate-only --latent-format parquet jobs topping up the store

``--fork`` forks this interpreter for each run instead of starting a new one (no start-up
time, so more of each run is spent where it writes).

The old state is a completed run; the new run (``--overwrite``) has more df02 rows, so
every output it writes differs. Kills fall between the end of the plan and the end of
an undisturbed run. After every ``--chain`` kills (default 1) a run is let finish, the
state is checked to equal the new one, and the old state is restored; with ``--chain``
above 1 the kills between are chained (a run killed after a killed run starts from
whatever that one left, so it has less to do and is often done before its kill).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs

from . import scenario

DATA_SUFFIXES = (".csv", ".parquet", ".h5ad")
#: files whose bytes differ from run to run (they hold the run's provenance: its id, its
#: time): one that is not the old file is the new one if it is whole (see ``_whole``)
VOLATILE_SUFFIXES = (".json", ".parquet", ".h5ad", ".html")
#: the records that name files of their folder with their sha256 (checked against them)
RECORDS = ("embryo_metadata_df03.json", "df03_copies.json", "embryo_metadata_with_embeddings.json",
           "manifest.json")
RUN_LIMIT_S = 300
TRAIN = "t1"
VARIANTS = {
    "copies": ["--export-analysis-copies"],
    "every-output": ["--export-analysis-copies", "--train-name", TRAIN, "--formats", "csv,parquet,h5ad", "--report"],
    "generate-only": ["--generate-only", "--latent-format", "parquet"],
}


@attrs.define
class Tally:
    kills: int = 0
    mid_run: int = 0  # kills that found the run still running
    changed: int = 0  # kills after which some output differed from the old state
    with_temp: int = 0  # kills that left temporary files
    mid_commit: int = 0  # kills that left a commit journal (a set half renamed)
    files_checked: int = 0
    reruns: int = 0
    recovered_locks: int = 0
    failures: list[str] = attrs.Factory(list)


def _state(work: Path) -> dict[str, str]:
    return scenario.digest(work)


def _journals(state: dict[str, str]) -> set[str]:
    return {str(Path(k).parent) for k in state if Path(k).name == scenario.JOURNAL}


def check_killed(work: Path, old: dict[str, str], new: dict[str, str], tally: Tally) -> None:
    """Each output old or new; sets consistent where no journal says a commit was under way."""
    state = _state(work)
    journals = _journals(state)
    outputs = (set(old) | set(new)) - {k for k in old if old.get(k) == new.get(k)}
    for key in sorted(set(state) | outputs):
        name = Path(key).name
        if name.endswith((".tmp", ".lock")) or name == scenario.JOURNAL:
            continue
        tally.files_checked += 1
        now = state.get(key)
        if key.endswith(VOLATILE_SUFFIXES) and now != old.get(key) and now != new.get(key):
            if now is not None and not _whole(work / key):
                tally.failures.append(f"{key}: half-written")
            continue
        if now not in (old.get(key), new.get(key)):
            tally.failures.append(f"{key}: neither the old nor the new bytes")
    for folder, members in _sets(outputs).items():
        if folder in journals:
            continue  # a commit was under way: the next run completes it (checked after the rerun)
        # a sidecar is new when it is not the old one (its timings differ from run to run)
        states = [("old" if state.get(k) == old.get(k) else "")
                  + ("new" if state.get(k) == new.get(k) or (k.endswith(VOLATILE_SUFFIXES) and state.get(k) != old.get(k))
                     else "")
                  for k in members]
        if not all("old" in s for s in states) and not all("new" in s for s in states):
            tally.failures.append(f"{folder}: a set of outputs from different runs ({', '.join(sorted(members))})")
    _check_records(work, state, journals, tally)
    tally.changed += any(state.get(k) != old.get(k) for k in outputs)
    tally.with_temp += any(Path(k).name.endswith(".tmp") for k in state)
    tally.mid_commit += bool(journals)


def _sets(outputs: set[str]) -> dict[str, list[str]]:
    """The outputs that change together: df03 with its unembedded list, sidecar, typed
    copies and report; the analysis copies; the training join with its sidecar and typed copies."""
    sets: dict[str, list[str]] = {}
    for key in outputs:
        name = Path(key).name
        if name.startswith(("embryo_metadata_df03", "df03_", "embryo_metadata_with_embeddings")):
            sets.setdefault(str(Path(key).parent), []).append(key)
    return sets


def _whole(path: Path) -> bool:
    """Whether a file whose bytes vary from run to run is complete (a JSON document, a
    Parquet or HDF5 file that opens, a page that ends)."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_metadata(path)
        elif path.suffix == ".h5ad":
            import h5py

            with h5py.File(path, "r"):
                pass
        elif path.suffix == ".html":
            return path.read_bytes().rstrip().endswith(b"</html>")
    except (ValueError, OSError, ImportError):
        return False
    return True


def _check_records(work: Path, state: dict[str, str], journals: set[str], tally: Tally) -> None:
    """Each record (sidecar, manifest) names files that are there with
    the sha256 it gives, and each typed copy's CSV is the one it was made from; a folder
    whose commit is under way (a journal) is checked after the rerun instead."""
    for key in (k for k in state if Path(k).name in RECORDS):
        folder = str(Path(key).parent)
        if folder in journals:
            continue
        try:
            files = json.loads((work / key).read_text())["files"]
        except (ValueError, KeyError):
            tally.failures.append(f"{key}: not a record of files")
            continue
        for name, entry in files.items():
            member = f"{folder}/{name}"
            tally.files_checked += 1
            if member not in state:
                tally.failures.append(f"{key} names {name}, which is not there")
            elif entry.get("sha256") != state[member]:
                tally.failures.append(f"{key}: its sha256 of {name} is not the file's")
            made_from = (entry.get("built_from") or {}).get("made_from")
            # a typed copy is made from the CSV of its name; the report names the CSV it describes (df03)
            source = made_from.get("name") if isinstance(made_from, dict) else None
            csv = f"{folder}/{source or Path(name).with_suffix('.csv')}"
            if isinstance(made_from, dict) and made_from.get("sha256") != state.get(csv):
                tally.failures.append(f"{key}: {name} was not made from the {Path(csv).name} beside it")


def check_complete(work: Path, new: dict[str, str], proc: subprocess.CompletedProcess, tally: Tally) -> None:
    state = _state(work)
    if proc.returncode != 0:
        tally.failures.append(f"rerun exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
        return
    tally.recovered_locks += '"lock.recovered"' in proc.stderr
    for key, sha in new.items():
        if key.endswith(VOLATILE_SUFFIXES):
            if key not in state or not _whole(work / key):
                tally.failures.append(f"after the rerun {key} is missing or not whole")
        elif key.endswith(DATA_SUFFIXES) and state.get(key) != sha:
            tally.failures.append(f"after the rerun {key} is not the new file")
    stray = scenario.leftovers(work)
    if stray:
        tally.failures.append(f"after the rerun, left behind: {stray}")
    _check_records(work, state, set(), tally)


class _Run:
    """A Build06 run in a process of its own: a fresh interpreter, or (``fork``) a fork
    of this one, which skips the interpreter's start-up (the fast variant)."""

    live: set[int] = set()  # started and not yet waited for (see kill_survivors)

    def __init__(self, argv: list[str], *, fork: bool, stderr: int | None = None):
        err = stderr if stderr is not None else os.open(os.devnull, os.O_WRONLY)
        if fork:
            self.pid = os.fork()
            if self.pid == 0:  # the child: run, and leave without any of the parent's clean-up
                code = 70
                try:
                    # a fork of a threaded parent can deadlock; a run never takes this long
                    signal.signal(signal.SIGALRM, signal.SIG_DFL)
                    signal.alarm(RUN_LIMIT_S)
                    os.dup2(err, 2)
                    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
                    # the parent's sys.stderr may be a capture (pytest's): write to fd 2 itself
                    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
                    from morphseq_stages.cli import main

                    code = main(argv)
                finally:
                    sys.stderr.flush()
                    os._exit(code)
            self._proc = None
        else:
            self._proc = subprocess.Popen([sys.executable, "-m", "morphseq_stages", *argv],
                                          stdout=subprocess.DEVNULL, stderr=err)
            self.pid = self._proc.pid
        _Run.live.add(self.pid)
        if stderr is None:
            os.close(err)

    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()  # a no-op once poll() has reaped it
        else:
            os.kill(self.pid, signal.SIGKILL)  # a zombie until waited for (running() uses WNOWAIT)

    def wait(self) -> int:
        if self._proc is not None:
            code = self._proc.wait(timeout=RUN_LIMIT_S)
        else:
            code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        _Run.live.discard(self.pid)
        return code


def kill_survivors() -> None:
    """SIGKILL and reap every run still alive (a failed test must not leave one holding its
    pipes: CI waits for them)."""
    for pid in list(_Run.live):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        _Run.live.discard(pid)


def _timed_run(argv: list[str], fork: bool) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run to completion; (seconds to the plan's end, seconds in all, the result)."""
    read, write = os.pipe()
    start = time.monotonic()
    run = _Run(argv, fork=fork, stderr=write)
    os.close(write)
    planned, lines = None, []
    with os.fdopen(read) as fh:
        for line in fh:
            lines.append(line)
            if planned is None and '"plan.summary"' in line:
                planned = time.monotonic() - start
    code = run.wait()
    total = time.monotonic() - start
    return planned or 0.0, total, subprocess.CompletedProcess(argv, code, "", "".join(lines))


def _kill_at(argv: list[str], delay: float, fork: bool) -> bool:
    """Start a run and SIGKILL it after ``delay`` seconds; whether it was still running."""
    run = _Run(argv, fork=fork)
    time.sleep(delay)
    running = run.running()
    run.kill()
    run.wait()
    return running


def _training_metadata(synth) -> None:
    """The training set: every other df02 row (rewritten after ``add_rows``: the join changes too)."""
    lines = synth.df02.read_text().splitlines(keepends=True)
    train = synth.root / "training_data" / TRAIN / "embryo_metadata_df_train.csv"
    train.parent.mkdir(parents=True, exist_ok=True)
    train.write_text("".join([lines[0], *lines[1::2]]))


def prepare(base: Path, merge_only: bool, variant: str = "copies") -> tuple[Path, list[str]]:
    """The old state under ``base/old`` and the overwriting run's arguments (for ``base/work``)."""
    old = base / "old"
    if variant == "generate-only" and merge_only:
        raise SystemExit("--variant generate-only generates: it cannot be --merge-only")
    synth = scenario.merge_root(old) if merge_only else scenario.model_root(old)
    flags = VARIANTS[variant] + ([] if merge_only else ["--generate-missing-latents", "--workers", "1"])
    if "--train-name" in flags:
        _training_metadata(synth)
    first = scenario.run_cli(scenario.args(synth, *flags))
    if first.returncode != 0:
        raise SystemExit(f"the first run failed: {first.stderr}")
    scenario.add_rows(synth, latents=merge_only, images=not merge_only)
    if "--train-name" in flags:
        _training_metadata(synth)
    work = base / "work"
    overwrite = [] if variant == "generate-only" else ["--overwrite"]  # a job tops its latent files up
    argv = [a.replace(str(old), str(work)) for a in scenario.args(synth, *flags, *overwrite)]
    return old, argv


def crash_test(kills: int, *, merge_only: bool, chain: int = 5, seed: int = 0, fork: bool = False,
               base: Path | None = None, variant: str = "copies") -> Tally:
    rng = random.Random(seed)
    if fork:  # what every run imports, imported once here, before the forks
        from morphseq_build06 import export, merge, plan, settled  # noqa: F401
        from morphseq_stages.cli import main  # noqa: F401
        if variant == "every-output":
            import anndata  # noqa: F401
            import plotly.graph_objects  # noqa: F401

            from morphseq_build06 import export_typed, typed_files  # noqa: F401
        if not merge_only:
            import torch  # noqa: F401

            from morphseq_build06 import generate  # noqa: F401
            from morphseq_legacy import embedder  # noqa: F401
    with tempfile.TemporaryDirectory(prefix="morphseq-crash-", dir=base) as tmp:
        old_dir, argv = prepare(Path(tmp), merge_only, variant)
        work = Path(tmp) / "work"
        shutil.copytree(old_dir, work)
        old = _state(work)
        ref = _timed_run(argv, fork)[2]
        if ref.returncode != 0:
            raise SystemExit(f"the reference run failed: {ref.stderr}")
        new = _state(work)
        shutil.rmtree(work)
        shutil.copytree(old_dir, work)
        planned, total, _ = _timed_run(argv, fork)  # timed again, warm, like the runs to kill
        tally = Tally()
        for n in range(kills):
            if n % chain == 0:
                shutil.rmtree(work)
                shutil.copytree(old_dir, work)
            tally.mid_run += _kill_at(argv, rng.uniform(0.9 * planned, total), fork)
            tally.kills += 1
            check_killed(work, old, new, tally)
            if n % chain == chain - 1 or n == kills - 1:
                tally.reruns += 1
                check_complete(work, new, _timed_run(argv, fork)[2], tally)
        return tally


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=200)
    p.add_argument("--merge-only", action="store_true", help="merge-only runs (no generation)")
    p.add_argument("--chain", type=int, default=1,
                   help="kills between two completed reruns (above 1, the later kills of a chain often find the "
                        "run already done: it starts from what the killed one left)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fork", action="store_true", help="fork this interpreter for each run instead of starting one")
    p.add_argument("--variant", choices=sorted(VARIANTS), default="copies",
                   help="what the runs write: df03 + analysis copies (copies); + the training join, "
                        "--formats csv,parquet,h5ad and --report (every-output); --generate-only "
                        "--latent-format parquet jobs (generate-only)")
    a = p.parse_args()
    start = time.monotonic()
    t = crash_test(a.kills, merge_only=a.merge_only, chain=a.chain, seed=a.seed, fork=a.fork, variant=a.variant)
    what = " ".join(VARIANTS[a.variant]) + (" (merge-only)" if a.merge_only else " (generating)")
    print(f"{t.kills} SIGKILLs ({what}), {time.monotonic() - start:.0f} s")
    print(f"  killed while running: {t.mid_run}")
    print(f"  outputs changed when killed: {t.changed}; temporary files left: {t.with_temp}; "
          f"killed mid-commit (journal left): {t.mid_commit}")
    print(f"  output files checked: {t.files_checked}; reruns: {t.reruns}, "
          f"each complete and clean ({t.recovered_locks} logged lock.recovered)")
    print(f"  failures: {len(t.failures)}")
    for f in t.failures[:20]:
        print(f"    {f}")
    raise SystemExit(1 if t.failures else 0)


if __name__ == "__main__":
    main()
