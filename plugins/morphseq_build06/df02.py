"""df02 as a run reads it: its rows' experiments, their QC flags, the experiments selected."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from morphseq_stages.errors import UserError

from . import keys
from .csvtext import TextTable, read_table_columns
from .latents import parse_z
from .options import Build06Options

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0", ""}


def parse_flags(values: pa.Array) -> tuple[np.ndarray, int]:
    """``use_embryo_flag`` as booleans (bool, 0/1, true/false/t/f/yes/no), and how many were neither."""
    text = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    true = pc.is_in(text, value_set=pa.array(sorted(_TRUE))).to_numpy(zero_copy_only=False)
    known = pc.is_in(text, value_set=pa.array(sorted(_TRUE | _FALSE))).to_numpy(zero_copy_only=False)
    return true, int((~known).sum())



def read_df02(opts: Build06Options, df02_path: Path) -> tuple[TextTable, dict[str, pa.Array], np.ndarray]:
    wanted = ["snip_id", "experiment_date"] + (["use_embryo_flag"] if opts.qc_filter else [])
    df02, cols = read_table_columns(df02_path, wanted, what="df02")
    if "snip_id" not in df02.names:
        raise UserError(f"df02 {df02_path} has no snip_id column")
    if opts.qc_filter and "use_embryo_flag" not in cols:
        raise UserError(f"--qc-filter needs a use_embryo_flag column, and df02 {df02_path} has none")
    snip_ids = cols["snip_id"]
    bad = pc.match_substring_regex(snip_ids, r"[/\\\x00-\x1f\x7f]")
    if len(snip_ids) and pc.any(bad).as_py():
        example = snip_ids.filter(bad)[0].as_py()
        raise UserError(f"unsafe snip_id {example!r} in {df02_path}: it must not contain '/', '\\', NUL "
                        "or control characters")
    stale_z = [n for n in df02.names if parse_z(n)]
    if stale_z:
        raise UserError(f"df02 {df02_path} already holds z column {stale_z[0]!r} ({len(stale_z)} in all): "
                        "df03 would repeat its names; remove them from df02 (is it a df03?)")
    return df02, cols, keys.row_experiments(snip_ids, cols.get("experiment_date"))



def row_codes(row_exp: np.ndarray, names: list[str]) -> np.ndarray:
    """Each row's experiment as its index in ``names`` (-1: none), so that masks compare integers."""
    index = pc.index_in(pa.array(row_exp, pa.string()), value_set=pa.array(names, pa.string()))
    return index.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)



def selected_experiments(opts: Build06Options, in_df02: list[str], df02_path: Path) -> set[str]:
    if not opts.experiments:
        return set(in_df02)
    absent = [e for e in opts.experiments if e not in in_df02]
    if absent:
        close = difflib.get_close_matches(absent[0], in_df02, n=5, cutoff=0.5)
        there = f"closest experiments there: {', '.join(close)}" if close else \
            f"experiments there: {', '.join(in_df02[:5]) or '(none)'}{' ...' if len(in_df02) > 5 else ''}"
        raise UserError(f"--experiments {absent[0]} has no rows in df02 {df02_path}; {there}")
    return set(opts.experiments)
