"""CSV tables kept as text: every input value is written back exactly as it was read.

A table's records are kept as raw bytes, so that writing a row back (with new columns
appended) reproduces the input byte for byte; only the columns a stage needs are parsed,
by Arrow, as strings (``48.0`` stays ``48.0``, ``20240626`` stays a string, and a
duplicated column name stays duplicated).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from morphseq_stages.errors import UserError

from .inputs import ReadFile, read_file

WRITE_CHUNK_ROWS = 1 << 11


@attrs.frozen(kw_only=True)
class TextTable:
    path: Path
    header: bytes  # the raw header record, without its line end
    names: tuple[str, ...]
    records: pa.Array  # binary: each data record's raw bytes, without its line end
    newline: bytes
    source: ReadFile | None = attrs.field(default=None, repr=False, eq=False)  # the bytes read, for provenance

    def __len__(self) -> int:
        return len(self.records)

    def index_of(self, name: str) -> int | None:
        try:
            return self.names.index(name)
        except ValueError:
            return None


_BOM = b"\xef\xbb\xbf"


def record_bounds(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Where each record of ``data`` starts and ends (line end excluded), blank lines
    dropped; the same records pandas, the csv module and Arrow read.

    A line ends at ``\\n``, ``\\r\\n`` or a lone ``\\r``, except inside a quoted value. A
    quote opens a quoted value only at the start of a field; elsewhere (``a"b``,
    ``5" long``) it is an ordinary character. Inside a quoted value ``""`` is a quote
    and the next lone quote closes it.
    """
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == 10)
    width = np.ones(len(ends), np.int64)
    if b"\r" in data:
        cr = np.flatnonzero(buf == 13)
        crlf = np.isin(cr + 1, ends)
        ends = np.concatenate([ends[~np.isin(ends - 1, cr)], cr])
        width = np.concatenate([np.ones(len(ends) - len(cr), np.int64), np.where(crlf, 2, 1)])
        order = np.argsort(ends, kind="stable")
        ends, width = ends[order], width[order]
    if b'"' in data:
        opened, closed = _quoted_spans(data, buf)
        # a line end inside a quoted value is part of the value
        inside = np.searchsorted(opened, ends, side="right") > np.searchsorted(closed, ends, side="left")
        ends, width = ends[~inside], width[~inside]
    if len(ends) == 0 or ends[-1] + width[-1] < len(data):
        ends, width = np.append(ends, len(data)), np.append(width, 0)
    starts = np.concatenate([[0], ends[:-1] + width[:-1]])
    keep = ends > starts
    return starts[keep], ends[keep]


