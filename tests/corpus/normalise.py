"""What of a file or a run's output two runs of the same code must agree on.

Only what must differ between two runs is taken out: the values of the keys in
``VOLATILE`` (ids, clocks, timings, the command line, the machine), the temporary folders
(and the checkout and venv, which differ between a coordinator's worktree and another),
and the provenance that Parquet and h5ad files embed; everything else is kept as it is,
key order included. A typed copy is compared by its content (table, schema, metadata),
as its bytes embed its provenance.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

#: keys whose values differ between two runs of the same code
VOLATILE = frozenset({  # probe_difference: ONNX is checked on a probe batch drawn afresh each load
    "probe_difference",
    "run_id", "created_at", "written_at", "timings_s", "argv", "cwd", "host", "mtime_ns", "timestamp",
    "rate_per_s", "pid", "since",
})
#: events that depend on the clock, not on the inputs (progress is logged every few seconds)
CLOCK_EVENTS = frozenset({"progress"})
#: volatile values also replaced where a text repeats them (ids and clocks; not host, pid or cwd)
_TOKEN_KEYS = frozenset({"run_id", "created_at", "written_at", "timestamp", "mtime_ns", "since"})
#: normalised texts kept in a recording for ``compare`` to show a diff
KEEP_TEXT_BELOW = 200_000
_TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".json", ".html", ".md", ".log", ".yaml", ".yml", ".lock", ".tmp",
                            ".validated", ".py", ""})
_QUOTE = r'(&quot;|&#34;|")'
_VOLATILE_IN_HTML = re.compile(
    _QUOTE + "(" + "|".join(sorted(VOLATILE)) + r")\1: (\{[^{}]*\}|\[[^\[\]]*\]|\1.*?\1|[-+0-9.eE]+)")
#: lines longer than this are kept as their length and digest (plotly.js inlined in the report)
LONG_LINE = 2_000
#: plotly's figure ids are fresh uuids in every HTML it writes
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


@attrs.frozen
class Content:
    """A file or a stream as compared: the digest of its normalised form, and that form
    when it is text small enough to keep."""

    digest: str
    text: str | None


class Normaliser:
    """Names what differs between two runs of the same code wherever it appears in a text:
    the folders (longest first), the values of volatile keys seen so far (a report
    repeats its run's id and times), and the sha256 of a file on disk (a sidecar records
    the bytes of a CSV that holds a temporary path, or of a Parquet file that embeds its
    provenance), which becomes ``<sha256 of PATH>``."""

    def __init__(self, folders: Mapping[str, Path | str]) -> None:
        pairs: dict[str, str] = {}
        for name, path in folders.items():
            for variant in {str(path), str(Path(path).resolve())}:
                pairs[variant] = f"${name}"
        self.replacements: dict[str, str] = pairs
        self._pattern: re.Pattern[str] | None = None

    def name_file(self, digest: str, rel: str) -> None:
        """Name ``digest`` (the sha256 of ``rel``'s bytes) wherever a text holds it; bytes
        seen before keep their first name (an empty file is not renamed by the next one)."""
        if digest not in self.replacements:
            self._add(digest, f"<sha256 of {rel}>")

    def _add(self, text: str, name: str) -> None:
        if self.replacements.get(text) != name:
            self.replacements[text] = name
            self._pattern = None

    def text(self, text: str) -> str:
        if self._pattern is None:
            keys = sorted(self.replacements, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, keys)))
        text = self._pattern.sub(lambda m: self.replacements[m.group(0)], text)
        return _UUID.sub("<uuid>", text)

    def value(self, value: Any) -> Any:
        """A JSON value with every volatile key's value replaced and the folders named."""
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if k in VOLATILE:
                    self._remember(k, v)
                    out[self.text(str(k))] = "<volatile>"
                else:
                    out[self.text(str(k))] = self.value(v)
            named = out.get("sha256")
            if isinstance(named, str) and named.startswith("<sha256 of ") and "size" in out:
                # the size of a file whose bytes are named is theirs (a report's varies with its timings)
                out["size"] = "<size of" + named.removeprefix("<sha256 of")
            return out
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def _remember(self, key: str, value: Any) -> None:
        # ids, clocks and stamps are long enough never to match anything else by chance
        if key in _TOKEN_KEYS and isinstance(value, str | int) and not isinstance(value, bool) and len(str(value)) >= 10:
            # one name for all: a created_at and a written_at can be the same second
            self._add(str(value), "<volatile>")

    def json_text(self, data: Any) -> str:
        self._collect(data)
        return json.dumps(self.value(data), indent=1, ensure_ascii=False, default=str) + "\n"

    def _collect(self, value: Any) -> None:
        """Remember the volatile values of a JSON value before it is normalised, so that a
        repetition ahead of its key is named too."""
        if isinstance(value, Mapping):
            for k, v in value.items():
                if k in VOLATILE:
                    self._remember(k, v)
                else:
                    self._collect(v)
        elif isinstance(value, list | tuple):
            for v in value:
                self._collect(v)

    # -- streams -------------------------------------------------------------------------
    def stdout(self, text: str) -> str:
        """A run's stdout: its JSON (``--json``) normalised, else its text."""
        try:
            return self.json_text(json.loads(text))
        except ValueError:
            return self.text(text)

    def stderr(self, text: str) -> str:
        """A run's stderr: each JSON log line normalised (clock events left out), other lines as they are."""
        lines = []
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                lines.append(self.text(line))
                continue
            if isinstance(event, dict) and event.get("event") in CLOCK_EVENTS:
                continue
            self._collect(event)
            # keys sorted: structlog merges the bound context (run_id, stage, experiment) in
            # the order of a contextvars.Context, which varies from run to run
            lines.append(json.dumps(self.value(event), ensure_ascii=False, default=str, sort_keys=True))
        return "".join(line + "\n" for line in lines)

    # -- files ---------------------------------------------------------------------------
    def file(self, path: Path, data: bytes) -> Content:
        """``path``'s content (its ``data``) as compared."""
        suffix = path.suffix.lower()
        text: str | None
        if suffix == ".parquet":
            text = self._parquet(path)
        elif suffix == ".h5ad":
            text = self._h5ad(path)
        elif suffix in _TEXT_SUFFIXES:
            text = self._text_file(data, suffix)
        else:
            text = None
        if text is None:
            return Content(hashlib.sha256(data).hexdigest(), None)
        return content_of(text)

    def _text_file(self, data: bytes, suffix: str) -> str | None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if suffix in (".json", ".lock", ""):
            try:
                return self.json_text(json.loads(text))
            except ValueError:
                pass
        if suffix == ".html":  # the report shows the sidecar as escaped JSON
            text = _VOLATILE_IN_HTML.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}: <volatile>", text)
        return self.text(text)

    def _parquet(self, path: Path) -> str | None:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception:  # a file a scenario broke on purpose: its bytes are compared
            return None
        metadata = {k.decode(errors="replace"): _json_or_text(v.decode(errors="replace"))
                    for k, v in (table.schema.metadata or {}).items()}
        schema = table.schema.remove_metadata()
        return "\n".join([
            "schema:", str(schema),
            "metadata:", self.json_text(metadata),
            "rows:", self.json_text(table.to_pydict()),
        ])

    def _h5ad(self, path: Path) -> str | None:
        try:
            import anndata
        except ImportError:
            return None
        try:
            adata = anndata.read_h5ad(path)
        except Exception:
            return None
        parts = ["obs:", _frame_text(adata.obs), "var:", _frame_text(adata.var),
                 f"X: {_array_text(adata.X)}"]
        for name, store in (("obsm", adata.obsm), ("varm", adata.varm), ("layers", adata.layers),
                            ("obsp", adata.obsp)):
            for key in store.keys():
                parts.append(f"{name}[{key}]: {_array_text(store[key])}")
        parts += ["uns:", self.json_text(_plain(dict(adata.uns)))]
        return "\n".join(parts)


