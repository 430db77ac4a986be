"""Whether an output is current: what it was built from, recorded in its sidecar, against now.

Each sidecar holds, per output file, its sha256 (with size and mtime, so that an
unchanged file is not hashed again) and ``built_from``: df02 (sha256 and, per
experiment, the row count and a digest of its rows), each latent file's sha256, the
model fingerprint and the options that change the content. Comparing that record with
the inputs as they are now says: new, current, out of date (and why), or foreign (not
written by this tool, or edited since).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from morphseq_stages.files import sha256_file

from .inputs import read_regular_text
from .parquet_store import shards
from .records import Freshness

log = structlog.get_logger()
#: the options that change what df03 and its copies hold
CONTENT_OPTIONS = ("embedder", "model_name", "z_schema", "include_sigma", "qc_filter")
#: in ``built_from`` since latent cells are checked one by one: per experiment, the latent
#: rows left out for a cell that is not one number
CELLS_CHECKED = "latent_rows_not_one_number"
#: in ``built_from``: the z columns of the output (recorded since an analysis copy of an
#: experiment without latents kept its old columns while df03 gained new ones)
Z_COLUMNS = "z_columns"


def file_state(path: Path, recorded: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """sha256, size and mtime of a file; the recorded sha256 is reused when size and mtime match."""
    if Path(path).is_dir():  # a folder of Parquet shards: their names and contents together
        files = shards(Path(path))[0]
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
        return {"sha256": h.hexdigest(), "size": sum(f.stat().st_size for f in files), "mtime_ns": None}
    st = os.stat(path)
    if recorded and recorded.get("size") == st.st_size and recorded.get("mtime_ns") == st.st_mtime_ns:
        sha = recorded.get("sha256")
    else:
        sha = None
    return {"sha256": sha or sha256_file(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def load_sidecar(path: Path) -> dict[str, Any]:
    """A sidecar's content, or {} when it is missing or unreadable (then nothing counts as recorded)."""
    try:
        data = json.loads(read_regular_text(Path(path)))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("sidecar.unreadable", path=str(path), error=str(exc))
        return {}
    return data if isinstance(data, dict) else {}


#: per experiment, the df02 rows (new, edited, removed) since an output was built
RowChanges = Callable[[Sequence[str]], Mapping[str, tuple[int, int, int]] | None]


def status(path: Path, sidecar_path: Path, recorded: Mapping[str, Any] | None,
           current: Callable[[], Mapping[str, Any]], changing: Mapping[str, str],
           row_changes: RowChanges | None = None, how: Mapping[str, str] | None = None) -> Freshness:
    """The state of output ``path`` whose sidecar entry is ``recorded``.

    ``current()`` gives ``built_from`` as the inputs are now (called only when there is a
    record to compare with); ``changing``: experiment -> what this run does to its latent
    file; ``row_changes``: counts the df02 rows changed in the given experiments (by reading
    the output, whose records are df02's when it was built), or None; ``how``: experiment ->
    how its latent file came to be as it is now (not merged, and why; written by this run),
    the words of a reason it gives.
    """
    if not path.exists():
        return Freshness(status="new")
    if not recorded or "built_from" not in recorded:
        return Freshness(status="foreign", reasons=(f"no record of it in {sidecar_path.name}",))
    now = file_state(path, recorded)
    if now["sha256"] != recorded.get("sha256"):
        return Freshness(status="foreign", reasons=("edited since this tool wrote it",))
    reasons = compare(recorded["built_from"], current(), changing, row_changes, how)
    return Freshness(status="out-of-date" if reasons else "current", reasons=tuple(reasons))


def compare(old: Mapping[str, Any], new: Mapping[str, Any], changing: Mapping[str, str],
            row_changes: RowChanges | None = None, how: Mapping[str, str] | None = None) -> list[str]:
    reasons = []
    old_opts, new_opts = old.get("options", {}), new.get("options", {})
    other_model = any(old_opts.get(k) != new_opts.get(k) for k in ("embedder", "model_name"))
    if other_model:  # another latent store: its files are not the ones df03 was built from
        was, now = _model_of(old_opts), _model_of(new_opts)
        reasons.append(f"df03 was built with model {was}; this run uses {now}")
    for key in CONTENT_OPTIONS:
        a, b = old_opts.get(key), new_opts.get(key)
        if a != b and not (other_model and key in ("embedder", "model_name")):
            reasons.append(f"--{key.replace('_', '-')} changed ({_show(a)} -> {_show(b)})")
    a, b = old.get("model_fingerprint"), new.get("model_fingerprint")
    if a and b and a != b and not other_model:
        reasons.append("the model's weights changed")
    if "df02" in new:
        reasons += _df02_reasons(old.get("df02", {}), new["df02"], row_changes)
    if not other_model:
        latent = _latent_reasons(old.get("latents", {}), new.get("latents", {}), changing, how or {})
        reasons += latent + _unchecked_cells(old, new)
        if not latent and Z_COLUMNS in old and Z_COLUMNS in new and old[Z_COLUMNS] != new[Z_COLUMNS]:
            # another experiment's latent file changed the columns every copy holds
            reasons.append(f"its z columns changed ({_columns(old[Z_COLUMNS])} -> {_columns(new[Z_COLUMNS])})")
    if "training" in new and old.get("training", {}).get("sha256") != new["training"].get("sha256"):
        reasons.append("training metadata changed")
    if "made_from" in new and (old.get("made_from") or {}).get("sha256") != new["made_from"]["sha256"]:
        reasons.append(f"not made from {new['made_from']['name']} as it is now")
    elif "made_with" in new and old.get("made_with") != new["made_with"]:
        made = old.get("made_with") or {}
        reasons.append("made with other options: " + "; ".join(
            f"{_option_name(k)} {_shown(made.get(k))} -> {_shown(v)}" for k, v in new["made_with"].items()
            if made.get(k) != v))
    return reasons


