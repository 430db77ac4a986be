"""One check of model identity and z schema for every latent source (SPEC §12, issue 17
item 3): store CSV, store Parquet, a lab merged file, lab per-well shards.

A source of another model (its manifest entry, or the ``embedding_model_name`` of its
rows) is named in a warning with both models (``--strict``: exit 3) and not merged: its
rows stay unembedded with the reason. A store file changed since its manifest entry is
named in a warning and not said to come from the manifest. A source whose z columns name
other dimensions than the run's is left out (or refused, within one folder of shards),
never half-merged; the order of shards decides nothing.
"""

from __future__ import annotations

import json
import shutil

import pytest

from . import scenario
from conftest import read_rows

torch = pytest.importorskip("torch")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

EXP, OTHER_EXP = "20231207", "20240509_18ss"
OTHER_MODEL = "another_model"


def _generated(tmp_path, cli, fmt="csv"):
    """A root whose store holds this model's latent files (``fmt``) and their manifest."""
    synth = scenario.model_root(tmp_path)
    code, _, err = cli(*scenario.args(synth, "--generate-missing-latents", "--workers", "1", "--latent-format", fmt))
    assert code == 0, err
    return synth


def _store(synth):
    return synth.latent_dir(scenario.MODEL)


def _manifest(synth):
    return json.loads((_store(synth) / "manifest.json").read_text())


def _set_manifest(synth, data):
    (_store(synth) / "manifest.json").write_text(json.dumps(data))


def _rename_model(path, name=OTHER_MODEL, only_first=False):
    table = pq.read_table(path)
    names = [name] * table.num_rows if not only_first else [name] + table.column("embedding_model_name").to_pylist()[1:]
    at = table.column_names.index("embedding_model_name")
    pq.write_table(table.set_column(at, "embedding_model_name", pa.array(names, pa.string())), path)


def _lab(tmp_path, experiment):
    return tmp_path / "lab" / "feature_extraction" / experiment / "latent_embeddings"


def _validated(path):
    path.with_name(path.name + ".validated").write_text("ok\n")
    return path


def _shards(source, folder, experiment, transform=None):
    """The rows of a Parquet latent file as one validated shard per well."""
    table = pq.read_table(source)
    wells = sorted({s.split("_")[-3] for s in table.column("snip_id").to_pylist()})
    out = []
    for k, well in enumerate(wells):
        part = table.filter(pa.array([s.split("_")[-3] == well for s in table.column("snip_id").to_pylist()]))
        if transform is not None:
            part = transform(k, part)
        path = folder / "per_well" / f"{experiment}_{well}" / f"{experiment}_{well}_latents.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, path)
        out.append(_validated(path))
    return out


def _df03_z(synth):
    df02_header, _ = read_rows(synth.df02)
    header, rows = read_rows(synth.df02.with_name("embryo_metadata_df03.csv"))
    snip, width = df02_header.index("snip_id"), len(df02_header)
    for r in rows:
        assert len(r) == len(header)
        z = r[width:]
        assert all(c == "" for c in z) or all(c != "" for c in z), r  # never half-merged
    return {r[snip]: r[width:] for r in rows}


def _reasons(synth):
    _, rows = read_rows(synth.df02.with_name("embryo_metadata_df03_unembedded.csv"))
    return {r[0]: r[2] for r in rows}


def _run(synth, cli, *extra):
    code, out, err = cli(*scenario.args(synth, "--overwrite", "--min-coverage", "0", "--json", *extra))
    assert code == 0, err
    return json.loads(out)


def _assert_left_out(synth, cli, summary, named, *words, experiment=EXP, extra=()):
    """``experiment``'s rows unembedded, a warning naming ``named`` and ``words``, the
    others' rows embedded; --strict exit 3."""
    warned = [w for w in summary["warnings"] if named in w]
    assert warned and all(any(word in w for w in warned) for word in words), summary["warnings"]
    z = _df03_z(synth)
    reasons = _reasons(synth)
    for snip in synth.snips[experiment]:
        assert z[snip] == [""] * len(z[snip]), snip
        assert reasons[snip] and "no latent row" not in reasons[snip], reasons[snip]
    others = [s for e, ids in synth.snips.items() if e != experiment for s in ids]
    assert all(z[s][0] != "" for s in others)
    code, _, err = cli(*scenario.args(synth, "--overwrite", "--min-coverage", "0", "--strict", *extra))
    assert code == 3, err
    assert named in err


# --- another model's latents -------------------------------------------------------


