"""The operator's update loop: df03 stays canonical and current; nothing re-embedded or lost."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
from pathlib import Path

import pytest

from morphseq_build06.latents import embryo_id_of
from morphseq_build06.testing import make_pipeline_root, snip_image, write_latent_file

from conftest import load_json_lines, read_rows, tree_digest

MODEL = "tiny"
NEW = "20250115_newexp"
EXPERIMENTS = {"20231207": 5, "20240509_18ss": 4, "20250612_30hpf_ctrl_atf6": 3}


def df03_of(s) -> Path:
    return s.root / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.csv"


def z_cells(path: Path, width: int) -> dict[str, bytes]:
    """Each row's z cells, as bytes, by snip_id."""
    header, rows = read_rows(path)
    si = header.index("snip_id")
    lines = path.read_bytes().splitlines()[1:]
    return {r[si]: b",".join(line.split(b",")[-width:]) for r, line in zip(rows, lines, strict=True)}


def append_experiment(s, experiment: str, n: int, *, images: bool = True) -> list[str]:
    """Append ``n`` rows of a new experiment to df02 (and their snips), as Build05 would."""
    header, rows = read_rows(s.df02)
    ids = [f"{experiment}_C{i + 1:02}_e00_t0000" for i in range(n)]
    with open(s.df02, "a", newline="") as fh:
        for i, snip in enumerate(ids):
            row = list(rows[0])
            row[header.index("snip_id")], row[header.index("embryo_id")] = snip, embryo_id_of(snip)
            row[header.index("experiment_date")] = experiment
            fh.write(",".join(row) + "\n")
            if images:
                path = s.snip_path(experiment, snip)
                path.parent.mkdir(parents=True, exist_ok=True)
                snip_image(500 + i).save(path, quality=90)
    return ids


def stamps(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.glob("morph_latents_*.csv"))}


@pytest.fixture
def stored(tmp_path):
    """A pipeline root whose latent files exist (written by a test helper, no torch)."""
    s = make_pipeline_root(tmp_path, EXPERIMENTS, seed=2)
    for n, (exp, ids) in enumerate(s.snips.items()):
        write_latent_file(s.latent_dir(MODEL), exp, ids, latent_dim=6, seed=n)
    return s


def run(cli, s, *extra):
    return cli("build06", "--root", s.root, "--data-root", s.data_root, "--model-name", MODEL,
               "--log-format", "json", *extra)


def test_experiments_subset_with_overwrite_keeps_every_other_embedding(stored, cli):
    code, _, err = run(cli, stored)
    assert code == 0, err
    before = z_cells(df03_of(stored), 6)
    assert all(v.replace(b",", b"") for v in before.values())
    # new values for one experiment, so that df03 is out of date
    write_latent_file(stored.latent_dir(MODEL), "20240509_18ss", stored.snips["20240509_18ss"], latent_dim=6, seed=99)
    code, out, err = run(cli, stored, "--experiments", "20240509_18ss", "--overwrite", "--json")
    assert code == 0, err
    summary = json.loads(out)
    after = z_cells(df03_of(stored), 6)
    assert after.keys() == before.keys()
    changed = {k for k in before if before[k] != after[k]}
    assert changed == set(stored.snips["20240509_18ss"])  # every other row byte for byte
    assert summary["df03"]["written"] and summary["coverage"] == 1.0 and summary["rows"]["df03"] == 12
    assert summary["selected_experiments"] == ["20240509_18ss"]


def test_an_unknown_experiment_is_an_error_naming_the_closest(stored, cli):
    before = tree_digest(stored.root.parent)
    code, _, err = run(cli, stored, "--experiments", "20240509_18s", "--dry-run")
    last = err.strip().splitlines()[-1]
    assert code == 2 and "--experiments 20240509_18s has no rows in df02" in last and "20240509_18ss" in last
    assert tree_digest(stored.root.parent) == before


def test_a_misspelled_model_name_with_no_store_is_exit_2_with_did_you_mean(stored, cli):
    (stored.data_root / "models" / "legacy" / MODEL).mkdir(parents=True)
    before = tree_digest(stored.root.parent)
    for extra in (("--dry-run",), ()):
        code, out, err = cli("build06", "--root", stored.root, "--data-root", stored.data_root, "--model-name",
                             "tinyy", "--log-format", "json", *extra)
        plain = [line for line in err.splitlines() if not line.startswith("{")]
        assert code == 2 and len(plain) == 1, err
        store = stored.data_root / "analysis" / "latent_embeddings" / "legacy" / "tinyy"
        assert "model folder not found" in plain[0] and "did you mean tiny?" in plain[0], plain
        assert f"no latent store at {store}" in plain[0], plain
    assert tree_digest(stored.root.parent) == before


