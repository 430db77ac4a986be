"""Focused unit tests: CSV text handling, keys, latent columns, atomic writes, locks."""

from __future__ import annotations

import io
import math
import os

import numpy as np
import pyarrow as pa
import pytest

from morphseq_build06 import keys
from morphseq_build06.csvtext import header_with, read_columns, read_text_table, write_rows
from morphseq_build06.df02 import parse_flags
from morphseq_build06.latents import embryo_id_of, select_z_columns
from morphseq_legacy.columns import column_names
from morphseq_stages.errors import UserError
from morphseq_stages.files import atomic_write, check_safe_id, exclusive_lock


def roundtrip(tmp_path, data: bytes, extra=None, names=()) -> bytes:
    p = tmp_path / "t.csv"
    p.write_bytes(data)
    t = read_text_table(p)
    buf = io.BytesIO()
    write_rows(buf, header_with(t.header, list(names)), t.records, t.newline, extra)
    return buf.getvalue()


@pytest.mark.parametrize("data", [
    b"a,b\n1,48.0\n2,\n",
    b'a,b,a\n1,"x, y",3\n2,"say ""hi""",4\n',
    b'a,b\r\n1,2\r\n3,"multi\r\nline"\r\n',
    b"a,b\n1,inf\n2,nan\n",
    "a,b\n1,émbryo\n".encode(),
])
def test_records_are_written_back_byte_for_byte(tmp_path, data):
    assert roundtrip(tmp_path, data) == data


def test_blank_lines_and_missing_final_newline(tmp_path):
    assert roundtrip(tmp_path, b"a,b\n1,2\n\n3,4") == b"a,b\n1,2\n3,4\n"


def test_appended_floats_round_trip_exactly(tmp_path):
    vals = np.array([[0.1, 1 / 3], [1e-300, -0.0], [np.nan, 123456789.123456789], [1e22, 5e-324]])
    out = roundtrip(tmp_path, b"a\n1\n2\n3\n4\n", vals, ["x", "y"]).decode().splitlines()
    assert out[0] == "a,x,y" and out[3].startswith("3,,")
    got = [[float(v) if v else np.nan for v in line.split(",")[1:]] for line in out[1:]]
    np.testing.assert_array_equal(np.array(got), vals)


def test_columns_are_strings_and_duplicates_keep_the_first(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"experiment_date,x,x\n20240626,1,2\n20240509_18ss,3,4\n")
    t = read_text_table(p)
    cols = read_columns(t, ["experiment_date", "x", "absent"])
    assert cols["experiment_date"].to_pylist() == ["20240626", "20240509_18ss"]
    assert cols["x"].to_pylist() == ["1", "3"] and "absent" not in cols
    assert t.names == ("experiment_date", "x", "x")


def test_key_rules():
    k, counts = keys.normalise(pa.array([" a_A01_e00_t0001.JPG ", "a_A01_e00_s0002", "a_A01_e00_t0003.png", "ok"]))
    assert k.to_pylist() == ["a_A01_e00_t0001", "a_A01_e00_t0002", "a_A01_e00_t0003", "ok"]
    assert counts == {"whitespace": 1, "extension": 2, "s_to_t": 1}
    assert keys.without_channel(pa.array(["x_A01_e01_BF_t0000", "x_A01_e01_ch00_t0001"])).to_pylist() == [
        "x_A01_e01_t0000", "x_A01_e01_t0001"]
    assert keys.experiment_of("20250612_30hpf_ctrl_atf6_C12_e01_t0000") == "20250612_30hpf_ctrl_atf6"
    assert keys.experiment_of("20231207_A01_e00_t0000") == "20231207"
    assert keys.experiment_of("20250612_30hpf_ctrl_atf6_A01_e01_BF_t0000") == "20250612_30hpf_ctrl_atf6"


def test_qc_flags():
    flags, unknown = parse_flags(pa.array(["True", "false", "1", "0", "t", "F", "yes", "no", "1.0", "", "maybe"]))
    assert flags.tolist() == [True, False, True, False, True, False, True, False, True, False, False]
    assert unknown == 1


def test_column_names_and_order():
    mu, sigma = column_names(100, 20)
    assert mu[19] == "z_mu_n_19" and mu[20] == "z_mu_b_20" and sigma[99] == "z_sigma_b_99"
    assert column_names(3)[0] == ("z_mu_00", "z_mu_01", "z_mu_02")
    names = ["snip_id", "z_mu_b_100", "z_mu_b_99", "z_mu_n_05", "z_sigma_b_99", "z_mu_02"]
    assert select_z_columns(names, "bio_nuisance") == ["z_mu_n_05", "z_mu_b_99", "z_mu_b_100"]
    assert select_z_columns(names, "flat") == ["z_mu_02"]
    assert select_z_columns(["z_mu_01"], "bio_nuisance") == ["z_mu_01"]  # falls back to flat
    assert select_z_columns(names, "auto", include_sigma=True)[-1] == "z_sigma_b_99"
    with pytest.raises(UserError):
        select_z_columns(names, "nope")
    assert embryo_id_of("20231207_A01_e00_t0012") == "20231207_A01_e00"


@pytest.mark.parametrize("bad", ["..", "a/b", "a\\b", "x/../y", "a\x00", "", "."])
def test_unsafe_ids(bad):
    with pytest.raises(UserError, match="unsafe"):
        check_safe_id(bad, "experiment")


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    p = tmp_path / "out.csv"
    p.write_bytes(b"old")

    def fail(fh):
        fh.write(b"partial")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        atomic_write(p, fail)
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.csv"]
    atomic_write(p, lambda fh: fh.write(b"new"))
    assert p.read_bytes() == b"new"


