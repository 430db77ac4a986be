"""Counterexamples the model-based test found and shrank, each as a plain test."""

from __future__ import annotations

import pytest

from .world import Options, World


@pytest.fixture
def world(tmp_path):
    pytest.importorskip("torch", reason="the model's world embeds with a legacy model (torch)")
    w = World(tmp_path, seed=16)
    w.append_experiment("20231207", 3)
    return w


def test_generate_only_overwrite_latents_into_the_other_format_writes_it(world):
    # found by the model: latent_file_from_elsewhere(20231207) then
    # build06 --generate-only --overwrite-latents --latent-format parquet
    world.foreign_latent_file("20231207", world.snips("20231207")[:2], seed=1)
    result = world.run(Options(generate_only=True, overwrite_latents=True, latent_format="parquet"))
    assert result.code == 0, result.stderr
    assert "another run wrote it" not in result.stderr
    assert (world.store / "morph_latents_20231207.parquet").is_file()
    assert str(world.store / "morph_latents_20231207.parquet") in result.json["written"]



def test_a_reembedding_into_the_same_bytes_leaves_df03_current(world):
    # found by the model: build06 --overwrite-latents twice; the second run re-embeds the
    # same bytes, yet its summary (and --strict, and the API) calls df03 out of date
    first = world.run(Options(overwrite_latents=True))
    assert first.code == 0, first.stderr
    again = world.run(Options(overwrite_latents=True))
    assert again.code == 0, again.stderr
    assert world.run(Options(dry_run=True)).json["df03_status"]["status"] == "current"
    assert again.json["df03"]["status"] == "current", again.json["df03"]["reason"]


def test_a_typed_copy_beside_a_kept_df03_holds_its_rows(world):
    # found by the model: build06; remove a df02 row; build06 --formats csv,parquet (no
    # --overwrite): df03.csv is kept (out of date) but df03.parquet is written from the new
    # merge, one row short, and its record (then typed_copies.json) called it made from df03.csv as it is
    import pyarrow.parquet as pq

    world.append_experiment("20240509_18ss", 1)
    assert world.run(Options(generate_missing_latents=True)).code == 0
    world.remove_row(0)
    result = world.run(Options(formats=("parquet",)))
    assert result.code == 0, result.stderr
    assert result.json["df03"]["status"] == "out-of-date"
    csv_rows = len(world.df03.read_text().splitlines()) - 1
    parquet = world.df03.with_suffix(".parquet")
    assert not parquet.exists() or pq.read_table(parquet).num_rows == csv_rows


def test_the_plan_of_a_flat_schema_run_that_embeds_b_n_columns_says_it_fails(world):
    # found by the model: a model naming z_mu_n_/z_mu_b_, no latent file yet;
    # build06 --generate-missing-latents --z-schema flat --dry-run exited 0 (df03 "new",
    # coverage 100 %), the same run without --dry-run embedded every snip and exited 2
    opts = Options(generate_missing_latents=True, z_schema="flat")
    before = world.snapshot()
    plan = world.run(opts, dry_run=True)
    real = world.run(opts)
    assert (plan.code, real.code) == (2, 2), real.stderr[-300:]
    assert plan.json["error"] == real.json["error"]
    assert real.json["error"].startswith("--z-schema flat cannot read the z columns model 'm' writes (z_mu_n_00")
    assert not before.changed(world.snapshot(), rewrites=True)


def test_generate_only_with_the_flat_schema_writes_no_latent_file_the_next_merge_refuses(world):
    # found by the model: build06 --generate-only --z-schema flat wrote a b/n latent file,
    # then build06 --z-schema flat refused it (no z columns for --z-schema flat)
    gen = world.run(Options(generate_only=True, z_schema="flat"))
    assert gen.code == 2 and "--z-schema flat cannot read" in gen.json["error"]
    assert not world.store.exists() or not list(world.store.glob("morph_latents_*"))
    merge = world.run(Options(z_schema="flat"))
    assert merge.code == 0, merge.stderr[-300:]


def test_a_reembedding_that_reads_no_image_keeps_the_existing_latent_file_in_df03(world):
    # found by the model: build06 --generate-missing-latents; every snip of 20231207 breaks;
    # build06 --overwrite --overwrite-latents --latent-format parquet embeds nothing (no image
    # decodes), writes no parquet file, and rewrites df03 without 20231207's embeddings while
    # morph_latents_20231207.csv still holds them (the next plain run: "latent file added")
    world.append_experiment("20240509_18ss", 1)
    assert world.run(Options(generate_missing_latents=True)).code == 0
    for i in range(3):
        world.break_snip(i)  # the three images of 20231207, first in sorted order
    result = world.run(Options(overwrite=True, overwrite_latents=True, latent_format="parquet"))
    assert result.code == 0, result.stderr[-300:]
    assert (world.store / "morph_latents_20231207.csv").is_file()
    assert result.json["df03"]["matched"] == 4, result.json["df03"]


def test_an_identical_strict_overwrite_latents_rerun_exits_as_the_first(world):
    # found by the model: build06 --overwrite-latents --strict exits 0 (df03 new); the same
    # command again exits 3: "df03 ... is out of date: latent file for 20231207 re-embedded
    # by this run; not updated", though without --strict that run leaves df03 current
    first = world.run(Options(overwrite_latents=True, strict=True))
    assert first.code == 0, first.stderr[-300:]
    again = world.run(Options(overwrite_latents=True, strict=True))
    assert again.code == 0, again.stderr[-300:]


def test_an_analysis_copy_called_current_has_df03s_columns(world):
    # found by the model: build06 --export-analysis-copies with no latent file at all (df03
    # and the copies without z columns); a latent file for 20231207 arrives; build06
    # --export-analysis-copies --overwrite rewrites df03 and df03_20231207.csv with the z
    # columns, but calls df03_20240509_18ss.csv "current" and leaves it without them
    world.append_experiment("20240509_18ss", 1)
    assert world.run(Options(export_analysis_copies=True)).code == 0
    world.foreign_latent_file("20231207", world.snips("20231207")[:1], seed=0)
    result = world.run(Options(export_analysis_copies=True, overwrite=True))
    assert result.code == 0, result.stderr[-300:]
    df03_header = world.df03.read_text().splitlines()[0]
    assert df03_header.endswith("z_mu_b_04")
    assert (world.copies_dir / "df03_20240509_18ss.csv").read_text().splitlines()[0] == df03_header
