"""Compare two recordings step by step: exit codes, streams, files only on one side, files
whose normalised content differs (with the first lines of a unified diff)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .recording import Recording


def compare(a: Recording, b: Recording, *, ignore: Sequence[str] = (), lines: int = 12, common: bool = False,
            out: Callable[[str], None] = print) -> int:
    """Print the differences of ``b`` from ``a``; the number of differences found
    (``common``: of the scenarios both recorded, for a recording made with ``--only``)."""
    out(f"A: {a.folder} ({a.meta.get('commit')}, code {a.meta.get('code_commit')}); "
        f"B: {b.folder} ({b.meta.get('commit')}, code {b.meta.get('code_commit')})")
    if a.meta.get("packages") != b.meta.get("packages") or a.meta.get("python") != b.meta.get("python"):
        out(f"note: the recordings ran with other packages: A {a.meta.get('packages')} python {a.meta.get('python')}"
            f"; B {b.meta.get('packages')} python {b.meta.get('python')}")
    differences = ignored = steps_differing = compared = 0
    scenarios_differing: set[str] = set()
    for scenario in _union(a.steps, b.steps):
        if common and (scenario not in a.steps or scenario not in b.steps):
            continue
        if scenario not in a.steps or scenario not in b.steps:
            out(f"{scenario}: only in {'A' if scenario in a.steps else 'B'}")
            differences += 1
            scenarios_differing.add(scenario)
            continue
        seen: dict[tuple[str, str, str], str] = {}  # a difference shown in an earlier step of this scenario
        for step in _union(a.steps[scenario], b.steps[scenario]):
            where = f"{scenario}/{step}"
            if step not in a.steps[scenario] or step not in b.steps[scenario]:
                out(f"{where}: step only in {'A' if step in a.steps[scenario] else 'B'}")
                differences += 1
                steps_differing += 1
                scenarios_differing.add(scenario)
                continue
            ea, eb = a.steps[scenario][step], b.steps[scenario][step]
            compared += 1
            report: list[str] = []
            for key in sorted(set(ea) | set(eb), key=_entry_order):
                if ea.get(key) == eb.get(key):
                    continue
                if any(fnmatch.fnmatchcase(key, g) or fnmatch.fnmatchcase(f"{where}/{key}", g) for g in ignore):
                    ignored += 1
                    continue
                differences += 1
                if key not in eb:
                    report.append(f"  only in A: {key}")
                elif key not in ea:
                    report.append(f"  only in B: {key}")
                elif (key, ea[key], eb[key]) in seen:
                    report.append(f"  differs: {key} (as in {seen[key, ea[key], eb[key]]})")
                else:
                    seen[key, ea[key], eb[key]] = step
                    report.append(f"  differs: {key}")
                    report += ["    " + line for line in _diff(a, b, ea[key], eb[key], lines)]
            if report:
                steps_differing += 1
                scenarios_differing.add(scenario)
                commands = (a.commands[scenario][step], b.commands[scenario][step])
                shown = commands[0] if commands[0] == commands[1] else f"A: {commands[0]} | B: {commands[1]}"
                out(f"{where}: {shown}")
                for line in report:
                    out(line)
    scenarios = len([s for s in b.steps if s in a.steps])
    verdict = "identical" if not differences else f"{differences} difference(s) in {steps_differing} step(s) of " \
        f"{len(scenarios_differing)} scenario(s)"
    out(f"{verdict} ({scenarios} scenarios, {compared} steps compared"
        + (f", {ignored} difference(s) ignored" if ignored else "") + ")")
    return differences


def _union(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Keys of both, in A's order then B's new ones."""
    return list(a) + [k for k in b if k not in a]


def _entry_order(key: str) -> tuple[int, str]:
    return (0 if key.startswith("@") else 1, key)


def _diff(a: Recording, b: Recording, da: str, db: str, lines: int) -> list[str]:
    ta, tb = a.text(da), b.text(db)
    if ta is None or tb is None:
        return [f"(no text kept: {da[:12]} -> {db[:12]})"]
    diff = list(difflib.unified_diff(ta.splitlines(), tb.splitlines(), "A", "B", n=1, lineterm=""))[2:]
    shown = [line if len(line) <= 220 else line[:220] + " ..." for line in diff[:lines]]
    if len(diff) > lines:
        shown.append(f"... ({len(diff) - lines} more diff lines)")
    return shown
