"""One typing rule for the typed outputs (Parquet, AnnData) of a text table.

The rule, decided once per input table (df02, or the training metadata) so that df03
and every per-experiment copy share one schema:

- empty cells and pandas' default missing-value words (``NA``, ``nan``, ``NULL``, ...)
  are missing;
- identifier columns are text, always: ``snip_id``, ``embryo_id``, ``experiment_date``,
  ``well``, and every column whose name ends in ``_id``, ``_date`` or ``_well`` or
  starts with ``well_`` (``20231207`` stays the text ``"20231207"``);
- otherwise a column is ``int64`` when every present cell is an integer, ``float64``
  when every present cell is a number (missing cells NaN; a column with no values at
  all is float64 NaN, as pandas reads it), boolean when every present cell is one of
  ``true/false/t/f/yes/no/1/0`` in any case (a pure 0/1 column stays a number);
- anything else (a mixed column) is text, never a failure.

A repeated column name keeps its first occurrence's name and gets ``.1``, ``.2`` on the
later ones, the names ``pandas.read_csv`` gives the same CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .csvtext import TextTable, read_columns_at, value_bytes

if TYPE_CHECKING:
    from .index import LatentIndex


#: pandas' default ``na_values`` (pandas.read_csv reads these as missing too)
MISSING = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
           "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
ID_NAMES = ("snip_id", "embryo_id", "experiment_date", "well")
_TRUE = ("true", "t", "yes", "1", "1.0")
_FALSE = ("false", "f", "no", "0", "0.0")


def is_identifier(name: str) -> bool:
    n = name.strip().lower()
    return n in ID_NAMES or n.endswith(("_id", "_date", "_well")) or n.startswith("well_")


def unique_names(names: Sequence[str], sep: str = ".") -> list[str]:
    """``a, b, a`` -> ``a, b, a.1`` (pandas.read_csv's names for repeated columns)."""
    seen = set(names)
    counts: dict[str, int] = {}
    out = []
    for n in names:
        if n not in counts:
            counts[n] = 0
            out.append(n)
            continue
        while True:
            counts[n] += 1
            candidate = f"{n}{sep}{counts[n]}"
            if candidate not in seen:
                break
        seen.add(candidate)
        out.append(candidate)
    return out


@attrs.frozen(kw_only=True)
class TypedColumns:
    """Every column of a text table as parsed text, with the kind the rule gave it."""

    names: tuple[str, ...]  # made unique
    text: tuple[pa.Array, ...]  # string, one per column, missing cells null
    kinds: tuple[str, ...]

    def arrays(self, rows: np.ndarray | None = None) -> list[pa.Array]:
        """The typed columns (of ``rows`` only, when given)."""
        idx = None if rows is None else pa.array(rows, pa.int64())
        return [typed_array(t if idx is None else t.take(idx), k) for t, k in zip(self.text, self.kinds, strict=True)]


def _present(text: pa.Array) -> pa.Array:
    """``text`` with the missing-value words as nulls."""
    missing = pc.is_in(text, value_set=pa.array(MISSING, pa.string()))
    return pc.if_else(missing, pa.scalar(None, pa.string()), text)


_INT = r"^[+-]?[0-9]+$"
_FLOAT = r"(?i)^[+-]?([0-9]+\.?[0-9]*(e[+-]?[0-9]+)?|\.[0-9]+(e[+-]?[0-9]+)?|inf|infinity|nan)$"


def _parses(values: pa.Array, to: pa.DataType) -> bool:
    # a pattern first: a failing cast costs far more than a match over the column
    if not pc.all(pc.match_substring_regex(values, _INT if pa.types.is_integer(to) else _FLOAT)).as_py():
        return False
    try:
        pc.cast(values, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def kind_of(name: str, text: pa.Array) -> str:
    """The kind the rule gives a column (``text`` holds its cells, missing as nulls)."""
    if is_identifier(name):
        return "text"
    values = pc.utf8_trim_whitespace(text.drop_null())
    if len(values) == 0:
        return "float"
    if _parses(values, pa.int64()):
        return "int"
    if _parses(values, pa.float64()):
        return "float"
    if pc.all(pc.is_in(pc.utf8_lower(values), value_set=pa.array(_TRUE + _FALSE))).as_py():
        return "bool"
    return "text"


def typed_array(text: pa.Array, kind: str) -> pa.Array:
    if kind == "text":
        return text
    trimmed = pc.utf8_trim_whitespace(text)
    if kind == "int":
        return pc.cast(trimmed, pa.int64())
    if kind == "float":
        return pc.cast(trimmed, pa.float64()).fill_null(np.nan)
    truth = pc.is_in(pc.utf8_lower(trimmed), value_set=pa.array(_TRUE))
    return pc.if_else(pc.is_null(trimmed), pa.scalar(None, pa.bool_()), truth)


def type_table(table: TextTable) -> TypedColumns:
    text = [_present(t) for t in read_columns_at(table, range(len(table.names)))]
    kinds = tuple(kind_of(n, t) for n, t in zip(table.names, text, strict=True))
    return TypedColumns(names=tuple(unique_names(table.names)), text=tuple(text), kinds=kinds)


def z_matrix(latents: LatentIndex, take: np.ndarray) -> np.ndarray:
    """The z values of latent rows ``take`` (-1: none) as a float64 matrix, NaN where a
    cell is empty, parsed from the merge's text by Arrow's CSV reader (on every core)."""
    import io

    n, width = len(take), len(latents.columns)
    if not width or not n:
        return np.full((n, width), np.nan)
    cells = latents.cells(take)
    ends = pa.repeat(pa.scalar(b"", pa.binary()), n)
    lines = pc.binary_join_element_wise(cells[0].cast(pa.binary()), ends, b"\n")
    names = [f"z{j}" for j in range(width)]
    table = pacsv.read_csv(io.BytesIO(value_bytes(lines)[1]), read_options=pacsv.ReadOptions(column_names=names),
                           parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
                           convert_options=pacsv.ConvertOptions(column_types={c: pa.float64() for c in names}))
    if table.num_rows != n:
        raise ValueError(f"z text parsed into {table.num_rows} rows, expected {n}")
    return np.column_stack([table.column(c).to_numpy().astype(np.float64) if table.column(c).null_count == 0
                            else table.column(c).fill_null(np.nan).to_numpy() for c in names])