def test_a_store_csv_recorded_for_another_model_is_not_merged(tmp_path, cli):
    synth = _generated(tmp_path, cli)
    data = _manifest(synth)
    entry = data["files"][f"morph_latents_{EXP}.csv"]
    entry.update(model_fingerprint="f" * 64, model_name=OTHER_MODEL)
    _set_manifest(synth, data)
    summary = _run(synth, cli)
    _assert_left_out(synth, cli, summary, f"morph_latents_{EXP}.csv", OTHER_MODEL, "'m'")
    assert "another model" in _reasons(synth)[synth.snips[EXP][0]]


def test_another_models_store_file_copied_in_with_its_entry_is_not_merged(tmp_path, cli):
    """Another model's store (same architecture, other weights): its latent file and its
    manifest entry copied into this model's store."""
    from morphseq_legacy.testing import make_legacy_model

    synth = _generated(tmp_path, cli)
    other = synth.data_root / "models" / "legacy" / OTHER_MODEL
    make_legacy_model(other, input_dim=scenario.INPUT_DIM, latent_dim=4, n_conv_layers=3, n_out_channels=2, seed=9)
    code, _, err = cli(*scenario.args(synth, "--model-name", OTHER_MODEL, "--generate-missing-latents",
                                      "--workers", "1", "--experiments", EXP, "--overwrite"))
    assert code == 0, err
    theirs = synth.latent_dir(OTHER_MODEL)
    name = f"morph_latents_{EXP}.csv"
    shutil.copy(theirs / name, _store(synth) / name)
    data = _manifest(synth)
    data["files"][name] = json.loads((theirs / "manifest.json").read_text())["files"][name]
    _set_manifest(synth, data)
    summary = _run(synth, cli)
    _assert_left_out(synth, cli, summary, name, OTHER_MODEL)


@pytest.mark.parametrize("entry", ["this model's entry", "no entry"])
@pytest.mark.parametrize("rows", ["all rows", "one row"])
def test_a_store_parquet_naming_another_model_is_not_merged(tmp_path, cli, entry, rows):
    synth = _generated(tmp_path, cli, "parquet")
    path = _store(synth) / f"morph_latents_{EXP}.parquet"
    _rename_model(path, only_first=rows == "one row")
    if entry == "no entry":
        data = _manifest(synth)
        del data["files"][path.name]
        _set_manifest(synth, data)
    summary = _run(synth, cli)
    _assert_left_out(synth, cli, summary, path.name, OTHER_MODEL, "'m'")


def test_a_lab_merged_file_of_another_model_is_not_merged(tmp_path, cli):
    synth = _generated(tmp_path, cli, "parquet")
    store_file = _store(synth) / f"morph_latents_{EXP}.parquet"
    merged = _lab(tmp_path, EXP) / f"{EXP}_latents.parquet"
    merged.parent.mkdir(parents=True)
    shutil.copy(store_file, merged)
    _rename_model(merged)
    _validated(merged)
    summary = _run(synth, cli, "--latents-root", str(tmp_path / "lab"))
    _assert_left_out(synth, cli, summary, merged.name, OTHER_MODEL, "'m'",
                     extra=("--latents-root", str(tmp_path / "lab")))


@pytest.mark.parametrize("odd", ["first shard", "last shard"])
def test_lab_shards_one_of_another_model_are_not_merged(tmp_path, cli, odd):
    synth = _generated(tmp_path, cli, "parquet")
    store_file = _store(synth) / f"morph_latents_{EXP}.parquet"
    shards = _shards(store_file, _lab(tmp_path, EXP), EXP)
    assert len(shards) > 1
    _rename_model(shards[0] if odd == "first shard" else shards[-1])
    summary = _run(synth, cli, "--latents-root", str(tmp_path / "lab"))
    named = (shards[0] if odd == "first shard" else shards[-1]).name
    _assert_left_out(synth, cli, summary, named, OTHER_MODEL, "'m'", extra=("--latents-root", str(tmp_path / "lab")))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_store_file_changed_since_its_manifest_entry_is_a_warning(tmp_path, cli, fmt):
    synth = _generated(tmp_path, cli, fmt)
    path = _store(synth) / f"morph_latents_{EXP}.{fmt}"
    if fmt == "csv":
        text = path.read_text().splitlines()
        cells = text[1].split(",")
        cells[-1] = "0.125"
        text[1] = ",".join(cells)
        path.write_text("\n".join(text) + "\n")
    else:
        table = pq.read_table(path)
        at = next(i for i, n in enumerate(table.column_names) if n.startswith("z_mu"))
        values = table.column(at).to_pylist()
        values[0] = 0.125
        pq.write_table(table.set_column(at, table.column_names[at], pa.array(values, table.column(at).type)), path)
    summary = _run(synth, cli)
    assert any(path.name in w and "manifest.json" in w for w in summary["warnings"]), summary["warnings"]
    side = json.loads(synth.df02.with_name("embryo_metadata_df03.json").read_text())
    assert side["latent_files"][EXP]["origin"] != "manifest"
    assert side["latent_files"][OTHER_EXP]["origin"] == "manifest"
    code, _, err = cli(*scenario.args(synth, "--overwrite", "--min-coverage", "0", "--strict"))
    assert code == 3 and path.name in err