def test_another_model_name_is_one_reason(stored, cli):
    assert run(cli, stored)[0] == 0
    (stored.data_root / "analysis" / "latent_embeddings" / "legacy" / "other").mkdir()
    code, out, _ = cli("build06", "--root", stored.root, "--data-root", stored.data_root, "--model-name", "other",
                       "--dry-run", "--json", "--log-format", "json")
    assert json.loads(out)["df03_status"]["reasons"] == ["df03 was built with model 'tiny'; this run uses 'other'"]


def test_precise_reasons_and_the_honest_plan(stored, cli):
    s = stored
    no_image = s.snips["20231207"][0]
    s.snip_path("20231207", no_image).unlink()
    no_row = s.snips["20231207"][1]
    write_latent_file(s.latent_dir(MODEL), "20231207", [i for i in s.snips["20231207"] if i not in (no_image, no_row)],
                      latent_dim=6, seed=0)
    (s.latent_dir(MODEL) / "morph_latents_20250612_30hpf_ctrl_atf6.csv").unlink()
    code, out, err = run(cli, s, "--dry-run", "--json")
    plan = json.loads(out)
    assert plan["prediction"]["rows_never_embeddable"] == 1 and plan["prediction"]["rows_unembedded"] == 5
    assert any(w.startswith("predicted coverage 58.3% is below --min-coverage") for w in plan["warnings"])
    exp = {e["experiment"]: e for e in plan["experiments"]}
    assert exp["20231207"]["rows_without_image"] == 1 and exp["20231207"]["rows_without_latent"] == 2
    assert run(cli, s)[0] == 0
    _, rows = read_rows(df03_of(s).with_name("embryo_metadata_df03_unembedded.csv"))
    reasons = {r[0]: r[2] for r in rows}
    assert reasons == {
        no_image: f"no image at {s.snip_path('20231207', no_image)}",
        no_row: "no latent row although the image exists",
        **dict.fromkeys(s.snips["20250612_30hpf_ctrl_atf6"], "no latent file"),
    }
    # with --qc-filter, the rows it leaves out are listed with that reason
    code, out, err = run(cli, s, "--qc-filter", "--overwrite", "--json")
    assert code == 0, err
    _, rows = read_rows(df03_of(s).with_name("embryo_metadata_df03_unembedded.csv"))
    assert "excluded by --qc-filter" in {r[2] for r in rows}


def test_strict_fails_before_writing_anything(stored, cli):
    assert run(cli, stored)[0] == 0
    append_experiment(stored, NEW, 4)
    before = tree_digest(stored.root.parent)
    code, _, err = run(cli, stored, "--strict")
    last = err.strip().splitlines()[-1]
    assert code == 3 and last.startswith("morphseq-stages: error: --strict:") and "nothing written" in last
    assert "df02 changed: 4 new rows in 20250115_newexp" in last and "pass --overwrite to update it" in last
    assert tree_digest(stored.root.parent) == before