def _columns(names: Sequence[str]) -> str:
    return "none" if not names else f"{names[0]} .. {names[-1]}, {len(names)}" if len(names) > 1 else names[0]


def _show(v: Any) -> str:
    return {True: "on", False: "off", None: "none"}.get(v, str(v)) if isinstance(v, bool | None) else str(v)


def _model_of(options: Mapping[str, Any]) -> str:
    embedder = options.get("embedder")
    return f"{options.get('model_name')!r}" + (f" (embedder {embedder!r})" if embedder not in (None, "legacy") else "")


def _rows(n: int, what: str) -> str:
    return f"{n} {what}".replace("row", "rows") if n != 1 else f"{n} {what}"


def _df02_reasons(old: Mapping[str, Any], new: Mapping[str, Any], row_changes: RowChanges | None) -> list[str]:
    if old.get("sha256") == new.get("sha256"):
        return []
    a, b = old.get("experiments", {}), new.get("experiments", {})
    differ = [e for e in dict.fromkeys([*a, *b]) if a.get(e) != b.get(e)]
    counted = row_changes(differ) if row_changes is not None and differ else None
    changes = []
    for exp in differ:
        n_old, n_new = (a[exp][0] if exp in a else 0), (b[exp][0] if exp in b else 0)
        if counted is not None and exp in counted:
            added, edited, removed = counted[exp]
            parts = [_rows(added, "new row")] if added else []
            parts += [_rows(edited, "row edited")] if edited else []
            if removed:
                parts.append(f"{removed} removed" if parts else _rows(removed, "row removed"))
            changes.append(f"{', '.join(parts)} in {exp}" if parts else f"rows of {exp} reordered")
        elif n_new > n_old:
            changes.append(f"{n_new - n_old} new row{'s' * (n_new - n_old != 1)} in {exp}")
        elif n_new < n_old:
            changes.append(f"{n_old - n_new} row{'s' * (n_old - n_new != 1)} of {exp} removed")
        elif a[exp][1] != b[exp][1]:
            changes.append(f"rows of {exp} edited")
    return [f"df02 changed: {'; '.join(changes)}" if changes else "df02 changed"]


def _latent_reasons(old: Mapping[str, Any], new: Mapping[str, Any], changing: Mapping[str, str],
                    how: Mapping[str, str]) -> list[str]:
    out = []
    for exp in dict.fromkeys([*old, *new, *changing]):
        if exp in changing:
            what = f"{changing[exp]} by this run"
        elif exp in old and exp in new and old[exp].get("sha256") == new[exp].get("sha256"):
            continue
        else:
            what = how.get(exp) or ("added" if exp not in old else "removed" if exp not in new else "changed")
        out.append(f"latent file for {exp} {what}")
    return out


def _unchecked_cells(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """An output built before latent cells were checked one by one holds the text of the
    cells that are not one number (a quoted ``"0,5"`` is two cells there): out of date
    when its latent files hold such cells, although they have not changed since."""
    odd = new.get(CELLS_CHECKED) or {}
    if CELLS_CHECKED in old or not odd:
        return []
    return [f"built by an earlier version that copied latent cells that are not one number into it "
            f"({', '.join(f'{n} row(s) of {e}' for e, n in odd.items())})"]


def made_from(table: Path, made_with: Mapping[str, Any] | None = None,
              recorded: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a typed copy (or the report) is built from: ``table`` as it is now (its recorded
    sha256 reused while its size and mtime are unchanged), and ``made_with``, what else its
    content depends on (the report's options)."""
    state = file_state(table, recorded) if table.is_file() else {"sha256": None, "size": None, "mtime_ns": None}
    return {"made_from": {"name": table.name, **state}, **({"made_with": dict(made_with)} if made_with else {})}


def _option_name(key: str) -> str:
    return "layout version" if key.endswith("layout") else "--" + key.replace("_", "-")


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "(none)"
    return "(none)" if value is None else str(value)