# --- other z columns than the run's -------------------------------------------------


def _drop_last_mu(path):
    lines = [ln.split(",") for ln in path.read_text().splitlines()]
    at = max(i for i, n in enumerate(lines[0]) if n.startswith("z_mu"))
    path.write_text("\n".join(",".join(c[:at] + c[at + 1:]) for c in lines) + "\n")


def test_a_store_csv_with_fewer_dimensions_is_left_out(tmp_path, cli):
    synth = _generated(tmp_path, cli)
    path = _store(synth) / f"morph_latents_{EXP}.csv"
    _drop_last_mu(path)
    data = _manifest(synth)
    data["files"].pop(path.name)
    _set_manifest(synth, data)
    summary = _run(synth, cli)
    _assert_left_out(synth, cli, summary, path.name, "dimension")


def test_store_files_that_agree_with_each_other_but_not_with_the_model_are_left_out(tmp_path, cli):
    """Every latent file of the store, of unknown origin (no manifest), one mean dimension
    short of what the model writes: they agree with each other, so only the model's own
    columns (from its describe) tell that they are another model's. Never merged as its."""
    synth = _generated(tmp_path, cli)
    for path in _store(synth).glob("morph_latents_*.csv"):
        _drop_last_mu(path)
    (_store(synth) / "manifest.json").unlink()
    summary = _run(synth, cli)
    warned = [w for w in summary["warnings"] if f"where model {scenario.MODEL!r} writes" in w]
    assert len(warned) == len(synth.snips), summary["warnings"]
    assert summary["df03"]["matched"] == 0
    reasons = _reasons(synth)
    assert all(reasons[s].startswith("latent file with other z columns than model")
               for ids in synth.snips.values() for s in ids), reasons


def test_a_left_out_file_is_named_in_df03s_status_and_no_more_once_re_embedded(tmp_path, cli):
    """df03 built with a latent file that is then left out (another model's width) is out of
    date for that reason (it used to say "removed"); re-embedding the file with this model
    (--strict too) leaves no warning about it, in the summary nor in the sidecar."""
    synth = _generated(tmp_path, cli)
    path = _store(synth) / f"morph_latents_{EXP}.csv"
    _drop_last_mu(path)
    code, out, err = cli(*scenario.args(synth, "--dry-run", "--json"))
    assert code == 0, err
    reasons = json.loads(out)["df03_status"]["reasons"]
    assert any(r.startswith(f"latent file for {EXP} not merged: latent file with other z columns than model")
               for r in reasons), reasons
    summary = _run(synth, cli, "--overwrite-latents", "--experiments", EXP, "--strict")
    assert not any(path.name in w for w in summary["warnings"]), summary["warnings"]
    sidecar = json.loads(synth.df02.with_name("embryo_metadata_df03.json").read_text())
    assert not any(path.name in w for w in sidecar["warnings"]), sidecar["warnings"]
    assert sidecar["latent_files"][EXP]["origin"] == "manifest"
    assert summary["df03"]["matched"] == summary["df03"]["rows"]


@pytest.mark.parametrize("generate_only", [False, True])
def test_what_is_said_of_a_file_is_not_said_when_the_run_re_embeds_it(tmp_path, cli, generate_only):
    """A file recorded for another model, and another edited since its manifest entry: a run
    that re-embeds both whole says nothing of them, in its dry run (--strict: what the run
    would fail on) as in its summary; a run that does not, does."""
    synth = _generated(tmp_path, cli)
    data = _manifest(synth)
    data["files"][f"morph_latents_{OTHER_EXP}.csv"].update(model_fingerprint="f" * 64, model_name=OTHER_MODEL)
    _set_manifest(synth, data)
    edited = _store(synth) / f"morph_latents_{EXP}.csv"
    edited.write_text(edited.read_text().replace(",0.", ",1.", 1))
    named = (edited.name, f"morph_latents_{OTHER_EXP}.csv")
    extra = ("--generate-only",) if generate_only else ()
    code, out, err = cli(*scenario.args(synth, "--dry-run", "--json", *extra))
    assert code == 0 and all(any(n in w for w in json.loads(out)["warnings"]) for n in named), out
    redo = ("--overwrite-latents", "--experiments", EXP, OTHER_EXP, "--strict", *extra)
    code, out, err = cli(*scenario.args(synth, "--dry-run", "--json", *redo))
    assert code == 0 and not any(n in w for n in named for w in json.loads(out)["warnings"]), out
    summary = _run(synth, cli, *redo)
    assert not any(n in w for n in named for w in summary["warnings"]), summary["warnings"]
    if not generate_only:
        assert not any(n in w for n in named for w in summary["df03"]["reason"].split("; "))