def test_summary_is_honest_when_df03_is_not_written(stored, cli):
    assert run(cli, stored)[0] == 0
    on_disk = df03_of(stored).read_bytes()
    append_experiment(stored, NEW, 4, images=False)
    write_latent_file(stored.latent_dir(MODEL), NEW, [f"{NEW}_C{i:02}_e00_t0000" for i in range(1, 5)], latent_dim=6)
    code, out, err = run(cli, stored, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert df03_of(stored).read_bytes() == on_disk
    assert summary["df03"]["written"] is False and summary["df03"]["status"] == "out-of-date"
    assert summary["rows"]["df03"] == 12 == len(on_disk.splitlines()) - 1  # what the file holds, not 16
    assert "pass --overwrite to update it" in summary["df03"]["reason"]
    assert any("df03" in w and "--overwrite" in w for w in summary["warnings"])
    code, out, _ = run(cli, stored)
    assert out.splitlines()[0].startswith("df03: NOT WRITTEN (out of date: df02 changed: 4 new rows in 20250115_newexp")


def test_sidecar_provenance(stored, cli):
    subprocess.run(["git", "init", "-q", str(stored.root)], check=True)
    subprocess.run(["git", "-C", str(stored.root), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    commit = subprocess.run(["git", "-C", str(stored.root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    code, _, err = run(cli, stored, "--export-analysis-copies")
    assert code == 0, err
    run_ids = {e.get("run_id") for e in load_json_lines(err)}
    side = json.loads(df03_of(stored).with_suffix(".json").read_text())
    assert {side["run_id"]} == run_ids and side["cwd"] and side["argv"]
    assert side["pipeline_root_git_commit"] == commit.strip() and side["host"] == socket.gethostname()
    assert side["versions"]["numpy"] and side["versions"]["Pillow"]
    entry = side["files"]["embryo_metadata_df03.csv"]
    assert entry["sha256"] == hashlib.sha256(df03_of(stored).read_bytes()).hexdigest()
    assert set(entry["built_from"]["latents"]) == set(EXPERIMENTS)
    assert side["z"]["columns"][:2] == ["z_mu_n_00", "z_mu_n_01"] and side["z"]["resolved"] == "bio_nuisance"
    assert side["paths"]["df02"] == str(stored.df02.resolve())
    assert {f["origin"] for f in side["latent_files"].values()} == {"unknown origin (no manifest entry)"}
    assert "error" in side["model"] and side["model"]["weights_sha256"] is None
    assert any("model folder not found" in w for w in side["warnings"])
    assert not any("unknown origin" in w for w in side["warnings"])  # logged once instead (see below)
    copies = json.loads((stored.data_root / "metadata" / "metadata_n_embeddings" / MODEL / "df03_copies.json").read_text())
    assert copies["run_id"] == side["run_id"] and set(copies["files"]) == {f"df03_{e}.csv" for e in EXPERIMENTS}


@pytest.fixture
def generated(tmp_path, cli):
    pytest.importorskip("torch")
    from morphseq_legacy.testing import make_legacy_model

    s = make_pipeline_root(tmp_path, EXPERIMENTS, seed=4)
    make_legacy_model(s.data_root / "models" / "legacy" / MODEL, latent_dim=6, n_out_channels=2, seed=1)
    code, _, err = run(cli, s, "--generate-missing-latents", "--export-analysis-copies")
    assert code == 0, err
    return s


def test_the_daily_update_appends_a_new_experiment(generated, cli):
    s = generated
    store = s.latent_dir(MODEL)
    before_z, before_files = z_cells(df03_of(s), 6), stamps(store)
    new_ids = append_experiment(s, NEW, 4)
    # the plan says why df03 is out of date, and what would update it
    code, out, _ = run(cli, s, "--generate-missing-latents", "--dry-run", "--json")
    plan = json.loads(out)
    assert plan["df03_status"]["status"] == "out-of-date"
    assert "df02 changed: 4 new rows in 20250115_newexp" in plan["df03_status"]["reasons"]
    assert {e["experiment"]: e["action"] for e in plan["experiments"]}[NEW] == "generate"
    code, out, _ = run(cli, s, "--generate-missing-latents", "--dry-run")
    assert "df03: out of date: df02 changed: 4 new rows in 20250115_newexp" in out
    assert "pass --overwrite to update it (nothing is re-embedded)" in out
    # the update: the new embeddings join, every earlier one stays, no latent file is touched
    code, out, err = run(cli, s, "--generate-missing-latents", "--overwrite", "--json")
    assert code == 0, err
    after = z_cells(df03_of(s), 6)
    assert {k: after[k] for k in before_z} == before_z
    assert all(after[i].count(b",") == 5 and b",," not in after[i] for i in new_ids)
    now = stamps(store)
    assert {k: now[k] for k in before_files} == before_files and set(now) - set(before_files) == {
        f"morph_latents_{NEW}.csv"}
    summary = json.loads(out)
    assert summary["df03"]["written"] and summary["rows"]["df03"] == 16 and summary["coverage"] == 1.0
    assert summary["generated"]["rows"] == 4
    side = json.loads(df03_of(s).with_suffix(".json").read_text())
    config = next((s.data_root / "models" / "legacy" / MODEL).rglob("model_config.json"))
    assert side["model"]["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert {v["origin"] for v in side["latent_files"].values()} == {"manifest"}
    # then everything is current: a rerun writes nothing
    before = tree_digest(s.root.parent)
    code, out, _ = run(cli, s, "--generate-missing-latents", "--overwrite")
    assert code == 0 and tree_digest(s.root.parent) == before
    assert out.splitlines()[0].startswith("df03: current, not rewritten")


def test_analysis_copies_follow_their_own_experiment(generated, cli):
    s = generated
    folder = s.data_root / "metadata" / "metadata_n_embeddings" / MODEL
    copies = {p.name: p.read_bytes() for p in folder.glob("df03_2*.csv")}
    append_experiment(s, NEW, 2)
    code, out, _ = run(cli, s, "--generate-missing-latents", "--export-analysis-copies", "--dry-run", "--json")
    status = {Path(o["path"]).name: o["status"] for o in json.loads(out)["outputs"] if o["kind"] == "analysis"}
    assert status == {**dict.fromkeys(copies, "current"), f"df03_{NEW}.csv": "new"}
    code, _, err = run(cli, s, "--generate-missing-latents", "--export-analysis-copies", "--overwrite")
    assert code == 0, err
    assert {p.name: p.read_bytes() for p in folder.glob("df03_2*.csv") if p.name in copies} == copies
    assert (folder / f"df03_{NEW}.csv").is_file()
    recorded = json.loads((folder / "df03_copies.json").read_text())["files"]
    assert set(recorded) == {*copies, f"df03_{NEW}.csv"}


def test_overwrite_latents_re_embeds_only_the_selected_experiment(generated, cli):
    s = generated
    before = stamps(s.latent_dir(MODEL))
    code, out, err = run(cli, s, "--overwrite-latents", "--experiments", "20231207", "--overwrite", "--json")
    assert code == 0, err
    now = stamps(s.latent_dir(MODEL))
    assert [k for k in before if before[k] != now[k]] == ["morph_latents_20231207.csv"]
    assert json.loads(out)["generated"]["rows"] == 5


def test_the_plan_names_what_changed(stored, cli):
    assert run(cli, stored)[0] == 0

    def reasons(*extra):
        code, out, err = run(cli, stored, "--dry-run", "--json", *extra)
        assert code == 0, err
        return json.loads(out)["df03_status"]

    assert reasons() == {"status": "current", "reasons": [], "action": "skip"}
    assert reasons("--z-schema", "bio_nuisance")["reasons"] == ["--z-schema changed (auto -> bio_nuisance)"]
    assert reasons("--qc-filter")["reasons"] == ["--qc-filter changed (off -> on)"]
    write_latent_file(stored.latent_dir(MODEL), "20231207", stored.snips["20231207"], latent_dim=6, seed=42)
    assert reasons()["reasons"] == ["latent file for 20231207 changed"]
    lines = stored.df02.read_bytes().splitlines(keepends=True)
    stored.df02.write_bytes(b"".join(lines[:2] + [lines[2].replace(b"wik", b"ab")] + lines[3:]))
    assert reasons()["reasons"] == ["df02 changed: 1 row edited in 20231207", "latent file for 20231207 changed"]
    # edited and removed rows of one experiment, and rows of another only reordered
    lines = stored.df02.read_bytes().splitlines(keepends=True)  # header, 5 x 20231207, 4 x 20240509_18ss, ...
    edited = [ln.replace(b"E3", b"E3 medium") for ln in lines[1:3]]
    stored.df02.write_bytes(b"".join([lines[0], *edited, *lines[3:5], lines[7], lines[6], *lines[8:]]))
    assert reasons()["reasons"] == ["df02 changed: 2 rows edited, 1 removed in 20231207; rows of 20240509_18ss "
                                    "reordered", "latent file for 20231207 changed"]


def test_overwrite_with_no_latent_file_keeps_df03(stored, cli):
    assert run(cli, stored)[0] == 0
    before = df03_of(stored).read_bytes()
    (stored.data_root / "analysis" / "latent_embeddings" / "legacy" / "tinny").mkdir()  # a store with no file
    code, out, err = cli("build06", "--root", stored.root, "--data-root", stored.data_root, "--model-name", "tinny",
                         "--overwrite", "--log-format", "json")
    assert code == 0 and df03_of(stored).read_bytes() == before
    assert "no latent file to merge (check --model-name and --data-root); df03 kept" in out


def on_disk(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its sha256 and mtime."""
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_unreadable_snips_write_no_latent_file_and_a_rerun_changes_nothing(generated, cli):
    s = generated
    store = s.latent_dir(MODEL)
    broken = append_experiment(s, NEW, 2)  # every image of NEW unreadable
    s.snip_path(NEW, broken[0]).write_bytes(b"not a jpeg")
    s.snip_path(NEW, broken[1]).unlink()
    s.snip_path(NEW, broken[1]).symlink_to(s.snip_path(NEW, broken[1]).with_name("gone.jpg"))  # a missing file
    partly = append_experiment(s, "20250116_partly", 2)  # one image readable, one not
    s.snip_path("20250116_partly", partly[1]).write_bytes(b"\xff\xd8\xff truncated")
    code, out, err = run(cli, s, "--generate-missing-latents", "--overwrite", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert not (store / f"morph_latents_{NEW}.csv").exists()  # no header-only file
    assert summary["generated"]["files"] == [str(store / "morph_latents_20250116_partly.csv")]
    assert summary["generated"]["rows"] == 1 and summary["rows"]["df03"] == 16 and summary["rows"]["matched"] == 13
    _, rows = read_rows(df03_of(s).with_name("embryo_metadata_df03_unembedded.csv"))
    reasons = {r[0]: r[2] for r in rows}
    assert reasons[broken[0]] == f"unreadable image {s.snip_path(NEW, broken[0])}"
    assert reasons[partly[1]] == f"unreadable image {s.snip_path('20250116_partly', partly[1])}"
    assert reasons[broken[1]].startswith("no image at ")  # a dangling link is no image
    recorded = json.loads((store / "manifest.json").read_text())["unreadable"]
    assert set(recorded) == {NEW, "20250116_partly"} and set(recorded[NEW]) == {f"{broken[0]}.jpg"}
    # the images found unreadable by this very run count as never embeddable, as on later runs
    sidecar = json.loads(df03_of(s).with_suffix(".json").read_text())
    assert sidecar["counts"]["rows_never_embeddable"] == 3
    assert summary["df03"]["never_embeddable"] == 3
    # the next identical run plans nothing, says df03 is current, and changes no file
    before = on_disk(s.root.parent)
    code, out, _ = run(cli, s, "--generate-missing-latents", "--overwrite", "--dry-run", "--json")
    plan = json.loads(out)
    assert plan["df03_status"] == {"status": "current", "reasons": [], "action": "skip"}
    actions = {e["experiment"]: (e["action"], e["images_to_embed"]) for e in plan["experiments"]}
    assert actions[NEW] == ("missing", 0) and actions["20250116_partly"] == ("read", 0)
    assert not any(w["action"] in ("generate", "top-up", "write", "overwrite") for w in plan["writes"])
    code, out, err = run(cli, s, "--generate-missing-latents", "--overwrite", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["df03"]["status"] == "current" and summary["written"] == []
    assert on_disk(s.root.parent) == before
    # a replaced image is tried again
    snip_image(7).save(s.snip_path(NEW, broken[0]), quality=90)
    code, out, _ = run(cli, s, "--generate-missing-latents", "--dry-run", "--json")
    assert {e["experiment"]: e["action"] for e in json.loads(out)["experiments"]}[NEW] == "generate"


def test_a_plain_update_twice_changes_nothing_the_second_time(generated, cli):
    s = generated
    ids = append_experiment(s, NEW, 2)
    s.snip_path(NEW, ids[0]).write_bytes(b"not a jpeg")
    code, _, err = run(cli, s, "--generate-missing-latents")
    assert code == 0, err
    before = on_disk(s.root.parent)
    code, out, _ = run(cli, s, "--generate-missing-latents", "--dry-run", "--json")
    plan = json.loads(out)
    assert [w for w in plan["writes"] if w["action"] not in ("skip",)] == []
    assert plan["df03_status"]["reasons"] == ["df02 changed: 2 new rows in 20250115_newexp",
                                            "latent file for 20250115_newexp added"]
    code, out, err = run(cli, s, "--generate-missing-latents", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert on_disk(s.root.parent) == before and summary["written"] == []
    assert summary["generated"] == {"files": [], "rows": 0, "unreadable_images": 0, "not_topped_up": []}


def test_the_plan_lists_latent_files_and_the_manifest_as_they_are(generated, cli):
    s = generated
    append_experiment(s, NEW, 2)
    latent = s.latent_dir(MODEL) / f"morph_latents_{NEW}.csv"
    code, out, _ = run(cli, s, "--generate-missing-latents", "--dry-run", "--json")
    manifest = next(o for o in json.loads(out)["outputs"] if o["kind"] == "manifest")
    assert manifest["status"] == "out-of-date" and manifest["status_reasons"] == [f"latent files to record: {NEW} written"]
    code, out, _ = run(cli, s, "--generate-missing-latents", "--dry-run")
    outputs = out[out.index("outputs:"):]
    assert f"  generate  {latent}  (2 image(s) to embed: no latent file)" in outputs
    code, _, err = run(cli, s, "--generate-missing-latents", "--overwrite")
    assert code == 0, err
    events = load_json_lines(err)
    staged = {e["path"]: e for e in events if e["event"] == "write.staged"}
    assert "rows" not in staged[str(df03_of(s).with_suffix(".json"))] and staged[str(df03_of(s))]["rows"] == 14
    # in place only when their folder's set is committed, df03's sidecar renamed last
    committed = {e["folder"]: e["files"] for e in events if e["event"] == "outputs.committed"}
    assert committed[str(df03_of(s).parent)][-1] == "embryo_metadata_df03.json"
    assert committed[str(s.latent_dir(MODEL))] == [latent.name, "manifest.json"]


def test_coverage_of_a_df03_not_rewritten_is_the_file_on_disk(stored, cli):
    s = stored
    ids = s.snips["20240509_18ss"]
    write_latent_file(s.latent_dir(MODEL), "20240509_18ss", ids[:3], latent_dim=6, seed=1)  # 3 of 4 embedded
    assert run(cli, s, "--experiments", "20231207")[0] == 0  # df03 on disk: 11 of 12 rows
    append_experiment(s, NEW, 4, images=False)  # df03 out of date; a rewrite would hold 11 of 16
    code, out, err = run(cli, s, "--experiments", "20240509_18ss", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["df03"]["written"] is False and summary["rows"]["df03"] == 12
    assert summary["coverage"] == pytest.approx(11 / 12)
    assert summary["df03"]["coverage_selected"] == pytest.approx(3 / 4)  # this run's selection, in the file
    warnings = summary["warnings"]
    assert "if df03 were rewritten (--overwrite), its coverage 68.8% is below --min-coverage 95.0%" in warnings
    assert "df03 on disk (not rewritten): coverage 91.7% is below --min-coverage 95.0%" in warnings
    assert not any(w.startswith("coverage ") for w in warnings)
    code, out, _ = run(cli, s, "--dry-run")
    assert "warning: predicted, if df03 were rewritten (--overwrite), its coverage 68.8% is below" in out
    # a model whose store holds no latent file: nothing to merge, df03 kept; no "coverage 0.0%"
    (s.data_root / "analysis" / "latent_embeddings" / "legacy" / "tinny").mkdir()
    code, out, err = cli("build06", "--root", s.root, "--data-root", s.data_root, "--model-name", "tinny",
                         "--log-format", "json", "--json")
    warnings = json.loads(out)["warnings"]
    assert code == 0 and not any("0.0%" in w for w in warnings)
    assert "df03 on disk (not rewritten): coverage 91.7% is below --min-coverage 95.0%" in warnings


def test_an_old_store_without_manifest_merges_under_strict(stored, cli):
    code, out, err = run(cli, stored, "--strict")
    events = [e for e in load_json_lines(err[:err.rindex("morphseq-stages: error")]) if e["event"] == "latents.unknown_origin"]
    assert len(events) == 1 and events[0]["files"] == [f"morph_latents_{e}.csv" for e in EXPERIMENTS]
    last = err.strip().splitlines()[-1]  # this test has no model folder: --strict fails on that alone
    assert code == 3 and "--strict: 1 warning(s), nothing written: model folder not found" in last
    code, out, err = run(cli, stored, "--dry-run", "--json")
    assert [w for w in json.loads(out)["warnings"] if "unknown origin" in w or "manifest" in w] == []


def test_an_unreadable_manifest_is_a_console_warning(stored, cli):
    manifest = stored.latent_dir(MODEL) / "manifest.json"
    manifest.write_text("{not json")
    code, out, err = run(cli, stored)
    assert code == 0, err
    warning = next(ln for ln in out.splitlines() if ln.startswith(f"warning: cannot read {manifest}"))
    assert "read as of unknown origin" in warning
