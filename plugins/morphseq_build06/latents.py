"""Latent files (``morph_latents_<experiment>.csv``): column names, reading, writing.

Columns: ``experiment_date, embryo_id, snip_id``, one mean column per dimension in
dimension order, then one ``z_sigma_*`` column per dimension. ``z_sigma_*`` holds the
encoder's **log-variance**, not a standard deviation: the name is kept because every
existing file and notebook uses it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from morphseq_stages.errors import UserError

from .csvtext import float_text, int64_array, parse_header, write_string_table
from .inputs import ReadFile, read_file

ID_COLUMNS = ("experiment_date", "embryo_id", "snip_id")
Z_SCHEMAS = ("auto", "flat", "bio_nuisance")
LATENT_FORMATS = ("csv", "parquet")
LATENT_PREFIX = "morph_latents_"
_Z = re.compile(r"^z_(mu|sigma)_(?:([bn])_)?(\d+)$")
_TIME = re.compile(r"_[ts](\d{4})$")
# a decimal number too short to overflow: always finite, whatever parses it
_FINITE = r"-?[0-9]{1,30}(?:\.[0-9]{1,30})?(?:[eE][-+]?[0-9]{1,2})?"
# one number, as Arrow, pandas and the csv module all read it (no blanks: see _cell_values)
_NUMBER = r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"
_SPECIAL = r"^[-+]?(?:nan|inf|infinity)$"
#: the examples of cells that are not one number kept per file
EXAMPLES = 5
_FINITE_ROW = f"^{_FINITE}(?:,{_FINITE})*$"


def latent_file_name(experiment: str, fmt: str = "csv") -> str:
    return f"{LATENT_PREFIX}{experiment}.{fmt}"


def parse_z(name: str) -> tuple[str, str, int] | None:
    """``z_mu_b_20`` -> ("mu", "b", 20); ``z_sigma_03`` -> ("sigma", "", 3); else None."""
    m = _Z.match(name)
    if not m:
        return None
    return m.group(1), m.group(2) or "", int(m.group(3))


def select_z_columns(names: Sequence[str], schema: str, include_sigma: bool = False) -> list[str]:
    """The z columns a schema keeps, in dimension order (never lexical order)."""
    if schema not in Z_SCHEMAS:
        raise UserError(f"unknown z schema {schema!r} (choose from {', '.join(Z_SCHEMAS)})")
    parsed = [(n, parse_z(n)) for n in names]
    z = [(n, p) for n, p in parsed if p is not None and (p[0] == "mu" or include_sigma)]
    flat = [(n, p) for n, p in z if p[1] == ""]
    bn = [(n, p) for n, p in z if p[1] != ""]
    if schema == "flat":
        chosen = flat
    elif schema == "bio_nuisance":
        chosen = bn or flat
    else:
        chosen = z
    group_order = {"": 0, "n": 1, "b": 2}
    chosen.sort(key=lambda item: (item[1][0] != "mu", item[1][2], group_order[item[1][1]]))
    return list(dict.fromkeys(n for n, _ in chosen))


def dimension_key(name: str) -> tuple[str, int] | None:
    """``z_mu_b_20`` and ``z_mu_20`` -> ("mu", 20): one dimension under either naming (SPEC §11)."""
    p = parse_z(name)
    return None if p is None else (p[0], p[2])


def dimension_columns(names: Sequence[str]) -> list[str]:
    """One name per dimension, in dimension order: the b/n name where some file uses it
    (the 2025 CSVs' naming), else the flat one."""
    chosen: dict[tuple[str, int], str] = {}
    for n in select_z_columns(names, "auto", True):
        parsed = parse_z(n)  # selected z columns always parse
        if parsed is None:
            continue
        key = (parsed[0], parsed[2])
        if key not in chosen or parsed[1]:
            chosen[key] = n
    return list(chosen.values())


def check_names(names: Sequence[str], path: Path) -> None:
    """The columns every latent file must have right, whatever its format: a ``snip_id``,
    z columns that each name a dimension, none of them twice."""
    if "snip_id" not in names:
        raise UserError(f"latent file {path} has no snip_id column")
    odd = [n for n in names if n.startswith(("z_mu_", "z_sigma_")) and parse_z(n) is None]
    if odd:
        raise UserError(f"latent file {path}: column {odd[0]!r} maps to no latent dimension")
    repeated = [n for n in names if parse_z(n) and names.count(n) > 1]
    if repeated:
        raise UserError(f"latent file {path} repeats column {repeated[0]!r}")


def embryo_id_of(snip_id: str) -> str:
    return _TIME.sub("", snip_id)


@attrs.frozen(kw_only=True)
class LatentRows:
    """One latent file's rows: snip ids as read, and the z cells as text.

    ``lines`` holds each row's z cells joined by commas, in the caller's column order
    (empty cells where this file lacks a column), exactly as the file wrote them; the
    masks say which rows hold NaN (or empty cells) and which hold ±Inf, and which hold a
    cell that is not one number (``odd_cells``: a few of them, by row, for the messages).
    """

    path: Path
    snip_ids: pa.Array
    columns: tuple[str, ...]
    lines: pa.Array
    nan_rows: np.ndarray
    inf_rows: np.ndarray
    odd_rows: np.ndarray
    odd_cells: Mapping[int, str] = attrs.field(factory=dict)
    sources: tuple[ReadFile, ...] = attrs.field(default=(), repr=False, eq=False)  # the files read, as read

    @property
    def unusable(self) -> np.ndarray:
        return self.nan_rows | self.inf_rows | self.odd_rows


def read_csv_header(path: Path) -> tuple[str, ...]:
    """The column names of a CSV latent file."""
    try:  # a FIFO is refused, not waited on
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise UserError(f"latent file {path} is not a regular file")
            first = fh.readline().rstrip(b"\r\n")
    except OSError as exc:
        raise UserError(f"cannot read latent file {path}: {exc.strerror or exc}") from None
    if not first:
        raise UserError(f"latent file {path} is empty (no header row)")
    return parse_header(first, path)


def _vouched(lines: pa.Array, cells: int, *, quoted: bool) -> np.ndarray:
    """The rows that hold exactly ``cells`` finite numbers, seen from their joined text.

    Only a quoted cell can hold a comma (``"0,5"``, as ``to_csv(decimal=",")`` writes it),
    which the pattern would read as two numbers: in a file with quotes, the commas of each
    row are counted too.
    """
    ok = pc.match_substring_regex(lines, _FINITE_ROW)
    if quoted:
        ok = pc.and_(ok, pc.equal(pc.count_substring(lines, ","), cells - 1))
    return ok.to_numpy(zero_copy_only=False)


def _cell_values(text: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array | None]:
    """Each cell of a text column read as one number: (values, NaN where empty or not a
    number; which cells are not one number; the cells as df03 must hold them, or None when
    that is ``text`` itself).

    A cell is one number when, blanks (spaces, tabs) around it aside, it is a plain decimal
    or a NaN/Inf spelling; a cell with blanks around it reaches df03 as the shortest text of
    its value. Anything else (``0,5``, ``0.5\\n``, ``0x1p4``, ``1;2``, ``1_0``) is not a
    number: its text must never reach df03.
    """
    trimmed = pc.utf8_trim(text, " \t")
    number = pc.match_substring_regex(trimmed, _NUMBER)
    special = pc.match_substring_regex(trimmed, _SPECIAL, ignore_case=True)
    empty = pc.equal(pc.binary_length(trimmed), 0)
    odd = pc.invert(pc.or_(pc.or_(number, special), empty))
    usable = pc.if_else(pc.or_(number, special), trimmed, pa.scalar(None, pa.string()))
    values = pc.cast(usable, pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    padded = pc.and_(number, pc.not_equal(trimmed, text))
    fixed = None
    if pc.any(padded).as_py():
        fixed = pc.if_else(padded, pc.cast(float_text(values), pa.string()), text)
    return values, odd.to_numpy(zero_copy_only=False), fixed


def read_csv_rows(path: Path, columns: Sequence[str], order: Sequence[str], names: Mapping[str, str]) -> LatentRows:
    """Read ``snip_id`` and ``columns`` (text, nothing parsed away) of a CSV latent file;
    ``names``: the file's column for each name of ``order`` it has a dimension for."""
    data, source = read_file(path, "latent file", hash_now=True)
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(use_threads=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=["snip_id", *columns],
                # z cells as bytes: the pattern below accepts ASCII only, and the rows it
                # does not vouch for are checked as text
                column_types={"snip_id": pa.string(), **{c: pa.binary() for c in columns}},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise UserError(f"cannot parse latent file {path}: {str(exc).strip().splitlines()[0]}") from None
    n = table.num_rows
    empty = pa.repeat(pa.scalar(b"", pa.binary()), n)
    cells = [table.column(names[c]).combine_chunks() if c in names else empty for c in order]
    lines = pc.binary_join_element_wise(*cells, b",") if cells else empty
    nan_rows, inf_rows, odd_rows = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    odd_cells: dict[int, str] = {}
    # one pattern over each row's text instead of a float parse of every cell; the rows it
    # does not vouch for are parsed cell by cell
    unsure = np.arange(n) if len(names) < len(order) or not n else \
        np.flatnonzero(~_vouched(lines, len(order), quoted=b'"' in data))
    if len(unsure):
        picked = table.take(int64_array(unsure)) if len(unsure) < n else table
        fixed: dict[str, pa.Array] = {}
        for c in columns:
            try:
                text = pc.cast(picked.column(c).combine_chunks(), pa.string())
            except pa.ArrowInvalid as exc:
                raise UserError(f"cannot parse latent file {path}: column {c!r}: {exc}") from None
            values, odd, now = _cell_values(text)
            nan_rows[unsure] |= np.isnan(values) & ~odd
            inf_rows[unsure] |= np.isinf(values)
            odd_rows[unsure] |= odd
            for i in np.flatnonzero(odd)[: max(0, EXAMPLES - len(odd_cells))]:
                odd_cells.setdefault(int(unsure[i]), f"{c} = {text[int(i)].as_py()!r}")
            if now is not None:
                fixed[c] = now
        if fixed:  # the rows whose cells df03 holds as the shortest text of their values
            redone = [pc.cast(fixed[names[c]], pa.binary()) if c in names and names[c] in fixed
                      else picked.column(names[c]).combine_chunks() if c in names
                      else pa.repeat(pa.scalar(b"", pa.binary()), len(unsure)) for c in order]
            mask = np.zeros(n, bool)
            mask[unsure] = True
            lines = pc.replace_with_mask(lines, pa.array(mask), pc.binary_join_element_wise(*redone, b","))
    return LatentRows(
        path=path, snip_ids=table.column("snip_id").combine_chunks(), columns=tuple(columns),
        lines=lines, nan_rows=nan_rows & ~odd_rows, inf_rows=inf_rows & ~odd_rows, odd_rows=odd_rows,
        odd_cells=odd_cells, sources=(source,),
    )


def write_latents(
    fh: IO[bytes],
    experiment: str,
    snip_ids: Sequence[str],
    mu: np.ndarray,
    logvar: np.ndarray | None,
    mu_columns: Sequence[str],
    sigma_columns: Sequence[str],
    order: Sequence[str] | None = None,
) -> None:
    """Write a latent file in the exact column order of SPEC §4 (or in ``order``)."""
    extra = {c: mu[:, j] for j, c in enumerate(mu_columns)}
    if logvar is not None and sigma_columns:
        extra.update({c: logvar[:, j] for j, c in enumerate(sigma_columns)})
    ids = {
        "experiment_date": [experiment] * len(snip_ids),
        "embryo_id": [embryo_id_of(s) for s in snip_ids],
        "snip_id": list(snip_ids),
    }
    if order is not None:
        missing = [c for c in order if c not in ids and c not in extra]
        if missing:
            raise UserError(f"cannot write latent column {missing[0]!r}: the embedder does not produce it")
        # the id columns lead; any order of them that a file already has is kept
        ids = {c: ids[c] for c in order if c in ids}
        extra = {c: extra[c] for c in order if c in extra}
        if list(ids) + list(extra) != list(order):
            raise UserError("cannot append to a latent file whose id columns follow its z columns")
    write_string_table(fh, ids, extra)

