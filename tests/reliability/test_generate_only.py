"""--generate-only jobs side by side, an empty Parquet shard, a full disk while generating."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from morphseq_build06 import generate_only

from . import scenario
from conftest import fill_disk, read_rows, small_tmpfs, tree_digest

EXP = "20231207"


def _job(synth, fmt: str, *extra: str) -> list[str]:
    return scenario.args(synth, "--generate-only", "--generate-missing-latents", "--experiments", EXP,
                         "--workers", "1", "--latent-format", fmt, *extra)


def _store_files(synth) -> list[str]:
    return sorted(p.name for p in synth.latent_dir(scenario.MODEL).glob(f"morph_latents_{EXP}.*"))


@pytest.mark.parametrize("point", ["before-embedding", "before-writing"])
def test_two_generate_only_jobs_with_different_formats_leave_one_latent_file(cli, monkeypatch, tmp_path, point):
    """The parquet job plans while no file exists; the csv job then runs to its end (before
    the first job embeds, or after it embedded and before it writes): one file remains."""
    pytest.importorskip("torch")
    synth = scenario.model_root(tmp_path)
    other = lambda: scenario.run_cli(_job(synth, "csv"))  # noqa: E731
    if point == "before-embedding":
        real = generate_only.generate

        def generate(plan, registry):
            assert other().returncode == 0
            return real(plan, registry)

        monkeypatch.setattr(generate_only, "generate", generate)
    else:
        real_write = generate_only.store_write

        def store_write(plan, exp):
            assert other().returncode == 0
            return real_write(plan, exp)

        monkeypatch.setattr(generate_only, "store_write", store_write)
    code, out, err = cli(*_job(synth, "parquet", "--json"))
    assert code in (0, 2, 75), err
    assert _store_files(synth) == [f"morph_latents_{EXP}.csv"]
    if code == 0:
        summary = json.loads(out)
        assert summary["generated"]["files"] == [] and summary["skipped"], summary
    manifest = json.loads((synth.latent_dir(scenario.MODEL) / "manifest.json").read_text())
    assert sorted(manifest["files"]) == [f"morph_latents_{EXP}.csv"]


def test_a_zero_row_parquet_shard_is_named_not_misread(tmp_path, cli):
    synth = scenario.merge_root(tmp_path)
    code, _, err = cli(*scenario.args(synth))
    assert code == 0, err
    store = synth.latent_dir(scenario.MODEL)
    lab = tmp_path / "lab" / "feature_extraction" / EXP / "latent_embeddings" / "per_well"
    header, rows = read_rows(store / f"morph_latents_{EXP}.csv")
    z = [c for c in header if c.startswith("z_")]
    full = lab / f"{EXP}_A01" / f"{EXP}_A01_latents.parquet"
    full.parent.mkdir(parents=True)
    si = header.index("snip_id")
    pq.write_table(pa.table({"snip_id": [r[si] for r in rows],
                             **{c: [float(r[header.index(c)]) for r in rows] for c in z},
                             "embedding_model_name": [scenario.MODEL] * len(rows)}), full)
    empty = lab / f"{EXP}_B01" / f"{EXP}_B01_latents.parquet"
    empty.parent.mkdir()
    # what pandas writes for an empty frame: columns with no type
    pq.write_table(pa.table({"snip_id": pa.nulls(0), **{c: pa.nulls(0) for c in z},
                             "embedding_model_name": pa.nulls(0)}), empty)
    for p in (full, empty):
        p.with_name(p.name + ".validated").write_text("ok\n")
    df03 = synth.df02.with_name("embryo_metadata_df03.csv")
    before = df03.read_bytes()
    code, _, err = cli(*scenario.args(synth, "--latents-root", str(tmp_path / "lab"), "--overwrite"))
    assert code == 0, err
    assert "snip_id must be text" not in err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e["event"] == "latents.empty_file" and e["path"] == str(empty) for e in events)
    assert df03.read_bytes() == before  # the same latents, from the lab's shards
    # an experiment whose only file is empty: its rows are unembedded, nothing else
    full.unlink()
    code, _, err = cli(*scenario.args(synth, "--latents-root", str(tmp_path / "lab"), "--overwrite"))
    assert code == 0, err
    header, rows = read_rows(df03)
    zi, ei = header.index(z[0]), header.index("experiment_date")
    assert all(r[zi] == "" for r in rows if r[ei] == EXP)


@pytest.fixture
def store_disk(tmp_path):
    """A model root whose latent store is a small tmpfs of its own."""
    pytest.importorskip("torch")
    synth = scenario.model_root(tmp_path)
    with small_tmpfs(synth.latent_dir(scenario.MODEL), "64k") as store:
        yield synth, store


def test_a_full_disk_while_generating_names_the_file_and_writes_nothing_half(store_disk, tmp_path, cli):
    synth, store = store_disk
    argv = scenario.args(synth, "--generate-only", "--generate-missing-latents", "--experiments", EXP,
                         "--workers", "1")
    for leave in range(5):  # room for less and less of the set: the lock, the latent file, the manifest, its journal
        fill_disk(store, leave)
        before = tree_digest(tmp_path)
        code, _, err = cli(*argv)
        plain = [line for line in err.splitlines() if not line.startswith("{")]
        if code == 0:  # room enough for all of it
            assert sorted(p.name for p in store.iterdir() if not p.name.startswith(".")) == \
                ["filler", "manifest.json", f"morph_latents_{EXP}.csv"]
            break
        assert code == 2, err
        assert len(plain) == 1 and "No space left on device" in plain[0], plain
        assert f"cannot write {store}" in plain[0] or f"cannot take lock {store}" in plain[0], plain
        assert tree_digest(tmp_path) == before, leave  # nothing half-written, nothing left behind
    else:
        pytest.fail("the run never had room enough")
