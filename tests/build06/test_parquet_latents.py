"""The lab's Parquet latent contract: --latent-format parquet, mixed stores, --latents-root."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from test_build06_merge import df03_path, latents_for, make_root, store

from conftest import load_json_lines

pq = pytest.importorskip("pyarrow.parquet")

MODEL = "tiny"


def csv_to_parquet(csv_path, out, model="20241107_ds_sweep01_optimum", flat=False):
    """The CSV latent file's rows in the contract's layout (values exactly as the CSV holds them)."""
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(csv_path, convert_options=pacsv.ConvertOptions(column_types={"snip_id": pa.string()}))
    z = [c for c in table.column_names if c.startswith("z_")]
    cols = {"snip_id": table.column("snip_id")}
    for c in z:
        name = c.replace("_n_", "_").replace("_b_", "_") if flat else c
        cols[name] = table.column(c).cast(pa.float64())
    cols["embedding_model_name"] = pa.array([model] * table.num_rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), out)
    return out


def test_df03_from_a_parquet_store_equals_the_csv_stores(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data, skip=("20231207_A03_e00_t0000",))
    code, _, err = cli("build06", "--root", root, "--data-root", data)
    assert code == 0, err
    from_csv = df03_path(root).read_bytes()
    for csv in sorted(store(data).glob("morph_latents_*.csv")):
        csv_to_parquet(csv, csv.with_suffix(".parquet"))
        csv.unlink()
    code, out, err = cli("build06", "--root", root, "--data-root", data, "--overwrite", "--json", "--dry-run")
    assert code == 0, err
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--overwrite")
    assert code == 0, err
    assert df03_path(root).read_bytes() == from_csv


def test_a_store_holding_both_formats_says_which_it_reads(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    csv = store(data) / "morph_latents_20231207.csv"
    csv_to_parquet(csv, csv.with_suffix(".parquet"))
    code, out, err = cli("build06", "--root", root, "--data-root", data, "--dry-run")
    assert code == 0, err
    assert "20231207 reads morph_latents_20231207.csv: the store also holds morph_latents_20231207.parquet" in out
    code, out, err = cli("build06", "--root", root, "--data-root", data, "--dry-run", "--latent-format", "parquet")
    assert "20231207 reads morph_latents_20231207.parquet" in out


@pytest.mark.parametrize("breach, message", [
    (lambda t: t.drop_columns(["embedding_model_name"]), "has no embedding_model_name column"),
    (lambda t: t.set_column(0, "snip_id", pa.array([t.column("snip_id")[0].as_py()] * t.num_rows)), "appears more than once"),
    (lambda t: t.append_column("z_mu_extra", pa.array([1.0] * t.num_rows)), "'z_mu_extra' maps to no latent dimension"),
    (lambda t: t.set_column(1, t.column_names[1], pa.array([None] * t.num_rows, pa.float64())), "empty value"),
])
def test_the_contract_is_checked_with_one_line_naming_the_file(tmp_path, cli, breach, message):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    csv = store(data) / "morph_latents_20231207.csv"
    path = csv_to_parquet(csv, csv.with_suffix(".parquet"))
    csv.unlink()
    pq.write_table(breach(pq.read_table(path)), path)
    code, _, err = cli("build06", "--root", root, "--data-root", data)
    assert code == 2 and message in err and str(path) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def lab_root(tmp_path, data, experiment):
    return tmp_path / "lab" / "feature_extraction" / experiment / "latent_embeddings"


def test_latents_root_reads_merged_files_and_validated_shards(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    code, _, err = cli("build06", "--root", root, "--data-root", data)
    assert code == 0, err
    from_csv = df03_path(root).read_bytes()
    out_root = tmp_path / "lab"
    csvs = {p.stem.removeprefix("morph_latents_"): p for p in store(data).glob("morph_latents_*.csv")}
    # 20231207: a merged file (flat names, as the lab's loader writes them), validated
    merged = csv_to_parquet(csvs["20231207"], lab_root(tmp_path, data, "20231207") / "20231207_latents.parquet", flat=True)
    merged.with_name(merged.name + ".validated").write_text("ok\n")
    # 20240509_18ss: one validated shard per well, and one shard without its sentinel
    import pyarrow.csv as pacsv

    rows = pacsv.read_csv(csvs["20240509_18ss"], convert_options=pacsv.ConvertOptions(column_types={"snip_id": pa.string()}))
    wells = sorted({s.split("_")[2] for s in rows.column("snip_id").to_pylist()})
    shards_dir = lab_root(tmp_path, data, "20240509_18ss") / "per_well"
    for i, well in enumerate(wells):
        one = tmp_path / f"{well}.csv"
        mask = pa.array([s.split("_")[2] == well for s in rows.column("snip_id").to_pylist()])
        pacsv.write_csv(rows.filter(mask), one)
        shard = csv_to_parquet(one, shards_dir / f"20240509_18ss_{well}" / f"20240509_18ss_{well}_latents.parquet")
        if i < len(wells) - 1:
            shard.with_name(shard.name + ".validated").write_text("ok\n")
    skipped_well = wells[-1]
    csvs["20231207"].unlink()
    csvs["20240509_18ss"].unlink()  # 20231208 is in neither layout there: read from the store
    code, out, err = cli("build06", "--root", root, "--data-root", data, "--latents-root", out_root, "--overwrite",
                         "--log-format", "json")
    assert code == 0, err
    events = load_json_lines(err)
    warned = [e["message"] for e in events if e.get("event") == "build06.warning"]
    assert any(f"20240509_18ss_{skipped_well}_latents.parquet" in w and "sentinel" in w for w in warned)
    csv_rows = from_csv.decode().splitlines()
    new_rows = df03_path(root).read_text().splitlines()
    assert new_rows[0] == csv_rows[0]  # flat names mapped to the dimensions the CSV store names
    skipped = [i for i, r in enumerate(csv_rows) if f"20240509_18ss_{skipped_well}_" in r]
    assert skipped and all(new_rows[i] != csv_rows[i] and new_rows[i].endswith(",,,") for i in skipped)
    assert all(new_rows[i] == csv_rows[i] for i in range(len(csv_rows)) if i not in skipped)


def test_generation_writes_the_contract_and_the_same_df03(tmp_path, cli):
    pytest.importorskip("torch")
    import importlib.util

    from morphseq_build06.testing import make_pipeline_root
    from morphseq_legacy.testing import make_legacy_model

    report = ["--report"] if importlib.util.find_spec("plotly") else []
    runs = {}
    for fmt in ("csv", "parquet"):
        s = make_pipeline_root(tmp_path / fmt, {"20231207": 5, "20240509_18ss": 4}, seed=3, size=(64, 144))
        make_legacy_model(s.data_root / "models" / "legacy" / MODEL, latent_dim=6, n_out_channels=2, seed=1)
        code, out, err = cli("build06", "--root", s.root, "--data-root", s.data_root, "--model-name", MODEL,
                             "--generate-missing-latents", "--latent-format", fmt, "--device", "cpu", *report)
        assert code == 0, err
        runs[fmt] = s
    latents = runs["parquet"].latent_dir(MODEL)
    assert not list(latents.glob("*.csv"))
    table = pq.read_table(latents / "morph_latents_20231207.parquet")
    assert table.column_names[0] == "snip_id" and table.column_names[-1] == "embedding_model_name"
    assert table.schema.field("snip_id").type == pa.string()
    assert set(table.column("embedding_model_name").to_pylist()) == {MODEL}
    assert len(set(table.column("snip_id").to_pylist())) == table.num_rows == 5
    assert [c for c in table.column_names if c.startswith("z_sigma_")]
    assert all(np.isfinite(table.column(c).to_numpy()).all() for c in table.column_names if c.startswith("z_"))
    if report:
        page = df03_path(runs["parquet"].root).with_name("embryo_metadata_df03_report.html").read_text()
        assert page.count("<b>(generated this run)</b>") == 2 and "20231207 <b>(generated" in page
    df03 = {fmt: df03_path(s.root).read_bytes() for fmt, s in runs.items()}
    assert df03["csv"] == df03["parquet"]


def test_overwrite_latents_re_embeds_into_the_asked_format(tmp_path, cli):
    pytest.importorskip("torch")
    from morphseq_build06.testing import make_pipeline_root
    from morphseq_legacy.testing import make_legacy_model

    s = make_pipeline_root(tmp_path, {"20231207": 3}, seed=3, size=(64, 144))
    make_legacy_model(s.data_root / "models" / "legacy" / MODEL, latent_dim=4, n_out_channels=2, seed=1)
    base = ("build06", "--root", s.root, "--data-root", s.data_root, "--model-name", MODEL, "--device", "cpu")
    code, _, err = cli(*base, "--generate-missing-latents")
    assert code == 0, err
    csv = s.latent_dir(MODEL) / "morph_latents_20231207.csv"
    before = csv.read_bytes()
    code, out, err = cli(*base, "--overwrite-latents", "--latent-format", "parquet", "--dry-run")
    assert code == 0 and "re-embedded into morph_latents_20231207.parquet" in out, out + err
    code, _, err = cli(*base, "--overwrite-latents", "--latent-format", "parquet", "--overwrite")
    assert code == 0, err
    assert csv.read_bytes() == before  # the other format's file is left as it was
    table = pq.read_table(csv.with_suffix(".parquet"))
    assert table.num_rows == 3 and table.column_names[-1] == "embedding_model_name"


def test_a_parquet_file_of_another_model_is_a_warning(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    csv = store(data) / "morph_latents_20231207.csv"
    csv_to_parquet(csv, csv.with_suffix(".parquet"), model="another_model")
    csv.unlink()
    code, out, err = cli("build06", "--root", root, "--data-root", data, "--dry-run", "--json")
    warnings = [w for w in json.loads(out)["warnings"] if "morph_latents_20231207.parquet" in w]
    assert len(warnings) == 1 and "names another model, 'another_model', in its rows, not this run's " \
        "'20241107_ds_sweep01_optimum'" in warnings[0] and "not merged" in warnings[0]
