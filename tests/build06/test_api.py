"""morphseq_build06.api: the seed's service functions, on the CLI's code path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from morphseq_build06 import api
from morphseq_build06.testing import make_pipeline_root, write_latent_file
from morphseq_stages import UserError

from conftest import read_rows, tree_digest

MODEL = "tiny"
EXPS = {"20231207": 4, "20240509_18ss": 3}


def _layout(base, latent_for=("20231207", "20240509_18ss")):
    synth = make_pipeline_root(base, EXPS, seed=3, size=(64, 144))
    for i, exp in enumerate(latent_for):
        write_latent_file(synth.latent_dir(MODEL), exp, synth.snips[exp], seed=i)
    return synth


def _df03(synth):
    return synth.df02.with_name("embryo_metadata_df03.csv")


def _model(synth):
    pytest.importorskip("torch", reason="a legacy model is built with torch")
    from morphseq_legacy.testing import make_legacy_model

    return make_legacy_model(synth.data_root / "models" / "legacy" / MODEL, latent_dim=8, n_out_channels=2,
                             layout="final_model", seed=1)


def _cli_df03(cli, synth, *extra):
    code, _, err = cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--model-name", MODEL,
                       "--log-format", "json", *extra)
    assert code == 0, err
    return synth.df02.with_name("embryo_metadata_df03.csv")


def test_build_df03_is_byte_identical_to_the_cli(tmp_path, cli):
    a, b = _layout(tmp_path / "a"), _layout(tmp_path / "b")
    path = api.build_df03_with_embeddings(root=str(a.root), data_root=a.data_root, model_name=MODEL,
                                          export_analysis=True)
    assert path == a.df02.with_name("embryo_metadata_df03.csv")
    cli_path = _cli_df03(cli, b, "--export-analysis-copies")
    assert path.read_bytes() == cli_path.read_bytes()
    copies = "metadata/metadata_n_embeddings/" + MODEL
    for exp in EXPS:
        name = f"df03_{exp}.csv"
        assert (a.data_root / copies / name).read_bytes() == (b.data_root / copies / name).read_bytes()


def test_the_step_functions_give_the_cli_outputs(tmp_path, cli):
    synth = _layout(tmp_path / "a")
    found = api.ensure_latents_for_experiments(synth.data_root, MODEL, list(EXPS))
    assert found == {e: synth.latent_dir(MODEL) / f"morph_latents_{e}.csv" for e in EXPS}
    latents = api.load_latents(found)
    out = api.merge_df02_with_embeddings(synth.root, latents)
    train = synth.root / "training_data" / "t1"
    train.mkdir()
    lines = synth.df02.read_bytes().split(b"\n")
    (train / "embryo_metadata_df_train.csv").write_bytes(b"\n".join(lines[:3]) + b"\n")
    joined = api.merge_train_with_embeddings(synth.root, "t1", latents)
    assert api.merge_train_with_embeddings(synth.root, "absent", latents) is None
    copies = api.export_df03_copies_by_experiment(out, synth.data_root, MODEL)
    assert [p.name for p in copies] == [f"df03_{e}.csv" for e in EXPS]

    ref = _layout(tmp_path / "b")
    (ref.root / "training_data" / "t1").mkdir()
    shutil.copy(train / "embryo_metadata_df_train.csv", ref.root / "training_data" / "t1")
    df03 = _cli_df03(cli, ref, "--export-analysis-copies", "--train-name", "t1")
    assert out.read_bytes() == df03.read_bytes()
    assert joined.read_bytes() == (ref.root / "training_data" / "t1" / joined.name).read_bytes()
    for p in copies:
        assert p.read_bytes() == (ref.data_root / p.relative_to(synth.data_root)).read_bytes()
    # nothing is replaced without overwrite=True: a current output returns, one that differs raises
    before = tree_digest(synth.root, synth.data_root)
    assert api.merge_df02_with_embeddings(synth.root, latents) == out
    assert api.export_df03_copies_by_experiment(out, synth.data_root, MODEL) == copies
    with pytest.raises(UserError, match=f"^df03 {out} is Build06's own output: .* this table was changed since "
                                        "load_latents made it; pass out_name="):
        api.merge_df02_with_embeddings(synth.root, latents.iloc[:2])
    with pytest.raises(api.OutputExists, match="overwrite=True"):
        api.merge_train_with_embeddings(synth.root, "t1", latents.iloc[2:])
    with pytest.raises(api.OutputExists, match=f"analysis copy {copies[0]} exists"):
        api.export_df03_copies_by_experiment(ref.root / "metadata" / "combined_metadata_files" /
                                             "embryo_metadata_df02.csv", synth.data_root, MODEL)
    assert tree_digest(synth.root, synth.data_root) == before
    mine = api.merge_df02_with_embeddings(synth.root, latents.iloc[:2], out_name="mine.csv")
    assert sum(1 for r in read_rows(mine)[1] if r[-1]) == 2


def test_build_raises_when_an_out_of_date_df03_is_kept(tmp_path, cli):
    synth = _layout(tmp_path)
    assert api.build_df03_with_embeddings(synth.root, synth.data_root, MODEL) == _df03(synth)
    assert api.build_df03_with_embeddings(synth.root, synth.data_root, MODEL) == _df03(synth)  # current
    with open(synth.df02, "a") as fh:
        fh.write(synth.df02.read_text().splitlines()[1].replace("wik", "ab") + "\n")
    before = _df03(synth).read_bytes()
    with pytest.raises(api.OutputExists, match="is out of date: df02 changed: 1 new row in 20231207: kept; pass "
                                               "overwrite=True to replace it$"):
        api.build_df03_with_embeddings(synth.root, synth.data_root, MODEL)
    assert _df03(synth).read_bytes() == before
    assert api.build_df03_with_embeddings(synth.root, synth.data_root, MODEL, dry_run=True)["df03"] == str(_df03(synth))
    assert api.build_df03_with_embeddings(synth.root, synth.data_root, MODEL, overwrite=True) == _df03(synth)
    assert _df03(synth).read_bytes() != before


def test_load_latents_is_text_ids_and_float64_with_hygiene(tmp_path):
    synth = _layout(tmp_path, latent_for=("20231207",))
    path, mu = write_latent_file(synth.latent_dir(MODEL), "20231207", synth.snips["20231207"], seed=5)
    text = path.read_text().splitlines()
    bad = text[2].split(",")
    bad[3] = "nan"
    text[2] = ",".join(bad)
    text.append(text[1])  # an identical duplicate
    path.write_text("\n".join(text) + "\n")
    df = api.load_latents({"20231207": str(path)})
    assert list(df.columns[:1]) == ["snip_id"] and df["snip_id"].map(type).eq(str).all()
    assert df["snip_id"].is_unique and len(df) == 3  # 4 snips, one with NaN left out
    z = df.columns[1:]
    assert list(z) == ["z_mu_n_00", "z_mu_n_01"] + [f"z_mu_b_{i:02}" for i in range(2, 8)]
    assert all(df[c].dtype == np.float64 for c in z)
    # the values the file holds, read as float64 (the NaN row left out)
    expected = np.array([[float(v) for v in text[i].split(",")[3:11]] for i in (1, 3, 4)])
    assert np.array_equal(df[z].to_numpy(), expected)
    assert np.allclose(expected, mu[[0, 2, 3]], atol=1e-6)
    bio = api.load_latents({"20231207": path}, z_schema="bio_nuisance")
    assert list(bio.columns) == list(df.columns)
    with pytest.raises(UserError, match="unknown --z-schema 'wide'"):
        api.load_latents({"20231207": path}, z_schema="wide")
    with pytest.raises(UserError, match="latent file not found"):
        api.load_latents({"x": tmp_path / "nope.csv"})


def test_resolve_model_dir(tmp_path, monkeypatch):
    synth = _layout(tmp_path)
    _model(synth)
    folder = synth.data_root / "models" / "legacy" / MODEL
    assert api.resolve_model_dir(data_root=str(synth.data_root), model_name=MODEL) == folder / "final_model"
    with pytest.raises(UserError, match="no data root: pass --data-root or set MORPHSEQ_DATA_ROOT"):
        api.resolve_model_dir(None, MODEL)
    monkeypatch.setenv("MORPHSEQ_DATA_ROOT", str(synth.data_root))
    assert api.resolve_model_dir(None, MODEL) == folder / "final_model"
    with pytest.raises(UserError, match=str(synth.data_root / "models" / "legacy" / "nope")):
        api.resolve_model_dir(synth.data_root, "nope")
    (folder / "final_model" / "model_config.json").unlink()
    with pytest.raises(UserError, match="no model_config.json in model folder"):
        api.resolve_model_dir(synth.data_root, MODEL)


def test_misspelled_option_is_refused_and_nothing_written(tmp_path):
    synth = _layout(tmp_path)
    before = tree_digest(tmp_path)
    with pytest.raises(UserError, match=r"unknown option 'generate_missing_latent' for stage build06; "
                                        r"did you mean 'generate_missing_latents'\?"):
        api.build_df03_with_embeddings(synth.root, synth.data_root, MODEL, generate_missing_latent=True)
    with pytest.raises(UserError, match="--batch-size must be a whole number"):
        api.build_df03_with_embeddings(synth.root, synth.data_root, MODEL, batch_size="many")
    assert tree_digest(tmp_path) == before


def test_bare_string_experiment_in_a_dry_run(tmp_path, monkeypatch):
    synth = _layout(tmp_path, latent_for=())
    synth.latent_dir(MODEL).mkdir(parents=True)  # an empty store: neither model nor store would be exit 2
    monkeypatch.setenv("MORPHSEQ_DATA_ROOT", str(synth.data_root))
    before = tree_digest(tmp_path)
    plan = api.build_df03_with_embeddings(synth.root, model_name=MODEL, experiments="20231207", dry_run=True)
    assert plan["df03"] == str(synth.df02.with_name("embryo_metadata_df03.csv")) and not _df03(synth).exists()
    assert tree_digest(tmp_path) == before
    assert api.ensure_latents_for_experiments(synth.data_root, MODEL, "20231207") == {}


def test_generate_only_jobs_run_side_by_side_then_one_merge(tmp_path, cli):
    pytest.importorskip("torch")
    synth = _layout(tmp_path, latent_for=())
    _model(synth)
    base = ["build06", "--root", str(synth.root), "--data-root", str(synth.data_root), "--model-name", MODEL,
            "--generate-only", "--log-format", "json", "--json", "--batch-size", "2"]
    code = "import sys\nfrom morphseq_stages.cli import main\nsys.exit(main(sys.argv[1:]))"
    jobs = [subprocess.Popen([sys.executable, "-c", code, *base, "--experiments", e], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for e in EXPS]
    results = [(j.wait(), *j.communicate()) for j in jobs]
    for rc, out, err in results:
        assert rc == 0, err
        summary = json.loads(out)
        assert summary["generate_only"] is True and summary["sidecar"] is None
    store = synth.latent_dir(MODEL)
    assert sorted(p.name for p in store.glob("morph_latents_*.csv")) == [f"morph_latents_{e}.csv" for e in EXPS]
    assert set(json.loads((store / "manifest.json").read_text())["files"]) == {f"morph_latents_{e}.csv" for e in EXPS}
    assert not synth.df02.with_name("embryo_metadata_df03.csv").exists()
    # the one merge afterwards embeds nothing and covers every row
    code, out, err = cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--model-name", MODEL,
                         "--json", "--log-format", "json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["coverage"] == 1.0 and summary["generated"]["files"] == []
    # and ensure_latents_for_experiments does the same from Python
    shutil.rmtree(store)
    found = api.ensure_latents_for_experiments(synth.data_root, MODEL, "20231207", generate_missing=True,
                                               root=synth.root, batch_size=2)
    assert list(found) == ["20231207"] and found["20231207"].is_file()


def test_dry_run_declares_reads_and_writes(tmp_path, cli):
    synth = _layout(tmp_path, latent_for=("20231207",))
    _model(synth)
    code, out, err = cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--model-name", MODEL,
                         "--generate-missing-latents", "--dry-run", "--json", "--log-format", "json")
    assert code == 0, err
    plan = json.loads(out)
    store = synth.latent_dir(MODEL)
    model = synth.data_root / "models" / "legacy" / MODEL / "final_model"
    reads = {(r["kind"], r["path"]) for r in plan["reads"]}
    assert {("df02", str(synth.df02)), ("latents", str(store / "morph_latents_20231207.csv")),
            ("model_config", str(model / "model_config.json")), ("model_weights", str(model / "model.pt")),
            ("snips", str(synth.root / "training_data" / "bf_embryo_snips" / "20240509_18ss"))} <= reads
    assert {r["action"] for r in plan["reads"]} == {"read"}
    writes = {(w["kind"], w["path"]): w["action"] for w in plan["writes"]}
    assert writes[("latents", str(store / "morph_latents_20240509_18ss.csv"))] == "generate"
    assert writes[("manifest", str(store / "manifest.json"))] == "write"
    assert writes[("df03", str(synth.df02.with_name("embryo_metadata_df03.csv")))] == "write"
    assert plan["generate_only"] is False


def test_the_plan_lists_every_file_the_run_writes(tmp_path, cli):
    """The training join's and the analysis copies' sidecars too (kinds ``training_sidecar``,
    ``analysis_sidecar``): a workflow tool that takes ``writes`` as the rule's outputs knows
    every file the run makes; a rerun that writes nothing plans none of them."""
    synth = _layout(tmp_path)
    train = synth.root / "training_data" / "t1"
    train.mkdir()
    lines = synth.df02.read_bytes().split(b"\n")
    (train / "embryo_metadata_df_train.csv").write_bytes(b"\n".join(lines[:3]) + b"\n")
    args = ("build06", "--root", synth.root, "--data-root", synth.data_root, "--model-name", MODEL,
            "--export-analysis-copies", "--train-name", "t1", "--formats", "csv,parquet", "--log-format", "json")
    for _ in range(2):  # a first run, then a rerun that finds every output current
        code, out, err = cli(*args, "--dry-run", "--json")
        assert code == 0, err
        planned = {w["path"]: (w["kind"], w["action"]) for w in json.loads(out)["writes"]}
        code, out, err = cli(*args, "--json")
        assert code == 0, err
        written = set(json.loads(out)["written"])
        assert written == {p for p, (_, action) in planned.items() if action != "skip"}
    kinds = {kind for kind, _ in planned.values()}
    assert {"training_sidecar", "analysis_sidecar"} <= kinds
    assert planned[str(train / "embryo_metadata_with_embeddings.json")] == ("training_sidecar", "skip")
    assert not written
