"""The latent store's ``manifest.json``: which model wrote each latent file, and when.

``unreadable`` lists, per experiment, the snip images the embedder could not decode
(with their size and mtime when it tried): later runs do not try them again until the
image changes, so that a corrupt snip does not make every run re-plan its experiment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from morphseq_stages.files import atomic_write_json, sha256_file, staged_path, utc_now

from .inputs import read_regular_text

log = structlog.get_logger()
MANIFEST_NAME = "manifest.json"
FORMAT = 1


def load(path: Path) -> dict[str, Any]:
    data, error = read(path)
    if error:
        log.warning("manifest.unreadable", path=str(path), error=error)
    return data


def read(path: Path) -> tuple[dict[str, Any], str | None]:
    """The manifest (empty when there is none or it cannot be used), and why it cannot be used."""
    empty = {"format": FORMAT, "files": {}}
    try:
        data = json.loads(read_regular_text(path))
    except FileNotFoundError:
        return empty, None
    except (OSError, ValueError) as exc:
        return empty, str(exc)
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return empty, "not a manifest object"
    return data, None


def unreadable(data: Mapping[str, Any], experiment: str) -> dict[str, dict[str, Any]]:
    """``{image file name: {"size", "mtime_ns", "error"}}`` recorded for ``experiment``."""
    found = data.get("unreadable", {})
    entries = found.get(experiment, {}) if isinstance(found, dict) else {}
    return dict(entries) if isinstance(entries, dict) else {}


def still_unreadable(image: Path, entry: Mapping[str, Any] | None) -> bool:
    """Whether ``image`` is the very file recorded as unreadable (same size and mtime)."""
    if not isinstance(entry, Mapping):
        return False
    try:
        st = image.stat()
    except OSError:
        return False
    return entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns


def _set_unreadable(data: dict[str, Any], experiment: str, entries: Mapping[str, Any]) -> None:
    found = data["unreadable"] if isinstance(data.get("unreadable"), dict) else {}
    found = {k: v for k, v in found.items() if k != experiment}
    if entries:
        found[experiment] = dict(sorted(entries.items()))
    data.pop("unreadable", None)
    if found:
        data["unreadable"] = dict(sorted(found.items()))


def record_unreadable(manifest_path: Path, experiment: str, entries: Mapping[str, Any]) -> bool:
    """Replace ``experiment``'s unreadable images; write the manifest only if they changed."""
    data = load(manifest_path)
    if unreadable(data, experiment) == dict(entries):
        return False
    data["format"] = FORMAT
    _set_unreadable(data, experiment, entries)
    atomic_write_json(manifest_path, data)
    log.info("write.staged", path=str(manifest_path), what="manifest", unreadable_images=len(entries))
    return True


def record(manifest_path: Path, latent_path: Path, *, rows: int, fingerprint: str | None,
           model_name: str, embedder: str, backend: Mapping[str, Any] | None = None,
           experiment: str | None = None, unreadable_images: Mapping[str, Any] | None = None) -> None:
    """Add or replace the entry of one latent file, and its experiment's unreadable images
    (call while holding the store lock)."""
    data = load(manifest_path)
    data["format"] = FORMAT
    if experiment is not None:
        _set_unreadable(data, experiment, unreadable_images or {})
    data["files"][latent_path.name] = {
        "rows": rows,
        "sha256": sha256_file(staged_path(latent_path)),
        "model_fingerprint": fingerprint,
        "model_name": model_name,
        "embedder": embedder,
        **(backend or {}),
        "written_at": utc_now(),
    }
    atomic_write_json(manifest_path, data)
    log.info("write.staged", path=str(manifest_path), what="manifest")
