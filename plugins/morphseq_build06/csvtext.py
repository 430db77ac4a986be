"""CSV tables kept as text: every input value is written back exactly as it was read.

A table's records are kept as raw bytes, so that writing a row back (with new columns
appended) reproduces the input byte for byte; only the columns a stage needs are parsed,
by Arrow, as strings (``48.0`` stays ``48.0``, ``20240626`` stays a string, and a
duplicated column name stays duplicated).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from morphseq_stages.errors import UserError

WRITE_CHUNK_ROWS = 1 << 14


@attrs.frozen(kw_only=True)
class TextTable:
    path: Path
    header: bytes  # the raw header record, without its line end
    names: tuple[str, ...]
    records: pa.Array  # binary: each data record's raw bytes, without its line end
    newline: bytes

    def __len__(self) -> int:
        return len(self.records)

    def index_of(self, name: str) -> int | None:
        try:
            return self.names.index(name)
        except ValueError:
            return None


def _split_records(data: bytes) -> tuple[pa.Array, bytes]:
    """Each record's raw bytes (line ends dropped, blank lines skipped), and the line end."""
    first_end = data.find(b"\n")
    newline = b"\r\n" if first_end > 0 and data[first_end - 1 : first_end] == b"\r" else b"\n"
    lines = pc.split_pattern(pa.array([data], pa.large_binary()), b"\n").flatten()
    if newline == b"\r\n":
        lines = pc.replace_substring_regex(lines, "\r$", "")
    if b'"' in data and pc.any(pc.not_equal(pc.bit_wise_and(pc.count_substring(lines, b'"'), 1), 0)).as_py():
        lines = pa.array(_join_quoted(lines.to_pylist(), newline), pa.large_binary())
    lines = lines.filter(pc.greater(pc.binary_length(lines), 0))
    return lines.cast(pa.binary()), newline


def _join_quoted(lines: list[bytes], newline: bytes) -> list[bytes]:
    """A quoted value may hold a line end: a record goes on while its quotes are unbalanced."""
    merged: list[bytes] = []
    pending: list[bytes] = []
    quotes = 0
    for ln in lines:
        pending.append(ln)
        quotes += ln.count(b'"')
        if quotes % 2 == 0:
            merged.append(newline.join(pending))
            pending, quotes = [], 0
    if pending:
        merged.append(newline.join(pending))
    return merged


def parse_header(raw: bytes, path: Path) -> tuple[str, ...]:
    try:
        text = raw.decode("utf-8-sig")
        return tuple(next(csv.reader([text])))
    except (UnicodeDecodeError, StopIteration, csv.Error) as exc:
        raise UserError(f"cannot read the header of {path}: {exc}") from None


def read_text_table(path: Path, *, what: str = "table") -> TextTable:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    records, newline = _split_records(data)
    del data
    if not len(records):
        raise UserError(f"{what} {path} is empty (no header row)")
    header = records[0].as_py()
    return TextTable(path=path, header=header, names=parse_header(header, path), records=records[1:], newline=newline)


def read_columns(table: TextTable, names: Sequence[str]) -> dict[str, pa.Array]:
    """Parse the named columns (first occurrence of each) as strings, one per record."""
    indices = {}
    for name in names:
        idx = table.index_of(name)
        if idx is not None:
            indices[name] = idx
    if not indices or len(table) == 0:
        return {name: pa.array([""] * len(table), pa.string()) for name in indices}
    generated = [f"c{i}" for i in range(len(table.names))]
    try:
        parsed = pacsv.read_csv(
            table.path,
            read_options=pacsv.ReadOptions(column_names=generated, skip_rows=1),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=[generated[i] for i in indices.values()],
                column_types={generated[i]: pa.string() for i in indices.values()},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise UserError(f"cannot parse {table.path}: {_first_line(exc)}") from None
    if parsed.num_rows != len(table):
        raise UserError(f"cannot parse {table.path}: found {parsed.num_rows} rows, expected {len(table)}")
    return {name: parsed.column(generated[i]).combine_chunks() for name, i in indices.items()}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def value_bytes(values: pa.Array) -> tuple[np.ndarray, memoryview | bytes]:
    """A binary array's values as one uncopied run of bytes, and where each value starts
    and ends in it (int64 offsets from 0)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) == 0:
        return np.zeros(1, np.int64), b""
    width = np.int64 if pa.types.is_large_binary(values.type) else np.int32
    offsets = np.frombuffer(values.buffers()[1], dtype=width)[values.offset : values.offset + len(values) + 1]
    return offsets.astype(np.int64) - offsets[0], memoryview(values.buffers()[2])[offsets[0] : offsets[-1]]



def float_text(values: np.ndarray) -> pa.Array:
    """Shortest round-trip text of each float (NaN -> empty), as binary."""
    arr = pa.array(values, from_pandas=True)
    return pc.cast(pc.cast(arr, pa.string()), pa.binary())


def quote(value: str) -> str:
    if any(c in value for c in ',"\n\r') or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


def header_with(table_header: bytes, extra: Sequence[str]) -> bytes:
    if not extra:
        return table_header
    return table_header + b"," + ",".join(quote(n) for n in extra).encode()


def write_rows(
    fh: IO[bytes],
    header: bytes,
    records: pa.Array,
    newline: bytes,
    extra: np.ndarray | Callable[[int, int], Sequence[pa.Array]] | None = None,
) -> None:
    """Write ``header`` then each record with the cells of ``extra`` appended.

    ``extra`` is a ``(rows, k)`` float array (written as shortest round-trip text), or
    ``extra(start, stop)`` giving the text cells of one chunk as binary arrays (so that
    a large table is never formatted whole).
    """
    fh.write(header + newline)
    n = len(records)
    if isinstance(extra, np.ndarray):
        matrix = extra
        extra = lambda a, b: [float_text(matrix[a:b, j]) for j in range(matrix.shape[1])]  # noqa: E731
    for start in range(0, n, WRITE_CHUNK_ROWS):
        stop = min(n, start + WRITE_CHUNK_ROWS)
        parts = [records.slice(start, stop - start)]
        if extra is not None:
            parts.extend(extra(start, stop))
        line = pc.binary_join_element_wise(*parts, b",", null_handling="replace", null_replacement=b"")
        ends = pa.repeat(pa.scalar(b"", pa.binary()), stop - start)
        fh.write(value_bytes(pc.binary_join_element_wise(line, ends, newline))[1])


def write_string_table(fh: IO[bytes], columns: dict[str, Sequence[str]], extra: dict[str, np.ndarray] | None = None) -> None:
    """Write plain string columns then float columns (used for small tables)."""
    names = list(columns)
    header = ",".join(quote(n) for n in names + list(extra or {})).encode()
    n = len(next(iter(columns.values()))) if columns else 0
    records = pa.array(
        [",".join(quote(str(columns[c][i])) for c in names).encode() for i in range(n)], pa.binary()
    )
    block = None
    if extra:
        block = np.column_stack([np.asarray(v) for v in extra.values()])
    write_rows(fh, header, records, b"\n", block)