def test_a_file_edited_since_its_manifest_entry_is_not_topped_up(tmp_path, cli):
    """New rows appended to it would have the manifest record the edited file as this model's."""
    synth = _generated(tmp_path, cli)
    path = _store(synth) / f"morph_latents_{EXP}.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *lines[2:]]).replace(",0.", ",1.", 1) + "\n")  # a row less, a value edited
    before, recorded = path.read_bytes(), _manifest(synth)["files"][path.name]["sha256"]
    summary = _run(synth, cli, "--generate-missing-latents")
    assert any(w.startswith(f"{path} is not topped up: it changed since manifest.json recorded it")
               for w in summary["warnings"]), summary["warnings"]
    assert any(w.startswith(f"{path} changed since manifest.json recorded it") and w.endswith("read as of unknown origin")
               for w in summary["warnings"]), summary["warnings"]
    assert path.read_bytes() == before and _manifest(synth)["files"][path.name]["sha256"] == recorded
    assert str(path) in summary["generated"]["not_topped_up"]


def test_a_left_out_file_re_embedded_is_said_so(tmp_path, cli):
    synth = _generated(tmp_path, cli)
    _drop_last_mu(_store(synth) / f"morph_latents_{EXP}.csv")
    _run(synth, cli)  # df03 without that file's rows
    summary = _run(synth, cli, "--overwrite-latents", "--experiments", EXP)
    assert summary["df03"]["reason"].startswith(f"out of date: latent file for {EXP} re-embedded by this run"), \
        summary["df03"]


def test_a_lab_file_with_more_dimensions_beside_the_store_is_left_out(tmp_path, cli):
    synth = _generated(tmp_path, cli, "parquet")
    table = pq.read_table(_store(synth) / f"morph_latents_{EXP}.parquet")
    mu = [c for c in table.column_names if c.startswith("z_mu")]
    for n in range(len(mu), 2 * len(mu)):  # twice the dimensions of the store's files
        table = table.append_column(f"z_mu_{n:02}", table.column(mu[0]))
    merged = _lab(tmp_path, EXP) / f"{EXP}_latents.parquet"
    merged.parent.mkdir(parents=True)
    pq.write_table(table, merged)
    _validated(merged)
    summary = _run(synth, cli, "--latents-root", str(tmp_path / "lab"))
    _assert_left_out(synth, cli, summary, merged.name, "dimension", extra=("--latents-root", str(tmp_path / "lab")))
    header, _ = read_rows(synth.df02.with_name("embryo_metadata_df03.csv"))
    assert sum(n.startswith("z_mu") for n in header) == len(mu)


def test_a_repeated_z_column_is_refused_naming_the_file(tmp_path, cli):
    synth = _generated(tmp_path, cli)
    path = _store(synth) / f"morph_latents_{EXP}.csv"
    lines = path.read_text().splitlines()
    first = next(c for c in lines[0].split(",") if c.startswith("z_mu"))
    lines = [lines[0] + "," + first] + [ln + "," + ln.split(",")[3] for ln in lines[1:]]
    path.write_text("\n".join(lines) + "\n")
    code, _, err = cli(*scenario.args(synth, "--overwrite", "--min-coverage", "0"))
    plain = [ln for ln in err.splitlines() if not ln.startswith("{")]
    assert code == 2 and len(plain) == 1 and path.name in plain[0] and first in plain[0], err


def _sigma(k, table, keep_sigma):
    if keep_sigma(k):
        return table
    return table.select([c for c in table.column_names if not c.startswith("z_sigma")])


@pytest.mark.parametrize("odd", ["first", "last"])
@pytest.mark.parametrize("what", ["fewer dimensions", "no sigma"])
def test_shards_that_disagree_on_their_z_columns_are_refused_whatever_their_order(tmp_path, cli, odd, what):
    synth = _generated(tmp_path, cli, "parquet")
    store_file = _store(synth) / f"morph_latents_{EXP}.parquet"
    target = (lambda k: k == 0) if odd == "first" else (lambda k: k == 1)

    def transform(k, table):
        if not target(k):
            return table
        if what == "no sigma":
            return _sigma(k, table, lambda _: False)
        return table.drop_columns([c for c in table.column_names if c.startswith("z_mu")][-1:])

    _shards(store_file, _lab(tmp_path, EXP), EXP, transform)
    code, _, err = cli(*scenario.args(synth, "--overwrite", "--min-coverage", "0", "--include-sigma",
                                      "--latents-root", str(tmp_path / "lab")))
    plain = [ln for ln in err.splitlines() if not ln.startswith("{")]
    assert code == 2 and len(plain) == 1 and "per_well" in plain[0] and "z columns" in plain[0], err
