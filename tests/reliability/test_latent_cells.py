"""Every value that reaches df03 is one number per cell (SPEC §12, issue 17 item 1).

A latent cell that is not one number (a quoted ``"0,5"`` as ``to_csv(decimal=",")``
writes it, a line break, ``1;2``, ``0x1p4``...) leaves its row unembedded with a reason;
df03 keeps one record per df02 row and one cell per column, and its typed copies are
written. A df03 an earlier version wrote with such a cell is not called current.
"""

from __future__ import annotations

import csv
import io
import json
import math

import pandas as pd
import pytest

from . import scenario
from conftest import read_rows

EXPERIMENT = "20231207"
#: cells that are not one number, as they stand in the file (quoted where CSV needs it)
NOT_ONE_NUMBER = {
    "decimal comma": '"0,5"',
    "two decimal commas": '"1,25e-3,7"',
    "comma list": '"1,2,3"',
    "trailing newline": '"0.5\n"',
    "leading newline": '"\n0.5"',
    "trailing cr": '"0.5\r"',
    "crlf inside": '"1\r\n2"',
    "semicolon": "1;2",
    "hex float": "0x1p4",
    "hex int": "0x10",
    "underscore": "1_0",
    "two dots": "1.2.3",
    "double minus": "--1",
    "bare exponent": "1e",
    "letters": "abc",
    "fullwidth digit": "\uff11",
    "arabic digit": "\u0661",
    "no-break space": "0.5\u00a0",
    "quote inside": '"0.5"""',
    "equals": "=1",
    "percent": "5%",
}
#: cells that are one number, and what df03 holds for each
ONE_NUMBER = {"+1": "+1", ".5": ".5", "5.": "5.", "007": "007", "-0": "-0", "3E+07": "3E+07",
              '" 0.25"': "0.25", '"0.25\t"': "0.25", '"-1e-3 "': "-0.001", '"2.5"': "2.5"}


def _with_cell(synth, cell: str, column: int = 2, row: int = 1) -> str:
    """Put ``cell`` (raw CSV text) in one z column of one row of a latent file; its snip id."""
    path = synth.latent_dir(scenario.MODEL) / f"morph_latents_{EXPERIMENT}.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(), newline="")))
    header, body = rows[0], rows[1:]
    z = [i for i, n in enumerate(header) if n.startswith("z_mu")][column]
    out = [",".join(header)]
    for i, r in enumerate(body):
        cells = [f'"{c}"' if "," in c or '"' in c else c for c in r]
        if i == row:
            cells[z] = cell
        out.append(",".join(cells))
    path.write_bytes(("\n".join(out) + "\n").encode())
    return body[row][header.index("snip_id")]


def _df03_records(synth) -> tuple[list[str], list[list[str]]]:
    return read_rows(synth.df02.with_name("embryo_metadata_df03.csv"))


def _check_df03_is_df02_plus_numbers(synth) -> dict[str, list[str]]:
    """df03 holds every df02 record, one cell per column, each z cell empty or one number;
    the z cells by snip id."""
    df02_header, df02_rows = read_rows(synth.df02)
    header, rows = _df03_records(synth)
    assert header[: len(df02_header)] == df02_header
    z = header[len(df02_header):]
    assert z and all(n.startswith("z_") for n in z)
    assert len(rows) == len(df02_rows)
    for old, new in zip(df02_rows, rows, strict=True):
        assert len(new) == len(header), new
        assert new[: len(df02_header)] == old
        for cell in new[len(df02_header):]:
            assert cell == "" or (cell == cell.strip() and math.isfinite(float(cell))), cell
    frame = pd.read_csv(synth.df02.with_name("embryo_metadata_df03.csv"))
    assert len(frame) == len(df02_rows) and all(frame[c].dtype.kind == "f" for c in z)
    snip = df02_header.index("snip_id")
    return {r[snip]: r[len(df02_header):] for r in rows}


def _reasons(synth) -> dict[str, str]:
    _, rows = read_rows(synth.df02.with_name("embryo_metadata_df03_unembedded.csv"))
    return {r[0]: r[2] for r in rows}


@pytest.mark.parametrize("cell", list(NOT_ONE_NUMBER.values()), ids=list(NOT_ONE_NUMBER))
def test_a_cell_that_is_not_one_number_leaves_its_row_unembedded(tmp_path, cli, cell):
    pytest.importorskip("anndata")
    synth = scenario.merge_root(tmp_path)
    snip = _with_cell(synth, cell)
    code, out, err = cli(*scenario.args(synth, "--formats", "csv,parquet,h5ad", "--min-coverage", "0", "--json"))
    assert code == 0, err
    z = _check_df03_is_df02_plus_numbers(synth)
    assert z[snip] == [""] * len(z[snip])
    assert sum(all(c != "" for c in cells) for cells in z.values()) == len(z) - 1  # every other row embedded
    assert "not one number" in _reasons(synth)[snip]
    summary = json.loads(out)
    assert any("not one number" in w for w in summary["warnings"])
    side = json.loads(synth.df02.with_name("embryo_metadata_df03.json").read_text())
    assert side["hygiene"]["rows_not_one_number"] == 1
    typed = pd.read_parquet(synth.df02.with_name("embryo_metadata_df03.parquet"))
    assert len(typed) == len(z) and typed.filter(like="z_mu").notna().all(axis=1).sum() == len(z) - 1
    # --strict: the same cell is a warning, exit 3
    code, _, err = cli(*scenario.args(synth, "--strict", "--overwrite", "--min-coverage", "0"))
    assert code == 3 and "not one number" in err


