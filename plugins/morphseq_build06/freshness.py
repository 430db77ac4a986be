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
from typing import Any, Literal

import attrs
import numpy as np
import pyarrow as pa
import structlog

from morphseq_stages.files import sha256_file

from .csvtext import TextTable, value_bytes
from .inputs import read_regular_text
from .parquet_store import shards

log = structlog.get_logger()
Status = Literal["new", "current", "out-of-date", "foreign"]
#: the options that change what df03 and its copies hold
CONTENT_OPTIONS = ("embedder", "model_name", "z_schema", "include_sigma", "qc_filter")
#: in ``built_from`` since latent cells are checked one by one: per experiment, the latent
#: rows left out for a cell that is not one number
CELLS_CHECKED = "latent_rows_not_one_number"


@attrs.frozen(kw_only=True)
class Freshness:
    status: Status
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        text = {"new": "not there yet", "current": "current", "out-of-date": "out of date",
                "foreign": "not written by this tool or edited since"}[self.status]
        return text + (f": {'; '.join(self.reasons)}" if self.reasons else "")


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


def df02_parts(table: TextTable, codes: np.ndarray, experiments: Sequence[str]) -> dict[str, list]:
    """Per experiment: [row count, sha256 of the header and its records].

    ``codes``: each row's index in ``experiments`` (-1: none). The records are grouped
    by experiment once (a stable sort), then each group is hashed as one run of bytes.
    """
    order = np.argsort(codes, kind="stable")
    grouped = bool((order == np.arange(len(order))).all())  # df02 is usually in experiment order: no copy then
    offsets, data = value_bytes(table.records if grouped else table.records.take(pa.array(order, pa.int64())))
    ends = np.searchsorted(codes[order], np.arange(len(experiments) + 1), side="left")
    out: dict[str, list] = {}
    for k, exp in enumerate(experiments):
        a, b = ends[k], ends[k + 1]
        h = hashlib.sha256(table.header)
        h.update((offsets[a:b + 1] - offsets[a]).tobytes())
        h.update(data[offsets[a]:offsets[b]])
        out[exp] = [int(b - a), h.hexdigest()]
    return out


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
           row_changes: RowChanges | None = None) -> Freshness:
    """The state of output ``path`` whose sidecar entry is ``recorded``.

    ``current()`` gives ``built_from`` as the inputs are now (called only when there is a
    record to compare with); ``changing``: experiment -> what this run does to its latent
    file; ``row_changes``: counts the df02 rows changed in the given experiments (by reading
    the output, whose records are df02's when it was built), or None.
    """
    if not path.exists():
        return Freshness(status="new")
    if not recorded or "built_from" not in recorded:
        return Freshness(status="foreign", reasons=(f"no record of it in {sidecar_path.name}",))
    now = file_state(path, recorded)
    if now["sha256"] != recorded.get("sha256"):
        return Freshness(status="foreign", reasons=("edited since this tool wrote it",))
    reasons = compare(recorded["built_from"], current(), changing, row_changes)
    return Freshness(status="out-of-date" if reasons else "current", reasons=tuple(reasons))


def compare(old: Mapping[str, Any], new: Mapping[str, Any], changing: Mapping[str, str],
            row_changes: RowChanges | None = None) -> list[str]:
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
        reasons += _latent_reasons(old.get("latents", {}), new.get("latents", {}), changing)
        reasons += _unchecked_cells(old, new)
    if "training" in new and old.get("training", {}).get("sha256") != new["training"].get("sha256"):
        reasons.append("training metadata changed")
    return reasons


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


def _latent_reasons(old: Mapping[str, Any], new: Mapping[str, Any], changing: Mapping[str, str]) -> list[str]:
    out = []
    for exp in dict.fromkeys([*old, *new, *changing]):
        if exp in changing:
            out.append(f"latent file for {exp} {changing[exp]} by this run")
        elif exp not in old:
            out.append(f"latent file for {exp} added")
        elif exp not in new:
            out.append(f"latent file for {exp} removed")
        elif old[exp].get("sha256") != new[exp].get("sha256"):
            out.append(f"latent file for {exp} changed")
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


def content_options(opts: Any, model_name: str) -> dict[str, Any]:
    """The options that change an output's content; ``model_name`` as the embedder resolved
    it (``--model-name`` may be unset, or stand beside a ``--model-dir`` that names the model)."""
    return {**{k: getattr(opts, k) for k in CONTENT_OPTIONS}, "model_name": model_name}


def built_from(*, df02: Mapping[str, Any], parts: Mapping[str, list], latents: Mapping[str, Mapping[str, Any]],
               fingerprint: str | None, options: Mapping[str, Any], only: str | None = None,
               training: Mapping[str, Any] | None = None, odd_rows: Mapping[str, int] | None = None
               ) -> dict[str, Any]:
    """What an output is built from; ``only``: the one experiment of an analysis copy;
    ``odd_rows``: per experiment, its latent rows holding a cell that is not one number."""
    odd = {e: int(n) for e, n in (odd_rows or {}).items() if n}
    if only is not None:
        parts = {only: parts[only]} if only in parts else {}
        df02 = {"sha256": parts[only][1] if only in parts else ""}
        latents = {only: latents[only]} if only in latents else {}
        odd = {only: odd[only]} if only in odd else {}
    record: dict[str, Any] = {
        "df02": {**df02, "experiments": dict(parts)},
        "latents": {e: dict(s) for e, s in latents.items()},
        "model_fingerprint": fingerprint,
        "options": dict(options),
        CELLS_CHECKED: odd,
    }
    if training is not None:  # a training join is built from its own metadata, not from df02
        record["training"] = dict(training)
        del record["df02"]
    return record
