"""The latent store's ``manifest.json``: which model wrote each latent file, and when."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from morphseq_stages.files import atomic_write_json, sha256_file, staged_path, utc_now

log = structlog.get_logger()
MANIFEST_NAME = "manifest.json"
FORMAT = 1


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"format": FORMAT, "files": {}}
    except (OSError, ValueError) as exc:
        log.warning("manifest.unreadable", path=str(path), error=str(exc))
        return {"format": FORMAT, "files": {}}
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        log.warning("manifest.unreadable", path=str(path), error="not a manifest object")
        return {"format": FORMAT, "files": {}}
    return data


def record(manifest_path: Path, latent_path: Path, *, rows: int, fingerprint: str | None,
           model_name: str, embedder: str, backend: Mapping[str, Any] | None = None) -> None:
    """Add or replace the entry of one latent file (call while holding the store lock)."""
    data = load(manifest_path)
    data["format"] = FORMAT
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
    log.info("write.done", path=str(manifest_path), what="manifest")