def content_of(text: str) -> Content:
    """The digest of ``text``; the text kept for diffs with each very long line (an inline
    script bundle) shown by its length and digest."""
    encoded = text.encode("utf-8", errors="surrogateescape")
    kept = "".join(_short(line) for line in text.splitlines(keepends=True))
    return Content(hashlib.sha256(encoded).hexdigest(), kept if len(kept) < KEEP_TEXT_BELOW else None)


def _short(line: str) -> str:
    if len(line) < LONG_LINE:
        return line
    digest = hashlib.sha256(line.encode("utf-8", errors="surrogateescape")).hexdigest()
    return f"<line of {len(line)} characters, sha256 {digest[:16]}>\n"


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _frame_text(frame: Any) -> str:
    dtypes = ",".join(f"{c}:{t}" for c, t in frame.dtypes.items())
    return f"dtypes {dtypes}\nindex {list(frame.index)!r}\n{frame.to_csv()}"


def _array_text(array: Any) -> str:
    import numpy as np

    if array is None:
        return "None"
    if hasattr(array, "toarray"):
        array = array.toarray()
    array = np.asarray(array)
    return f"{array.dtype} {array.shape} {json.dumps(array.tolist())}"


def _plain(value: Any) -> Any:
    """anndata's ``uns`` (numpy arrays and scalars in nested dicts) as JSON values."""
    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value
