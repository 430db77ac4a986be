"""Build06 through the CLI on pipeline roots with existing latent files (no generation)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from morphseq_build06.latents import latent_file_name
from morphseq_build06.testing import make_pipeline_root, write_latent_file
from morphseq_legacy.columns import column_names

from conftest import load_json_lines, read_rows, run_without_torch, tree_digest, upstream_file

MODEL = "20241107_ds_sweep01_optimum"


def make_root(tmp_path: Path, source: str = "morphseq_metadata_sample.csv") -> tuple[Path, Path, Path]:
    root, data = tmp_path / "root", tmp_path / "data"
    df02 = root / "metadata" / "combined_metadata_files" / "embryo_metadata_df02.csv"
    df02.parent.mkdir(parents=True)
    shutil.copy(upstream_file(source), df02)
    data.mkdir()
    return root, data, df02


def store(data: Path) -> Path:
    return data / "analysis" / "latent_embeddings" / "legacy" / MODEL


def latents_for(df02: Path, data: Path, experiments=None, *, dim=8, nuisance=2, skip=()) -> dict[str, dict[str, np.ndarray]]:
    header, rows = read_rows(df02)
    si, ei = header.index("snip_id"), header.index("experiment_date")
    by_exp: dict[str, list[str]] = {}
    for r in rows:
        by_exp.setdefault(r[ei], []).append(r[si])
    values = {}
    for n, (exp, ids) in enumerate(by_exp.items()):
        if experiments is not None and exp not in experiments:
            continue
        ids = [s for s in ids if s not in skip]
        path, _ = write_latent_file(store(data), exp, ids, latent_dim=dim, nuisance=nuisance, seed=n)
        lheader, lrows = read_rows(path)  # the values as the file holds them, read as float64
        mu_at = [i for i, c in enumerate(lheader) if c.startswith("z_mu_")]
        values[exp] = {r[2]: np.array([float(r[i]) for i in mu_at]) for r in lrows}
    return values


def df03_path(root: Path) -> Path:
    return root / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.csv"


def test_merge_keeps_every_df02_value_and_adds_exact_latents(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    values = latents_for(df02, data)
    code, out, err = cli("build06", "--root", root, "--data-root", data, "--log-format", "json")
    assert code == 0, err
    df03 = df03_path(root)
    src_lines = df02.read_bytes().splitlines()
    out_lines = df03.read_bytes().splitlines()
    assert len(out_lines) == len(src_lines)
    mu_cols = list(column_names(8, 2)[0])
    assert out_lines[0] == src_lines[0] + b"," + ",".join(mu_cols).encode()
    header, rows = read_rows(df03)
    si = header.index("snip_id")
    ei = header.index("experiment_date")
    for src, line, row in zip(src_lines[1:], out_lines[1:], rows, strict=True):
        assert line.startswith(src + b",")  # df02's bytes, untouched (48.0, inf, empty cells)
        got = np.array([float(v) for v in row[-8:]])
        np.testing.assert_array_equal(got, values[row[ei]][row[si]])
    assert "20240509_18ss" in {r[ei] for r in rows}  # mixed experiment_date column stays text
    assert all(json.loads(line) for line in err.splitlines())  # every log line is JSON


def test_duplicate_column_names_and_qc_filter(tmp_path, cli):
    root, data, df02 = make_root(tmp_path, "20250612_30hpf_ctrl_atf6_embryo_metadata.csv")
    latents_for(df02, data)
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--qc-filter", "--log-format", "json")
    assert code == 0, err
    header, rows = read_rows(df03_path(root))
    assert header.count("surface_area_um") == 2
    src_header, src_rows = read_rows(df02)
    flag = src_header.index("use_embryo_flag")
    assert len(rows) == sum(r[flag] == "True" for r in src_rows)


def test_dry_run_writes_nothing_and_reports_the_plan(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data, experiments={"20231207"})
    before = tree_digest(tmp_path)
    code, out, err = cli("build06", "--root", root, "--data-root", data, "--dry-run", "--json",
                         "--export-analysis-copies", "--log-format", "json")
    assert code == 0, err
    assert tree_digest(tmp_path) == before
    plan = json.loads(out)
    actions = {e["experiment"]: (e["action"], e["reason"]) for e in plan["experiments"]}
    assert actions["20231207"] == ("read", "complete")
    assert actions["20231208"] == ("missing", "no latent file")
    assert {o["kind"] for o in plan["outputs"]} >= {"df03", "sidecar", "analysis"}
    code, out, _ = cli("build06", "--root", root, "--data-root", data, "--dry-run", "--log-format", "json")
    assert code == 0 and "20231208" in out and "missing" in out
    assert tree_digest(tmp_path) == before


def test_rerun_without_overwrite_changes_nothing(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    args = ["build06", "--root", root, "--data-root", data, "--export-analysis-copies", "--log-format", "json"]
    assert cli(*args)[0] == 0
    before = tree_digest(tmp_path)
    code, out, err = cli(*args)
    assert code == 0
    assert tree_digest(tmp_path) == before
    skipped = [e for e in load_json_lines(err) if e["event"] == "write.skipped"]
    assert len(skipped) >= 5 and all("path" in e for e in skipped)
    assert {e["reason"] for e in skipped if e["what"] in ("df03", "analysis")} == {"current"}
    # --overwrite leaves current outputs alone, and replaces one edited by hand
    code, _, err = cli(*args, "--overwrite")
    assert code == 0 and tree_digest(tmp_path) == before
    df03 = df03_path(root)
    df03.write_bytes(df03.read_bytes() + b"hand,edit\n")
    code, out, err = cli(*args)
    assert code == 0 and df03.read_bytes().endswith(b"hand,edit\n")
    warning = next(ln for ln in out.splitlines() if ln.startswith("warning: df03"))
    assert "not written by this tool or edited since" in warning and "pass --overwrite" in warning
    code, _, err = cli(*args, "--overwrite")
    assert code == 0 and any(e["event"] == "write.staged" and e.get("what") == "df03" for e in load_json_lines(err))
    assert not df03.read_bytes().endswith(b"hand,edit\n")


def test_partial_merge_warns_and_lists_unembedded_rows(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data, experiments={"20231207", "20231208"}, skip={"20231208_B12_e00_t0000"})
    code, out, err = cli("build06", "--root", root, "--data-root", data, "--log-format", "json")
    assert code == 0
    events = load_json_lines(err)
    assert any(e["event"] == "latents.missing" and e["experiment"] == "20240509_18ss" for e in events)
    warn = [e["message"] for e in events if e["event"] == "build06.warning"]
    assert any("20240509_18ss" in w and "--generate-missing-latents" in w for w in warn)
    report = df03_path(root).with_name("embryo_metadata_df03_unembedded.csv")
    header, rows = read_rows(report)
    assert header == ["snip_id", "experiment", "reason"]
    reasons = {r[0]: r[2] for r in rows}
    snips = root / "training_data" / "bf_embryo_snips"
    assert reasons["20231208_B12_e00_t0000"] == f"no image at {snips / '20231208' / '20231208_B12_e00_t0000.jpg'}"
    assert reasons["20240509_18ss_A01_e00_t0000"].startswith("no image at ")
    assert len(rows) == 5
    sidecar = json.loads(df03_path(root).with_suffix(".json").read_text())
    assert sidecar["coverage"]["overall"] == pytest.approx(10 / 15)
    assert sidecar["coverage"]["per_experiment"]["20231208"]["coverage"] == pytest.approx(3 / 4)
    # --strict turns the warnings into a failure before anything is written
    shutil.rmtree(root / "metadata" / "combined_metadata_files")
    df02.parent.mkdir(parents=True)
    shutil.copy(upstream_file("morphseq_metadata_sample.csv"), df02)
    before = tree_digest(tmp_path)
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--strict", "--log-format", "json")
    last = err.splitlines()[-1]
    assert code == 3 and "no latent file for 20240509_18ss" in last and "--strict" in last
    assert "nothing written" in last
    assert tree_digest(tmp_path) == before


def test_sidecar_manifest_free_merge_records_inputs(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    assert cli("build06", "--root", root, "--data-root", data, "--log-format", "json")[0] == 0
    side = json.loads(df03_path(root).with_suffix(".json").read_text())
    import hashlib

    paths = {i["path"]: i["sha256"] for i in side["inputs"]}
    assert paths[str(df02)] == hashlib.sha256(df02.read_bytes()).hexdigest()
    assert len(paths) == 4
    assert side["model"]["name"] == MODEL
    assert side["counts"]["df02_rows"] == 15 and side["coverage"]["overall"] == 1.0
    assert side["versions"]["morphseq-stages"]
    assert side["embedder"]["name"] == "legacy" and side["embedder"]["distribution"] == "morphseq-stages"
    assert side["options"]["z_schema"] == "auto" and side["timings_s"]["total"] > 0


def test_key_normalisation_duplicates_and_non_finite(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    mu_cols, _ = column_names(2, None)
    folder = store(data)
    folder.mkdir(parents=True)
    (folder / latent_file_name("20231207")).write_text(
        "snip_id,z_mu_00,z_mu_01\n"
        " 20231207_A01_e00_t0000.jpg ,1.5,2.5\n"      # whitespace + extension
        "20231207_A02_e00_s0000,3,4\n"               # _s for _t
        "20231207_A03_e00_BF_t0000,5,6\n"            # channel token
        "20231207_A04_e00_t0000,7,8\n"
        "20231207_A04_e00_t0000,7,8\n"               # identical duplicate
        "20231207_D01_e00_t0000,1,1\n"
        "20231207_D01_e00_t0000,2,2\n"               # conflicting duplicate
        "20231207_E02_e00_t0000,nan,1\n"             # non-finite
        "20231207_H01_e00_t0000,inf,1\n"
    )
    code, out, err = cli("build06", "--root", root, "--data-root", data, "--experiments", "20231207",
                         "--json", "--log-format", "json")
    assert code == 0, err
    header, rows = read_rows(df03_path(root))
    got = {r[header.index("snip_id")]: r[-2:] for r in rows}
    assert got["20231207_A01_e00_t0000"] == ["1.5", "2.5"]
    assert got["20231207_A02_e00_t0000"] == ["3", "4"]
    assert got["20231207_A03_e00_t0000"] == ["5", "6"]
    assert got["20231207_D01_e00_t0000"] == ["1", "1"]  # first kept
    assert got["20231207_E02_e00_t0000"] == ["", ""]
    side = json.loads(df03_path(root).with_suffix(".json").read_text())
    assert side["key_rules"]["latents"] == {"whitespace": 1, "extension": 1, "s_to_t": 1}
    assert side["key_rules"]["df02"]["channel_token"] == 1
    assert side["duplicates"]["identical_dropped"] == 1
    assert side["duplicates"]["conflicting_keys"] == 1
    assert side["hygiene"]["rows_with_nan"] == 1 and side["hygiene"]["rows_with_inf"] == 1
    _, unemb = read_rows(df03_path(root).with_name("embryo_metadata_df03_unembedded.csv"))
    reasons = {r[0]: r[2] for r in unemb}
    assert reasons["20231207_E02_e00_t0000"] == "non-finite latent values"
    assert reasons["20231208_A01_e00_t0000"].startswith("no image at ")
    # conflicting duplicates are an error with --strict
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--experiments", "20231207",
                       "--strict", "--overwrite", "--min-coverage", "0", "--log-format", "json")
    assert code != 0


def test_z_schema_policies(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    folder = store(data)
    folder.mkdir(parents=True)
    (folder / latent_file_name("20231207")).write_text(
        "snip_id,z_mu_b_100,z_mu_01,z_mu_n_00,z_mu_b_99,z_sigma_01\n20231207_A01_e00_t0000,1,2,3,4,5\n")
    expected = {"auto": ["z_mu_n_00", "z_mu_01", "z_mu_b_99", "z_mu_b_100"], "flat": ["z_mu_01"],
                "bio_nuisance": ["z_mu_n_00", "z_mu_b_99", "z_mu_b_100"]}
    for schema, cols in expected.items():
        code, _, err = cli("build06", "--root", root, "--data-root", data, "--experiments", "20231207",
                           "--z-schema", schema, "--overwrite", "--log-format", "json")
        assert code == 0, err
        header, _ = read_rows(df03_path(root))
        assert header[-len(cols):] == cols and "z_sigma_01" not in header
    cli("build06", "--root", root, "--data-root", data, "--experiments", "20231207", "--include-sigma",
        "--overwrite", "--log-format", "json")
    assert read_rows(df03_path(root))[0][-1] == "z_sigma_01"


def test_training_join_and_analysis_copies(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    values = latents_for(df02, data)
    train = root / "training_data" / "run1" / "embryo_metadata_df_train.csv"
    train.parent.mkdir(parents=True)
    train.write_text("snip_id,train_cat\n20231207_A02_e00_t0000,test\n20240509_18ss_B01_e00_t0000,train\nnot_a_snip,x\n")
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--train-name", "run1",
                       "--export-analysis-copies", "--log-format", "json")
    assert code == 0, err
    header, rows = read_rows(train.with_name("embryo_metadata_with_embeddings.csv"))
    assert header[:2] == ["snip_id", "train_cat"] and len(rows) == 3
    assert [float(v) for v in rows[0][2:]] == list(values["20231207"]["20231207_A02_e00_t0000"])
    assert rows[2][2:] == [""] * 8
    copies = data / "metadata" / "metadata_n_embeddings" / MODEL
    assert sorted(p.name for p in copies.iterdir()) == ["df03_20231207.csv", "df03_20231208.csv",
                                                         "df03_20240509_18ss.csv", "df03_copies.json"]
    full = df03_path(root).read_bytes().splitlines()
    part = (copies / "df03_20240509_18ss.csv").read_bytes().splitlines()
    assert part[0] == full[0] and part[1:] == [ln for ln in full[1:] if b",20240509_18ss," in ln]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiments", "../etc"], "unsafe experiment"),
        (["--experiments", "a/b"], "unsafe experiment"),
        (["--z-schema", "wide"], "unknown --z-schema"),
        (["--min-coverage", "2"], "--min-coverage"),
        (["--batch-size", "0"], "--batch-size"),
        (["--embedder", "nope"], "unknown embedder 'nope'"),
    ],
)
def test_bad_options_are_one_clear_line(tmp_path, cli, args, message):
    root, data, df02 = make_root(tmp_path)
    before = tree_digest(tmp_path)
    code, out, err = cli("build06", "--root", root, "--data-root", data, *args, "--log-format", "json")
    assert code != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("morphseq-stages: error:") and message in last
    assert "Traceback" not in err
    assert tree_digest(tmp_path) == before


def _latents_without_z(root: Path, data: Path, df02: Path) -> None:
    folder = store(data)
    folder.mkdir(parents=True)
    (folder / latent_file_name("20231207")).write_text("snip_id,foo\n20231207_A01_e00_t0000,1\n")


#: case -> (what to spoil in a fresh pipeline root, extra arguments, what the error line says)
BAD_INPUTS = {
    "unsafe experiment id": (
        lambda root, data, df02: df02.write_bytes(df02.read_bytes().replace(b",20231207,", b",../20231207,", 1)),
        (), "unsafe experiment"),
    "df02 without snip_id": (lambda root, data, df02: df02.write_bytes(b"a,b\n1,2\n"), (), "has no snip_id column"),
    "ragged df02": (
        lambda root, data, df02: df02.write_bytes(b"snip_id,experiment_date\nx_A01_e00_t0000,x,extra,fields\n"),
        (), "cannot parse"),
    "no df02": (lambda root, data, df02: df02.unlink(), (), "df02 not found"),
    "latent file without z columns": (_latents_without_z, (), "has no z columns"),
    "a file where an output folder goes": (
        lambda root, data, df02: (store(data).mkdir(parents=True), (data / "metadata").write_text("not a folder")),
        ("--export-analysis-copies",), "is a file, not a folder"),
}


def _one_clear_line(code: int, err: str, needle: str) -> None:
    assert code != 0
    last = err.strip().splitlines()[-1]
    assert needle in last and "Traceback" not in err, err


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_are_one_clear_line(tmp_path, cli, case):
    spoil, extra, needle = BAD_INPUTS[case]
    root, data, df02 = make_root(tmp_path)
    spoil(root, data, df02)
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--log-format", "json", *extra)
    _one_clear_line(code, err, needle)
    assert not df03_path(root).exists()


def test_no_data_root_is_one_clear_line(tmp_path, cli):
    root, _, _ = make_root(tmp_path)
    code, _, err = cli("build06", "--root", root)
    _one_clear_line(code, err, "MORPHSEQ_DATA_ROOT")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder_is_one_clear_line(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    orig = df02.read_bytes()
    os.chmod(df02.parent, 0o555)
    try:
        code, _, err = cli("build06", "--root", root, "--data-root", data, "--log-format", "json")
    finally:
        os.chmod(df02.parent, 0o755)
    _one_clear_line(code, err, "not writable")
    assert df02.read_bytes() == orig and not df03_path(root).exists()


def test_lock_stops_a_concurrent_run(tmp_path, cli):
    import fcntl

    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    lock = df02.parent / ".embryo_metadata_df03.csv.lock"
    lock.write_text(json.dumps({"pid": os.getppid(), "host": __import__("socket").gethostname(), "since": "now"}))
    with open(lock) as held:  # another run holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        code, _, err = cli("build06", "--root", root, "--data-root", data, "--log-format", "json")
    assert code == 75 and "busy, retry: another run is writing" in err.splitlines()[-1]
    assert not df03_path(root).exists() and lock.exists()
    # a lock left by a process that is gone is taken over
    lock.write_text(json.dumps({"pid": 2**22 + 12345, "host": __import__("socket").gethostname(), "since": "x"}))
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--log-format", "json")
    assert code == 0
    assert {"event": "lock.recovered", "old_pid": 2**22 + 12345}.items() <= next(
        e for e in load_json_lines(err) if e["event"] == "lock.recovered").items()
    assert df03_path(root).exists() and not lock.exists()


def test_interrupted_write_leaves_previous_output(tmp_path, cli, monkeypatch):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    assert cli("build06", "--root", root, "--data-root", data, "--log-format", "json")[0] == 0
    exp = next(iter(latents_for(df02, data)))  # new values for one experiment: df03 is out of date
    write_latent_file(store(data), exp, sorted(latents_for(df02, data)[exp]), latent_dim=8, seed=77)
    before = tree_digest(tmp_path)
    from morphseq_build06 import export

    interrupted = []

    def half_then_interrupt(fh, header, *args, **kwargs):  # df03 is the only table this run writes
        fh.write(header + b"\nhalf a row")  # part of the new df03 is on disk, as a temporary file
        fh.flush()
        interrupted.append(header)
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "write_rows", half_then_interrupt)
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--overwrite", "--log-format", "json")
    assert code == 130 and len(interrupted) == 1 and b"z_mu_" in interrupted[0]
    assert tree_digest(tmp_path) == before  # df03 and its listing as they were, no temporary file left


def test_merge_only_run_imports_no_torch(tmp_path):
    synth = make_pipeline_root(tmp_path, {"20231207": 2}, images=False)
    write_latent_file(synth.latent_dir("20241107_ds_sweep01_optimum"), "20231207", synth.snips["20231207"])
    args = ["build06", "--root", str(synth.root), "--data-root", str(synth.data_root), "--log-format", "json"]
    run_without_torch(f"assert main({args!r}) == 0")