def _quoted_spans(data: bytes, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(opening quote, closing quote) of every quoted value; an unclosed one is an error."""
    quotes = np.flatnonzero(buf == 34).tolist()
    opened, closed = [], []
    field_start = b",\n\r"
    i, n = 0, len(quotes)
    while i < n:
        q = quotes[i]
        if q == 0 or data[q - 1] in field_start or (q == 3 and data.startswith(_BOM)):
            i += 1
            while i < n and quotes[i] + 1 < len(data) and data[quotes[i] + 1] == 34:
                i += 2  # "" inside a quoted value
            if i >= n:
                line = data.count(b"\n", 0, q) + 1
                raise CsvShapeError(f"a quoted value opened on line {line} is never closed")
            opened.append(q)
            closed.append(quotes[i])
        i += 1
    return np.array(opened, np.int64), np.array(closed, np.int64)


def _split_records(data: bytes) -> tuple[pa.Array, bytes]:
    """Each record's raw bytes (line end dropped, blank lines skipped), and the line end
    of the output: the first data record's (the header's if there is none)."""
    starts, ends = record_bounds(data)
    newline = b"\n"
    if len(ends):
        at = ends[1] if len(ends) > 1 else ends[0]
        newline = b"\r\n" if data[at : at + 2] == b"\r\n" else (b"\r" if data[at : at + 1] == b"\r" else b"\n")
    # records and the gaps between them (line ends, blank lines) tile the data: keep the records
    cuts = np.empty(2 * len(starts) + 1, np.int64)
    cuts[0], cuts[1::2], cuts[2::2] = 0, starts, ends
    pieces = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(cuts) - 1, [None, pa.py_buffer(cuts), pa.py_buffer(data)])
    return pieces.take(int64_array(np.arange(1, len(cuts), 2))).cast(pa.binary()), newline


def int64_array(values: np.ndarray) -> pa.Array:
    """``values`` as an Arrow int64 array, without copying them; unlike ``pa.array``, this
    does not make pyarrow import pandas (0.2 s) first."""
    values = np.ascontiguousarray(values, np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def parse_header(raw: bytes, path: Path) -> tuple[str, ...]:
    try:
        text = raw.decode("utf-8-sig")
        return tuple(next(csv.reader([text])))
    except (UnicodeDecodeError, StopIteration, csv.Error) as exc:
        raise UserError(f"cannot read the header of {path}: {exc}") from None


class CsvShapeError(ValueError):
    """The text breaks the CSV record model (an unclosed quoted value)."""


def read_text_table(path: Path, *, what: str = "table") -> TextTable:
    return _read_table(Path(path), what)[0]


def read_table_columns(path: Path, names: Sequence[str], *, what: str = "table") -> tuple[TextTable, dict[str, pa.Array]]:
    """:func:`read_text_table`, then :func:`read_columns`: a plain file (one ``\\n`` after
    each record, no blank line, no quote) is parsed where it lies, its records not joined
    again into a second copy of it."""
    table, data = _read_table(Path(path), what)
    plain = b'"' not in data and b"\r" not in data and \
        data.count(b"\n") == len(table) + data.endswith(b"\n")
    body = memoryview(data)[data.index(b"\n") + 1 :] if plain and len(table) else None
    return table, read_columns(table, names, body)


def _read_table(path: Path, what: str) -> tuple[TextTable, bytes]:
    data, source = read_file(path, what)
    try:
        records, newline = _split_records(data)
    except CsvShapeError as exc:
        raise UserError(f"cannot parse {what} {path}: {exc}") from None
    if not len(records):
        raise UserError(f"{what} {path} is empty (no header row)")
    header = records[0].as_py()
    table = TextTable(path=path, header=header, names=parse_header(header, path), records=records[1:], newline=newline,
                      source=source)
    return table, data


def read_columns(table: TextTable, names: Sequence[str], body: memoryview | None = None) -> dict[str, pa.Array]:
    """Parse the named columns (first occurrence of each) as strings, one per record."""
    indices = {}
    for name in names:
        idx = table.index_of(name)
        if idx is not None:
            indices[name] = idx
    return dict(zip(indices, read_columns_at(table, list(indices.values()), body), strict=True))


def read_columns_at(table: TextTable, indices: Sequence[int], body: memoryview | bytes | None = None) -> list[pa.Array]:
    """Parse the columns at ``indices`` as strings, one per record.

    Arrow parses the records already split (each one line of its input), so the parser
    and the writer agree on every record; ``body``, when given, is that text already
    (the records of a plain file, as it holds them).
    """
    if not indices or len(table) == 0:
        return [pa.array([""] * len(table), pa.string()) for _ in indices]
    generated = [f"c{i}" for i in range(len(table.names))]
    offsets, _ = value_bytes(table.records)
    if body is None:
        text = pc.binary_join_element_wise(table.records, pa.repeat(pa.scalar(b"", pa.binary()), len(table)), b"\n")
        body = value_bytes(text)[1]
    longest = int(np.diff(offsets).max())
    wanted = list(dict.fromkeys(generated[i] for i in indices))
    try:
        parsed = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(body)),
            read_options=pacsv.ReadOptions(column_names=generated, block_size=min(max(1 << 20, 2 * longest + 2), 2**31 - 1)),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={c: pa.string() for c in wanted},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise UserError(f"cannot parse {table.path}: {_first_line(exc)}") from None
    if parsed.num_rows != len(table):
        raise UserError(f"cannot parse {table.path}: found {parsed.num_rows} rows, expected {len(table)}")
    return [parsed.column(generated[i]).combine_chunks() for i in indices]


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
    comma, end = pa.scalar(b",", pa.binary()), pa.scalar(newline, pa.binary())
    for start in range(0, n, WRITE_CHUNK_ROWS):
        stop = min(n, start + WRITE_CHUNK_ROWS)
        parts: list[pa.Array | pa.Scalar] = [records.slice(start, stop - start)]
        for cells in extra(start, stop) if extra is not None else []:
            parts += [comma, cells]
        # each line made in one pass: record, cells and line end (a null cell is empty)
        lines = pc.binary_join_element_wise(*parts, end, b"", null_handling="replace", null_replacement=b"")
        # read-only: this chunk is never changed, so it may be hashed while the next is made
        fh.write(memoryview(value_bytes(lines)[1]).toreadonly())


def write_string_table(fh: IO[bytes], columns: Mapping[str, Sequence[str]], extra: Mapping[str, np.ndarray] | None = None) -> None:
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
