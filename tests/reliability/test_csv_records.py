"""One record model: the splitter that keeps df02's bytes and the parser that reads its
columns agree with pandas and the csv module on where each record ends."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from morphseq_build06.csvtext import read_columns, read_text_table
from morphseq_stages.errors import UserError

BIG = "x" * (10 << 20)
csv.field_size_limit(1 << 30)

CASES = {
    "lf header, crlf rows": b"snip_id,note\na_A01_e00_t0000,ok\r\na_A01_e00_t0001,fine\r\n",
    "crlf everywhere, multi-line value": b'snip_id,note\r\na_A01_e00_t0000,"two\r\nlines"\r\na_A01_e00_t0001,x\r\n',
    "lone cr line ends": b"snip_id,note\ra_A01_e00_t0000,ok\ra_A01_e00_t0001,x\r",
    "stray quotes beside a quoted multi-line value": (
        b'snip_id,a,b\na_A01_e00_t0000,a"b,"multi\nline"\na_A01_e00_t0001,c"d,"x"\na_A01_e00_t0002,e,f\n'),
    "5 inch note": b'snip_id,note\na_A01_e00_t0000,5" long\na_A01_e00_t0001,3" wide\na_A01_e00_t0002,x\n',
    "odd stray quote then a quoted value": b'snip_id,n,m\na_A01_e00_t0000,"a,b",1"\na_A01_e00_t0001,"c\nd",2\n',
    "escaped quotes and commas": b'snip_id,note\na_A01_e00_t0000,"say ""hi"", then\n""go"""\na_A01_e00_t0001,""\n',
    "quoted value continued unquoted": b'snip_id,note\na_A01_e00_t0000,"ab"c"d\na_A01_e00_t0001,x\n',
    "blank lines and no final newline": b"snip_id,note\n\na_A01_e00_t0000,1\n\n\na_A01_e00_t0001,2",
    "bom and quoted header": b'\xef\xbb\xbf"snip_id","note"\n"a_A01_e00_t0000","x"\n',
    "cr inside a quoted value": b'snip_id,note\na_A01_e00_t0000,"a\rb"\na_A01_e00_t0001,c\n',
    "ten megabyte field": f'snip_id,note\na_A01_e00_t0000,"{BIG}"\na_A01_e00_t0001,{BIG[:5]}\n'.encode(),
}


def _csv_module_rows(data: bytes) -> list[list[str]]:
    text = data.decode("utf-8-sig")
    return [r for r in csv.reader(io.StringIO(text, newline="")) if r]


@pytest.mark.parametrize("name", list(CASES))
def test_records_agree_with_pandas_and_the_csv_module(tmp_path, name):
    data = CASES[name]
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    table = read_text_table(path)
    ours = [next(csv.reader([r.decode("utf-8-sig")])) for r in [table.header, *table.records.to_pylist()]]
    assert ours == _csv_module_rows(data)
    frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    assert [list(frame.columns), *frame.values.tolist()] == ours
    assert read_columns(table, ["snip_id"])["snip_id"].to_pylist() == frame["snip_id"].tolist()


def test_an_unclosed_quote_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b'snip_id,note\na_A01_e00_t0000,"never closed\na_A01_e00_t0001,x\n')
    with pytest.raises(UserError, match=r"t\.csv.*line 2 is never closed"):
        read_text_table(path)


@pytest.mark.parametrize("name", ["lf header, crlf rows", "stray quotes beside a quoted multi-line value",
                                  "5 inch note", "lone cr line ends", "ten megabyte field"])
def test_df03_from_such_a_df02_reads_back_with_every_row_embedded(tmp_path, cli, name):
    from morphseq_build06.testing import write_latent_file

    data = CASES[name].replace(b"snip_id,", b"experiment_date,snip_id,", 1)
    for i in range(3):  # every row gets its experiment before its snip id
        data = data.replace(f"a_A01_e00_t000{i}".encode(), f"a,a_A01_e00_t000{i}".encode())
    root, store = tmp_path / "root", tmp_path / "data" / "analysis" / "latent_embeddings" / "legacy" / "m"
    df02 = root / "metadata" / "combined_metadata_files" / "embryo_metadata_df02.csv"
    df02.parent.mkdir(parents=True)
    df02.write_bytes(data)
    before = pd.read_csv(df02, dtype=str, keep_default_na=False)
    _, mu = write_latent_file(store, "a", before["snip_id"].tolist(), latent_dim=3, nuisance=None)
    code, _, err = cli("build06", "--root", root, "--data-root", tmp_path / "data", "--model-name", "m")
    assert code == 0, err
    df03 = pd.read_csv(df02.with_name("embryo_metadata_df03.csv"), dtype=str, keep_default_na=False)
    assert df03[list(before.columns)].equals(before)
    np.testing.assert_array_equal(df03[["z_mu_00", "z_mu_01", "z_mu_02"]].to_numpy().astype(np.float32), mu)
