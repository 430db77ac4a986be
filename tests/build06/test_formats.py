"""Typed outputs (--formats parquet,h5ad), the typing rule, and the --report page."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_build06_merge import df03_path, latents_for, make_root, store

from morphseq_build06.csvtext import read_text_table
from morphseq_build06.testing import write_latent_file
from morphseq_build06.typed import kind_of, type_table, unique_names

pq = pytest.importorskip("pyarrow.parquet")


def run_formats(tmp_path, cli, *extra, source="morphseq_metadata_sample.csv", skip=("20231207_A03_e00_t0000",)):
    pytest.importorskip("anndata", reason="the h5ad output needs the [anndata] extra")
    root, data, df02 = make_root(tmp_path, source)
    values = latents_for(df02, data, skip=skip)
    code, out, err = cli("build06", "--root", root, "--data-root", data, "--formats", "csv,parquet,h5ad", *extra)
    assert code == 0, err
    return root, data, values, out


def test_parquet_holds_df03_typed_with_equal_values(tmp_path, cli):
    root, _, values, _ = run_formats(tmp_path, cli, "--export-analysis-copies")
    table = pq.read_table(df03_path(root).with_suffix(".parquet"))
    for name in ("snip_id", "embryo_id", "experiment_date"):
        assert table.schema.field(name).type == pa.string()
    assert table.column("experiment_date").to_pylist()[0] == "20231207"
    csv = pd.read_csv(df03_path(root), keep_default_na=True)
    frame = table.to_pandas()
    assert list(frame.columns) == list(csv.columns)  # repeated names: pandas' .1 suffix in both
    z = [c for c in frame.columns if c.startswith("z_mu_")]
    assert z and all(frame[c].dtype == np.float64 for c in z)
    for c in csv.columns:
        left, right = frame[c], csv[c]
        if pd.api.types.is_numeric_dtype(right) and not pd.api.types.is_bool_dtype(right):
            np.testing.assert_array_equal(left.to_numpy(float), right.to_numpy(float), err_msg=c)
        else:
            assert [None if pd.isna(v) else str(v) for v in left] == [None if pd.isna(v) else str(v) for v in right], c
    unembedded = frame["snip_id"] == "20231207_A03_e00_t0000"
    assert frame.loc[unembedded, z].isna().all(axis=None) and not frame.loc[~unembedded, z].isna().any(axis=None)
    meta = json.loads(table.schema.metadata[b"morphseq"])
    assert meta["model"]["name"] == "20241107_ds_sweep01_optimum" and meta["inputs"]
    copies = sorted((tmp_path / "data" / "metadata" / "metadata_n_embeddings").rglob("df03_*.parquet"))
    assert [p.stem for p in copies] == ["df03_20231207", "df03_20231208", "df03_20240509_18ss"]
    schemas = {pq.read_schema(p).remove_metadata().to_string() for p in copies}
    assert len(schemas) == 1  # one schema for every copy: concatenation keeps experiment_date text
    both = pd.concat([pd.read_parquet(p) for p in copies])
    assert (both["experiment_date"] == "20231207").sum() == (csv["experiment_date"].astype(str) == "20231207").sum() > 0


def test_h5ad_names_observations_by_snip_id(tmp_path, cli):
    anndata = pytest.importorskip("anndata")
    root, _, values, _ = run_formats(tmp_path, cli, "--include-sigma")
    adata = anndata.read_h5ad(df03_path(root).with_suffix(".h5ad"))
    csv = pd.read_csv(df03_path(root), dtype={"snip_id": str, "experiment_date": str})
    assert list(adata.obs_names) == list(csv["snip_id"])
    assert list(adata.obs["experiment_date"]) == list(csv["experiment_date"])
    assert adata.obs["experiment_date"].dtype == object and adata.obs["snip_id"].dtype == object
    mu = [c for c in csv.columns if c.startswith("z_mu_")]
    sigma = [c for c in csv.columns if c.startswith("z_sigma_")]
    np.testing.assert_array_equal(adata.obsm["X_morph"], csv[mu].to_numpy(float))
    np.testing.assert_array_equal(adata.obsm["X_morph_logvar"], csv[sigma].to_numpy(float))
    snip = "20231207_A01_e00_t0000"
    np.testing.assert_array_equal(adata.obsm["X_morph"][list(adata.obs_names).index(snip)], values["20231207"][snip])
    assert adata.uns["morphseq"]["model"]["name"] == "20241107_ds_sweep01_optimum"
    assert adata.uns["morphseq"]["z_mu_columns"] == json.dumps(mu)
    assert isinstance(adata.obs["genotype"].dtype, pd.CategoricalDtype)


def test_training_join_gets_the_formats_too(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    train = root / "training_data" / "run1" / "embryo_metadata_df_train.csv"
    train.parent.mkdir(parents=True)
    train.write_text("snip_id,train_cat\n20231207_A02_e00_t0000,test\nnot_a_snip,x\n")
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--train-name", "run1", "--formats", "parquet")
    assert code == 0, err
    frame = pd.read_parquet(train.with_name("embryo_metadata_with_embeddings.parquet"))
    assert list(frame["snip_id"]) == ["20231207_A02_e00_t0000", "not_a_snip"]
    assert frame.filter(like="z_mu_").iloc[1].isna().all() and frame.filter(like="z_mu_").iloc[0].notna().all()
    assert not df03_path(root).with_suffix(".h5ad").exists()


def test_repeated_columns_and_flags_of_the_real_2025_file(tmp_path, cli):
    root, _, _, _ = run_formats(tmp_path, cli, source="20250612_30hpf_ctrl_atf6_embryo_metadata.csv", skip=())
    schema = pq.read_schema(df03_path(root).with_suffix(".parquet"))
    assert "surface_area_um.1" in schema.names and schema.names.count("surface_area_um") == 1
    assert schema.field("use_embryo_flag").type == pa.bool_()
    assert schema.field("experiment_id").type == pa.string()


def test_typing_rule(tmp_path):
    def kind(name, cells):
        return kind_of(name, pa.array(cells, pa.string()))

    assert kind("experiment_date", ["20231207", "20240509"]) == "text"
    assert kind("plate_well", ["1", "2"]) == "text"
    assert kind("stage_hpf", ["48", None, "24"]) == "int"
    assert kind("stage_hpf", ["48.0", "24", "inf"]) == "float"
    assert kind("use_embryo_flag", ["True", None, "1", "false"]) == "bool"
    assert kind("qc", ["0", "1"]) == "int"
    assert kind("notes", ["1", "cut off"]) == "text"
    assert kind("empty", [None, None]) == "float"
    assert unique_names(["a", "b", "a", "a.1", "a"]) == ["a", "b", "a.2", "a.1", "a.3"]
    path = tmp_path / "t.csv"
    path.write_text('x,y,x\n1,"a,b",NA\n2,,3\n')
    typed = type_table(read_text_table(path))
    assert typed.names == ("x", "y", "x.1") and typed.kinds == ("int", "text", "int")
    assert [a.to_pylist() for a in typed.arrays()] == [[1, 2], ["a,b", None], [None, 3]]


def test_default_writes_csv_only_and_a_missing_extra_is_one_line(tmp_path, cli, monkeypatch):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    code, _, err = cli("build06", "--root", root, "--data-root", data)
    assert code == 0, err
    assert not df03_path(root).with_suffix(".parquet").exists() and not df03_path(root).with_suffix(".h5ad").exists()
    monkeypatch.setitem(sys.modules, "anndata", None)
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--formats", "csv,h5ad", "--overwrite")
    assert code == 2 and "morphseq-stages[anndata]" in err and "Traceback" not in err
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--formats", "xlsx")
    assert code == 2 and "unknown format 'xlsx'" in err


def test_report_names_every_experiment_and_flags_drift(tmp_path, cli):
    pytest.importorskip("plotly")
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data, skip=("20231207_A03_e00_t0000",))
    header = df02.read_text().splitlines()[0].split(",")
    ids = [r.split(",")[header.index("snip_id")] for r in df02.read_text().splitlines()[1:]
           if r.split(",")[header.index("experiment_date")] == "20240509_18ss"]
    path, _ = write_latent_file(store(data), "20240509_18ss", ids, latent_dim=8, nuisance=2, seed=9)
    lines = path.read_text().splitlines()
    shifted = [",".join(c if i < 3 else str(float(c) + 25) for i, c in enumerate(r.split(","))) for r in lines[1:]]
    path.write_text("\n".join([lines[0], *shifted]) + "\n")
    code, out, err = cli("build06", "--root", root, "--data-root", data, "--report")
    assert code == 0, err
    report = df03_path(root).with_name("embryo_metadata_df03_report.html")
    assert f"report: {report}" in out
    page = report.read_text()
    for exp in ("20231207", "20231208", "20240509_18ss"):
        assert exp in page
    assert 'id="projection"' in page and "Embeddings (PCA)" in page and 'id="coverage-chart"' in page
    # 20231207: 7 rows, one without a latent row and without an image: never embeddable (no snip image)
    assert "<tr><td>20231207</td><td>7</td><td>6</td><td>0</td><td>0</td><td>1</td><td>0</td>" in page
    drift = page[page.index("id='drift'"):]
    flagged = drift[drift.index("20240509_18ss") - 40: drift.index("20240509_18ss")]
    assert "class=flag" in flagged and "apart: beyond what" in drift
    assert "20241107_ds_sweep01_optimum" in page[page.index("id='provenance'"):]


def test_typed_outputs_without_any_latents(tmp_path, cli):
    anndata = pytest.importorskip("anndata")
    root, data, _ = make_root(tmp_path)
    store(data).mkdir(parents=True)  # a store with no file yet (no store and no model at all: exit 2)
    code, _, err = cli("build06", "--root", root, "--data-root", data, "--formats", "parquet,h5ad")
    assert code == 0, err
    schema = pq.read_schema(df03_path(root).with_suffix(".parquet"))
    assert not [n for n in schema.names if n.startswith("z_")] and schema.names[0] == "image_well"
    adata = anndata.read_h5ad(df03_path(root).with_suffix(".h5ad"))
    assert adata.obsm["X_morph"].shape == (15, 0)


def test_a_typed_copy_is_current_only_if_made_from_the_csv_as_it_is(tmp_path, cli):
    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    base = ("build06", "--root", root, "--data-root", data)
    assert cli(*base, "--formats", "csv,parquet")[0] == 0
    parquet = df03_path(root).with_suffix(".parquet")
    lines = df02.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(",lmx1b,", ",lmx1b-edited,", 1)  # a df02 edit: --overwrite rewrites df03.csv
    df02.write_text("".join(lines))
    code, _, err = cli(*base, "--overwrite")  # without --formats: the Parquet is left behind, and said so
    assert code == 0 and f"{parquet} is not rewritten by this run" in err
    code, _, err = cli(*base)  # and said again by every later run, until it is updated
    assert code == 0 and f"{parquet} is out of date (not made from embryo_metadata_df03.csv as it is now)" in err
    before = parquet.read_bytes()
    code, out, err = cli(*base, "--formats", "csv,parquet")  # df03.csv current; its Parquet is not
    assert code == 0 and "parquet is out of date: not made from embryo_metadata_df03.csv as it is now; pass " \
        "--overwrite" in err + out and "not updated: out of date" not in err + out  # said once, plainly
    assert parquet.read_bytes() == before  # no --overwrite: kept, with a warning
    assert cli(*base, "--formats", "csv,parquet", "--overwrite")[0] == 0
    table = pq.read_table(parquet)
    csv = pd.read_csv(df03_path(root), dtype=str, keep_default_na=False)
    assert table.column("snip_id").to_pylist() == csv["snip_id"].tolist()
    assert table.column("genotype").to_pylist() == csv["genotype"].tolist()
    assert table.column("genotype")[0].as_py() == "lmx1b-edited"  # from df03.csv as it is now
    after = parquet.stat().st_mtime_ns
    code, out, err = cli(*base, "--formats", "csv,parquet")  # both current now: nothing is rewritten
    assert code == 0 and parquet.stat().st_mtime_ns == after
    assert "not made from" not in out + err
    genotype = table.schema.get_field_index("genotype")  # a hand edit that keeps our metadata
    pq.write_table(table.set_column(genotype, "genotype", pa.array(["TAMPERED"] * len(table))), parquet)
    code, out, err = cli(*base, "--formats", "csv,parquet")
    assert code == 0 and "parquet is not written by this tool or edited since: edited since this tool wrote it" in err
    assert cli(*base, "--formats", "csv,parquet", "--overwrite")[0] == 0
    assert pq.read_table(parquet).column("genotype").to_pylist() == csv["genotype"].tolist()


def test_a_typed_copy_is_recorded_in_its_tables_sidecar_by_the_one_freshness_rule(tmp_path, cli):
    """Issue #18: one record schema for every output. A Parquet copy added beside a current
    df03 is recorded in df03's own sidecar (df03 left as it is), no typed_copies.json is
    written, and the next run finds both current."""
    import hashlib

    root, data, df02 = make_root(tmp_path)
    latents_for(df02, data)
    base = ("build06", "--root", root, "--data-root", data, "--json")
    assert cli(*base)[0] == 0
    df03, side = df03_path(root), df03_path(root).with_suffix(".json")
    before = df03.read_bytes()
    code, out, err = cli(*base, "--formats", "csv,parquet")
    assert code == 0, err
    written = json.loads(out)["written"]
    parquet = df03.with_suffix(".parquet")
    assert sorted(written) == sorted([str(parquet), str(side)]) and df03.read_bytes() == before
    entry = json.loads(side.read_text())["files"][parquet.name]
    assert entry["sha256"] == hashlib.sha256(parquet.read_bytes()).hexdigest()
    assert entry["built_from"]["made_from"]["sha256"] == hashlib.sha256(before).hexdigest()
    assert not list(tmp_path.rglob("typed_copies.json"))
    code, out, err = cli(*base, "--formats", "csv,parquet")
    assert code == 0 and json.loads(out)["written"] == [], out