@pytest.mark.parametrize("cell", list(ONE_NUMBER), ids=list(ONE_NUMBER))
def test_a_cell_that_is_one_number_is_embedded(tmp_path, cli, cell):
    pytest.importorskip("anndata")
    synth = scenario.merge_root(tmp_path)
    snip = _with_cell(synth, cell)
    code, out, err = cli(*scenario.args(synth, "--formats", "csv,parquet,h5ad", "--json"))
    assert code == 0, err
    assert not any("not one number" in w for w in json.loads(out)["warnings"])
    z = _check_df03_is_df02_plus_numbers(synth)
    assert z[snip][2] == ONE_NUMBER[cell]
    typed = pd.read_parquet(synth.df02.with_name("embryo_metadata_df03.parquet"))
    got = typed.loc[typed["snip_id"] == snip, [c for c in typed.columns if c.startswith("z_mu")][2]].item()
    assert got == float(ONE_NUMBER[cell])


def test_a_file_written_with_decimal_commas_embeds_nothing_and_says_why(tmp_path, cli):
    """``to_csv(decimal=",")`` quotes every z cell: each row's text still matches the
    pattern of a row of numbers (one more cell each); not one of them may reach df03."""
    synth = scenario.merge_root(tmp_path)
    path = synth.latent_dir(scenario.MODEL) / f"morph_latents_{EXPERIMENT}.csv"
    frame = pd.read_csv(path, dtype={"experiment_date": str})
    frame.to_csv(path, index=False, decimal=",")
    assert '"' in path.read_text()
    code, out, err = cli(*scenario.args(synth, "--min-coverage", "0", "--json"))
    assert code == 0, err
    z = _check_df03_is_df02_plus_numbers(synth)
    reasons = _reasons(synth)
    for snip in synth.snips[EXPERIMENT]:
        assert z[snip] == [""] * len(z[snip]) and "not one number" in reasons[snip]
    others = [s for e, ids in synth.snips.items() if e != EXPERIMENT for s in ids]
    assert all("" not in z[s] for s in others)


def test_a_df03_written_with_a_cell_too_many_is_not_current(tmp_path, cli):
    """A df03 as the earlier version wrote it (the text of ``"0,5"`` copied in, its sidecar
    recording that file) is out of date on the next plan, and --overwrite repairs it."""
    synth = scenario.merge_root(tmp_path)
    snip = _with_cell(synth, '"0,5"')
    assert cli(*scenario.args(synth, "--min-coverage", "0"))[0] == 0
    df03 = synth.df02.with_name("embryo_metadata_df03.csv")
    sidecar = df03.with_suffix(".json")
    # what the earlier version left: the cell's text in df03, a sidecar without the check
    data = df03.read_bytes()
    line = next(ln for ln in data.split(b"\n") if snip.encode() in ln)
    broken = line.rsplit(b",", 4)[0] + b",0.1,0.2,0,5,0.4"
    df03.write_bytes(data.replace(line, broken))
    side = json.loads(sidecar.read_text())
    from morphseq_build06.freshness import file_state

    for entry in side["files"].values():
        entry["built_from"].pop("latent_rows_not_one_number", None)
    side["files"][df03.name].update(file_state(df03))
    sidecar.write_text(json.dumps(side))
    code, out, err = cli(*scenario.args(synth, "--min-coverage", "0", "--dry-run", "--json"))
    assert code == 0, err
    status = json.loads(out)["df03_status"]
    assert status["status"] == "out-of-date" and "not one number" in " ".join(status["reasons"])
    assert cli(*scenario.args(synth, "--min-coverage", "0", "--overwrite"))[0] == 0
    z = _check_df03_is_df02_plus_numbers(synth)
    assert z[snip] == [""] * len(z[snip])
    code, out, _ = cli(*scenario.args(synth, "--min-coverage", "0", "--dry-run", "--json"))
    assert json.loads(out)["df03_status"]["status"] == "current"


def test_a_df03_of_the_earlier_version_without_such_cells_stays_current(tmp_path, cli):
    synth = scenario.merge_root(tmp_path)
    assert cli(*scenario.args(synth))[0] == 0
    sidecar = synth.df02.with_name("embryo_metadata_df03.json")
    side = json.loads(sidecar.read_text())
    for entry in side["files"].values():
        entry["built_from"].pop("latent_rows_not_one_number")
    sidecar.write_text(json.dumps(side))
    code, out, err = cli(*scenario.args(synth, "--dry-run", "--json"))
    assert code == 0, err
    assert json.loads(out)["df03_status"]["status"] == "current"
