"""Build06 with --generate-missing-latents: generation, top-up, bad images, executors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import load_json_lines, read_rows, run_without_torch, tree_digest

torch = pytest.importorskip("torch")

from morphseq_build06.testing import make_pipeline_root, snip_image  # noqa: E402
from morphseq_legacy.columns import column_names  # noqa: E402
from morphseq_legacy.embedder import LegacyEmbedder  # noqa: E402
from morphseq_legacy.testing import make_legacy_model  # noqa: E402
from morphseq_stages.embedders import EmbedderRequest  # noqa: E402
from morphseq_stages.images import decode_image  # noqa: E402

MODEL = "tiny"


@pytest.fixture
def synth(tmp_path):
    s = make_pipeline_root(tmp_path, {"20231207": 5, "20240509_18ss": 4}, seed=3)
    make_legacy_model(s.data_root / "models" / "legacy" / MODEL, latent_dim=10, n_out_channels=2, seed=1)
    return s


def build06(cli, synth, *extra):
    return cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--model-name", MODEL,
               "--log-format", "json", *extra)


def expected_latents(synth, experiment):
    emb = LegacyEmbedder(EmbedderRequest(model_name=MODEL, data_root=synth.data_root))
    ids = sorted(synth.snips[experiment])
    x = torch.from_numpy(np.stack([decode_image(synth.snip_path(experiment, s), (1, 288, 128)) for s in ids]))
    with torch.inference_mode():
        mu, lv = emb.embed_batch(x)
    return ids, mu.numpy(), lv.numpy()


def test_generates_latent_files_in_the_exact_format(synth, cli):
    code, out, err = build06(cli, synth, "--generate-missing-latents")
    assert code == 0, err
    store = synth.latent_dir(MODEL)
    header, rows = read_rows(store / "morph_latents_20231207.csv")
    mu_cols, sigma_cols = column_names(10, 2)
    assert header == ["experiment_date", "embryo_id", "snip_id", *mu_cols, *sigma_cols]
    ids, mu, lv = expected_latents(synth, "20231207")
    assert [r[2] for r in rows] == ids
    assert all(r[0] == "20231207" and r[1] == r[2].rsplit("_t", 1)[0] for r in rows)
    got = np.array([[float(v) for v in r[3:]] for r in rows])
    np.testing.assert_allclose(got[:, :10], mu, atol=1e-6)
    np.testing.assert_allclose(got[:, 10:], lv, atol=1e-6)
    manifest = json.loads((store / "manifest.json").read_text())["files"]
    assert manifest["morph_latents_20231207.csv"]["rows"] == 5
    assert len(manifest["morph_latents_20231207.csv"]["model_fingerprint"]) == 64
    events = load_json_lines(err)
    assert {e["experiment"] for e in events if e["event"] == "latents.generated"} == {"20231207", "20240509_18ss"}
    assert any(e["event"] == "device.chosen" and e["device"] == "cpu" for e in events)
    assert any(e["event"] == "progress" for e in events)
    header, rows = read_rows(synth.root / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.csv")
    assert header[-10:] == list(mu_cols) and all(r[-1] for r in rows)


def test_existing_file_gains_missing_rows_and_complete_file_is_untouched(synth, cli):
    missing = synth.snip_path("20231207", synth.snips["20231207"][-1])
    held = missing.read_bytes()
    missing.unlink()
    assert build06(cli, synth, "--generate-missing-latents")[0] == 0
    latent = synth.latent_dir(MODEL) / "morph_latents_20231207.csv"
    first = latent.read_bytes()
    other = (synth.latent_dir(MODEL) / "morph_latents_20240509_18ss.csv").read_bytes()
    missing.write_bytes(held)
    code, out, err = build06(cli, synth, "--generate-missing-latents", "--dry-run", "--json")
    plan = {e["experiment"]: e for e in json.loads(out)["experiments"]}
    assert plan["20231207"]["action"] == "top-up" and plan["20231207"]["images_to_embed"] == 1
    assert plan["20231207"]["reason"] == "1 snip(s) without a latent row"  # an image put back is not "new"
    assert plan["20240509_18ss"]["action"] == "read" and plan["20240509_18ss"]["reason"] == "complete"
    code, out, err = build06(cli, synth, "--generate-missing-latents", "--overwrite")
    assert code == 0, err
    now = latent.read_bytes()
    assert now.startswith(first) and now.count(b"\n") == first.count(b"\n") + 1  # old rows byte-identical
    assert (synth.latent_dir(MODEL) / "morph_latents_20240509_18ss.csv").read_bytes() == other
    ids, mu, _ = expected_latents(synth, "20231207")
    header, rows = read_rows(latent)
    row = next(r for r in rows if r[2] == ids[-1])
    np.testing.assert_allclose([float(v) for v in row[3:13]], mu[-1], atol=1e-6)
    # a third run has nothing to embed and touches no latent file
    before = tree_digest(synth.data_root)
    code, _, err = build06(cli, synth, "--generate-missing-latents")
    assert code == 0 and tree_digest(synth.data_root) == before
    assert any(e["event"] == "latents.nothing_to_generate" for e in load_json_lines(err))


def test_corrupt_image_is_reported_and_the_rest_embedded(synth, cli):
    bad = synth.snip_path("20231207", synth.snips["20231207"][0])
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    code, _, err = build06(cli, synth, "--generate-missing-latents", "--strict")
    assert code != 0 and "unreadable image" in err.splitlines()[-1] and str(bad) in err.splitlines()[-1]
    assert not (synth.latent_dir(MODEL) / "morph_latents_20231207.csv").exists()
    code, _, err = build06(cli, synth, "--generate-missing-latents", "--min-coverage", "0.5")
    assert code == 0, err
    events = load_json_lines(err)
    assert [e["path"] for e in events if e["event"] == "image.unreadable"] == [str(bad)]
    _, rows = read_rows(synth.latent_dir(MODEL) / "morph_latents_20231207.csv")
    assert len(rows) == 4 and bad.stem not in {r[2] for r in rows}
    side = json.loads((synth.root / "metadata/combined_metadata_files/embryo_metadata_df03.json").read_text())
    assert side["generated"]["unreadable_images"] == 1


def test_results_do_not_depend_on_batch_size(tmp_path, synth, cli):
    import shutil

    assert build06(cli, synth, "--generate-missing-latents", "--batch-size", "1", "--workers", "1")[0] == 0
    a = read_rows(synth.latent_dir(MODEL) / "morph_latents_20231207.csv")[1]
    shutil.rmtree(synth.latent_dir(MODEL))
    assert build06(cli, synth, "--generate-missing-latents", "--batch-size", "3", "--overwrite")[0] == 0
    b = read_rows(synth.latent_dir(MODEL) / "morph_latents_20231207.csv")[1]
    assert [r[:3] for r in a] == [r[:3] for r in b]
    np.testing.assert_allclose(np.array([r[3:] for r in a], float), np.array([r[3:] for r in b], float), atol=1e-5)


def test_dry_run_counts_without_loading_the_model(synth):
    args = ["build06", "--root", str(synth.root), "--data-root", str(synth.data_root), "--model-name", MODEL,
            "--generate-missing-latents", "--dry-run", "--json", "--log-format", "json"]
    before = tree_digest(synth.root.parent)
    proc = run_without_torch(f"assert main({args!r}) == 0")
    plan = json.loads(proc.stdout)
    assert [(e["experiment"], e["action"], e["images_to_embed"]) for e in plan["experiments"]] == [
        ("20231207", "generate", 5), ("20240509_18ss", "generate", 4)]
    assert tree_digest(synth.root.parent) == before


def test_model_dir_and_stale_files(synth, cli, tmp_path):
    other = make_legacy_model(tmp_path / "elsewhere" / "other_model", latent_dim=10, n_out_channels=2, seed=9)
    assert build06(cli, synth, "--generate-missing-latents")[0] == 0
    tiny_store = synth.latent_dir(MODEL)
    # the same experiment under another model: its own store folder, named after --model-dir
    code, out, err = cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--model-dir", other,
                         "--generate-missing-latents", "--overwrite", "--log-format", "json")
    assert code == 0, err
    assert (synth.latent_dir("other_model") / "morph_latents_20231207.csv").is_file()
    # a file written by another model is reported stale and kept unless --overwrite-latents
    shutil_copy = (synth.latent_dir("other_model") / "morph_latents_20231207.csv").read_bytes()
    (tiny_store / "morph_latents_20231207.csv").write_bytes(shutil_copy)
    manifest = json.loads((tiny_store / "manifest.json").read_text())
    manifest["files"]["morph_latents_20231207.csv"]["model_fingerprint"] = "0" * 64
    (tiny_store / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = build06(cli, synth, "--generate-missing-latents", "--dry-run", "--json")
    plan = {e["experiment"]: e for e in json.loads(out)["experiments"]}
    assert plan["20231207"]["stale"] is True and "another model" in plan["20231207"]["reason"]
    assert any("written by another model" in w for w in json.loads(out)["warnings"])
    code, _, err = build06(cli, synth, "--generate-missing-latents", "--overwrite")
    assert code == 0 and not any(e["event"] == "latents.generated" for e in load_json_lines(err))
    code, _, err = build06(cli, synth, "--overwrite-latents", "--experiments", "20231207")
    assert code == 0
    events = load_json_lines(err)
    assert any(e["event"] == "latents.generated" and e["experiment"] == "20231207" and e["mode"] == "regenerate"
               for e in events)
    manifest = json.loads((tiny_store / "manifest.json").read_text())
    assert manifest["files"]["morph_latents_20231207.csv"]["model_fingerprint"] != "0" * 64


def test_missing_model_is_a_clear_error_only_when_generating(synth, cli):
    code, _, err = cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--model-name", "absent",
                       "--generate-missing-latents", "--log-format", "json")
    assert code == 2 and "model folder not found" in err.splitlines()[-1]


def test_dask_executor_writes_byte_identical_files(synth, cli, tmp_path):
    pytest.importorskip("distributed")
    import shutil

    assert build06(cli, synth, "--generate-missing-latents")[0] == 0
    local = {p.name: p.read_bytes() for p in synth.latent_dir(MODEL).glob("morph_latents_*.csv")}
    shutil.rmtree(synth.latent_dir(MODEL))
    code, _, err = build06(cli, synth, "--generate-missing-latents", "--executor", "dask", "--overwrite")
    assert code == 0, err
    assert any(e["event"] == "dask.embedded" for e in load_json_lines(err))
    dask = {p.name: p.read_bytes() for p in synth.latent_dir(MODEL).glob("morph_latents_*.csv")}
    assert dask == local


def test_dask_scheduler_address(synth, cli):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        code, _, err = build06(cli, synth, "--generate-missing-latents", "--executor", "dask",
                               "--scheduler", c.scheduler_address)
        assert code == 0, err
    assert (synth.latent_dir(MODEL) / "morph_latents_20240509_18ss.csv").is_file()


def test_snips_under_the_data_root(tmp_path, cli):
    s = make_pipeline_root(tmp_path, {"20231207": 2}, seed=1)
    make_legacy_model(s.data_root / "models" / "legacy" / MODEL, latent_dim=4, n_out_channels=2)
    src = s.root / "training_data"
    src.rename(s.data_root / "training_data")
    code, _, err = cli("build06", "--root", s.root, "--data-root", s.data_root, "--model-name", MODEL,
                       "--generate-missing-latents", "--log-format", "json")
    assert code == 0, err
    assert len(read_rows(s.latent_dir(MODEL) / "morph_latents_20231207.csv")[1]) == 2


def test_png_snips_are_found(tmp_path, cli):
    s = make_pipeline_root(tmp_path, {"20231207": 2}, seed=1)
    make_legacy_model(s.data_root / "models" / "legacy" / MODEL, latent_dim=4, n_out_channels=2)
    p = s.snip_path("20231207", s.snips["20231207"][0])
    snip_image(5).save(p.with_suffix(".png"))
    p.unlink()
    assert build06(cli, s, "--generate-missing-latents")[0] == 0
    assert {r[2] for r in read_rows(s.latent_dir(MODEL) / "morph_latents_20231207.csv")[1]} == set(s.snips["20231207"])




def test_top_up_refused_when_the_file_has_other_columns(synth, cli):
    from morphseq_build06.testing import write_latent_file

    ids = synth.snips["20231207"][:2]
    path, _ = write_latent_file(synth.latent_dir(MODEL), "20231207", ids, latent_dim=10, nuisance=None)
    before = path.read_bytes()
    code, out, err = build06(cli, synth, "--generate-missing-latents", "--min-coverage", "0", "--dry-run", "--json")
    assert code == 0, err
    planned = {e["experiment"]: e for e in json.loads(out)["experiments"]}["20231207"]
    # refused by the plan, from the columns the model's describe names: the dry run says it, and
    # nothing is embedded for it
    assert planned["action"] == "read" and "not topped up: its column 'z_mu_00'" in planned["reason"]
    code, _, err = build06(cli, synth, "--generate-missing-latents", "--min-coverage", "0")
    assert code == 0, err
    events = load_json_lines(err)
    summary = next(e for e in events if e["event"] == "build06.summary")
    assert any("is not topped up: its column 'z_mu_00'" in w for w in summary["warnings"])
    assert not any(e["event"] == "latents.generated" and e["path"].endswith(path.name) for e in events)
    assert path.read_bytes() == before  # an old file in another naming is never mixed with new rows


def test_demo_runs_the_main_job_and_a_rerun_changes_nothing(tmp_path, cli):
    folder = tmp_path / "demo"
    code, out, err = cli("demo", folder, "--log-format", "json")
    assert code == 0, err
    assert "coverage of df03 on disk: 100.0% overall" in out
    store = folder / "data" / "analysis" / "latent_embeddings" / "legacy" / "demo_vae"
    assert len(list(store.glob("morph_latents_*.csv"))) == 3
    assert len(list((folder / "data" / "metadata" / "metadata_n_embeddings" / "demo_vae").glob("df03_*.csv"))) == 3
    assert (folder / "root" / "training_data" / "demo_train" / "embryo_metadata_with_embeddings.csv").is_file()
    before = tree_digest(folder)
    code, out, _ = cli("demo", folder, "--log-format", "json")
    assert code == 0 and "skipped" in out and tree_digest(folder) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    code, _, err = cli("demo", tmp_path / "other")
    assert code == 2 and "is not a demo folder" in err


FLAT_REFUSED = ("morphseq-stages: error: --z-schema flat cannot read the z columns model 'tiny' writes (z_mu_n_00, "
                "z_mu_n_01, z_mu_b_02, ...; 10 in all), so nothing this run would embed for {} could be merged: "
                "pass --z-schema auto or bio_nuisance, or run without generating latents\n")


@pytest.mark.parametrize("extra", [("--generate-missing-latents",), ("--generate-missing-latents", "--dry-run"),
                                   ("--generate-only",), ("--generate-only", "--experiments", "20231207"),
                                   ("--overwrite-latents", "--json")])
def test_a_flat_schema_run_that_would_embed_b_n_columns_is_refused_before_embedding(synth, cli, extra):
    # the model names its dimensions b/n: --z-schema flat could read none of the files it
    # would write (a --generate-only file would be refused by the next merge)
    before = tree_digest(synth.root.parent)
    code, out, err = build06(cli, synth, "--z-schema", "flat", "--quiet", *extra)
    assert code == 2
    embedded = "20231207" if "20231207" in extra else "20231207, 20240509_18ss"
    if "--json" in extra:  # the line, and the run.failed event beside it
        assert json.loads(out)["exit_code"] == 2 and FLAT_REFUSED.format(embedded) in err
    else:
        assert err == FLAT_REFUSED.format(embedded)
    assert tree_digest(synth.root.parent) == before


def test_a_flat_schema_top_up_of_a_flat_file_by_a_b_n_model_is_refused(synth, cli):
    # the rows it would add are b/n: the plan refuses the top-up (the flat file would not take
    # them, --z-schema flat would read none), says so, and merges what the file holds
    from morphseq_build06.testing import write_latent_file

    path, _ = write_latent_file(synth.latent_dir(MODEL), "20231207", synth.snips["20231207"][:2], latent_dim=10,
                                nuisance=None)
    before = path.read_bytes()
    code, _, err = build06(cli, synth, "--z-schema", "flat", "--generate-missing-latents", "--experiments", "20231207",
                           "--min-coverage", "0")
    assert code == 0, err
    assert f"{path} is not topped up: its column 'z_mu_00' is not one model {MODEL!r} writes" in err
    assert path.read_bytes() == before
    # a re-embedding would write b/n columns that --z-schema flat cannot read: refused before it starts
    code, _, err = build06(cli, synth, "--z-schema", "flat", "--overwrite-latents", "--experiments", "20231207")
    assert code == 2 and err.splitlines()[-1] + "\n" == FLAT_REFUSED.format("20231207")
    assert path.read_bytes() == before
    assert read_rows(synth.root / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.csv")[0][-1] \
        == "z_mu_09"


def test_flat_schema_generation_with_a_flat_model_and_b_n_schema_with_a_b_n_model_go_on(synth, cli, tmp_path):
    code, _, err = build06(cli, synth, "--z-schema", "bio_nuisance", "--generate-missing-latents")
    assert code == 0, err
    flat = make_legacy_model(tmp_path / "flat_model", name="VAEConfig", latent_dim=4, n_out_channels=2, seed=2)
    code, _, err = cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--model-dir", flat,
                       "--z-schema", "flat", "--generate-missing-latents", "--log-format", "json", "--overwrite")
    assert code == 0, err
    header = read_rows(synth.root / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.csv")[0]
    assert header[-4:] == ["z_mu_00", "z_mu_01", "z_mu_02", "z_mu_03"]


@pytest.mark.parametrize("dry_run", [False, True])
def test_backend_onnxruntime_without_onnx_runtime_is_refused_before_embedding(synth, cli, monkeypatch, dry_run):
    """The dry run says what the run says (the model-based test's pairwise row 5 without the [onnx] extra)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    before = tree_digest(synth.root.parent)
    code, _, err = build06(cli, synth, "--generate-missing-latents", "--backend", "onnxruntime",
                           *(["--dry-run"] if dry_run else []))
    assert code == 2 and "--backend onnxruntime needs ONNX Runtime: pip install 'morphseq-stages[onnx]'" in err
    assert tree_digest(synth.root.parent) == before