def test_lock_is_exclusive_and_released(tmp_path):
    lock = tmp_path / ".x.lock"
    with exclusive_lock(lock, "x"):
        with pytest.raises(UserError, match="another run is writing x"):
            with exclusive_lock(lock, "x"):
                pass
    assert not lock.exists()


def test_other_libraries_warnings_and_log_records_become_json_events(capsys):
    import json
    import logging
    import warnings

    from morphseq_stages import logs

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logs.configure("json")
        warnings.warn("careful", UserWarning, stacklevel=1)
    logging.getLogger("distributed.worker").warning("lost %s", "worker-1")
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert events[0]["event"] == "python.warning" and events[0]["message"] == "careful"
    assert events[1] == {**events[1], "event": "lost worker-1", "logger": "distributed.worker", "level": "warning"}


CELLS = ["0.5", "-1.25e-05", "3E+07", "007", "-0", "nan", "NaN", "inf", "-inf", "Infinity", "", " 1", "1 ",
         "+1", ".5", "5.", "1.2.3", "1e", "e5", "--1", "-", "1e999", "1" * 40, "0x10", "1_0", "abc", "\uff11",
         " inf", "-Infinity ", "\tnan", "0,5", "0.5\n", "\r1", "1;2", "0x1p4", "0.5\u00a0"]


def _cell_by_cell(cells: list[str]) -> tuple[bool, bool, bool, list[str]]:
    """(NaN row, Inf row, a cell that is not one number, the cells df03 would hold) of one
    latent row, each cell read on its own: a plain decimal or a NaN/Inf spelling, blanks
    around it aside (then written as its shortest text)."""
    import re

    from morphseq_build06.csvtext import float_text

    values, odd, text = [], False, []
    for c in cells:
        s = c.strip(" \t")
        number = re.fullmatch(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", s)
        if s == "" or number or re.fullmatch(r"[-+]?(?:nan|inf|infinity)", s, re.IGNORECASE):
            values.append(float(s) if s else math.nan)
            text.append(float_text(np.array([float(s)])).to_pylist()[0].decode() if number and s != c else c)
        else:
            odd = True
            text.append(c)
    nan = any(math.isnan(v) for v in values)
    return nan and not odd, any(math.isinf(v) for v in values) and not odd, odd, text


def test_latent_rows_are_classified_as_a_cell_by_cell_parse_would(tmp_path):
    from morphseq_build06.store import read_latent_rows

    rng = np.random.default_rng(3)
    rows = [["0.1", "2.5", "-3e-4"]] + [[c, "1.0", "2"] for c in CELLS] + \
        [list(rng.choice(CELLS, 3)) for _ in range(200)]
    path = tmp_path / "morph_latents_x.csv"
    quoted = [['"' + c + '"' if c != c.strip() or "," in c else c for c in r] for r in rows]
    path.write_text("snip_id,z_mu_00,z_mu_01,z_mu_02\n" + "".join(f"s{i},{','.join(r)}\n" for i, r in enumerate(quoted)),
                    newline="")
    cols = ("z_mu_00", "z_mu_01", "z_mu_02")
    got = read_latent_rows(path, cols, cols)
    want = [_cell_by_cell(r) for r in rows]
    assert got.nan_rows.tolist() == [w[0] for w in want]
    assert got.inf_rows.tolist() == [w[1] for w in want]
    assert got.odd_rows.tolist() == [w[2] for w in want]
    assert got.odd_rows.sum() > 0
    usable = ~got.unusable
    assert [ln for ln, u in zip(got.lines.to_pylist(), usable, strict=True) if u] == \
        [",".join(w[3]).encode() for w, u in zip(want, usable, strict=True) if u]  # the text as written, or shortest
    assert not got.nan_rows[0] and not got.inf_rows[0]


def test_a_file_written_through_the_hashing_writer_is_not_read_to_hash_it(tmp_path, monkeypatch):
    import hashlib

    from morphseq_stages import files

    path = tmp_path / "out.bin"
    chunks = [os.urandom(1 << 16) for _ in range(5)]
    mutable = bytearray(b"reused buffer")
    atomic_write(path, lambda fh: [fh.write(memoryview(c).toreadonly()) for c in chunks] + [fh.write(mutable)])
    want = hashlib.sha256(b"".join(chunks) + bytes(mutable)).hexdigest()
    monkeypatch.setattr(files.hashing, "open", lambda *a, **k: pytest.fail("the file was read to hash it"), raising=False)
    assert files.sha256_file(path) == want
    monkeypatch.undo()
    # a writer that seeks gets no remembered digest: the file is hashed from disk
    atomic_write(path, lambda fh: (fh.write(b"abcdef"), fh.seek(0), fh.write(b"X")))
    assert files.sha256_file(path) == hashlib.sha256(b"Xbcdef").hexdigest()


def test_a_file_is_hashed_from_the_bytes_read_unless_it_changed_meanwhile(tmp_path, monkeypatch):
    import hashlib

    from morphseq_build06.inputs import read_file
    from morphseq_stages import files

    path = tmp_path / "df02.csv"
    path.write_bytes(b"snip_id\na\n")
    data, _ = read_file(path, "df02", hash_now=True)
    with monkeypatch.context() as m:
        m.setattr(files.hashing, "open", lambda *a, **k: pytest.fail("the file was read again to hash it"), raising=False)
        assert files.sha256_file(path) == hashlib.sha256(data).hexdigest()
    st = os.stat(path)
    path.write_bytes(b"snip_id\nb\nc\n")  # changed after it was read: those bytes say nothing of it now
    files.remember_sha256(path, st, data)
    assert files.sha256_file(path) == hashlib.sha256(b"snip_id\nb\nc\n").hexdigest()
