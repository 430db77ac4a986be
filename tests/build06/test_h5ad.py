"""The h5ad copy with latents embedded in the same run, awkward df02 headers and cells,
a full disk, and the rows scanpy can use (issue #16 items 1 and 8, #17 item 6)."""

from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import fill_disk, small_tmpfs, tree_digest

anndata = pytest.importorskip("anndata", reason="the h5ad output needs the [anndata] extra")

from morphseq_build06.testing import make_pipeline_root, write_latent_file  # noqa: E402

FORMATS_DOC = Path(__file__).resolve().parents[2] / "docs" / "formats-and-report.md"  # where the h5ad is documented
MODEL = "tiny"


def df03(root: Path) -> Path:
    return root / "metadata" / "combined_metadata_files" / "embryo_metadata_df03.csv"


def build06(cli, synth, *extra):
    return cli("build06", "--root", synth.root, "--data-root", synth.data_root, "--model-name", MODEL, *extra)


@pytest.fixture
def synth(tmp_path):
    return make_pipeline_root(tmp_path, {"20231207": 4, "20240509_18ss": 3}, seed=5)


def with_store(synth, skip=()):
    """Latent files in the store for every snip but ``skip``."""
    store = synth.latent_dir(MODEL)
    store.mkdir(parents=True, exist_ok=True)
    for i, (exp, ids) in enumerate(synth.snips.items()):
        write_latent_file(store, exp, [s for s in ids if s not in skip], latent_dim=6, seed=i)
    return synth


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_h5ad_with_latents_generated_in_the_same_run(synth, cli, backend):
    """The embedder's facts (torch's version is a TorchVersion) reach uns as plain values."""
    pytest.importorskip("torch")
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    from morphseq_legacy.testing import make_legacy_model

    make_legacy_model(synth.data_root / "models" / "legacy" / MODEL, latent_dim=6, n_out_channels=2, seed=1)
    code, _, err = build06(cli, synth, "--generate-missing-latents", "--backend", backend, "--formats", "csv,h5ad")
    assert code == 0, err
    adata = anndata.read_h5ad(df03(synth.root).with_suffix(".h5ad"))
    embedder = adata.uns["morphseq"]["embedder"]
    assert embedder["backend"] == backend and isinstance(embedder["backend_version"], str)
    csv = pd.read_csv(df03(synth.root))
    np.testing.assert_array_equal(adata.obsm["X_morph"], csv.filter(like="z_mu_").to_numpy(float))
    assert adata.obs["morphseq_embedded"].all()
    code, out, err = build06(cli, synth, "--generate-missing-latents", "--backend", backend, "--formats", "csv,h5ad")
    assert code == 0 and "embryo_metadata_df03.h5ad (as embryo_metadata_df03.csv: current)" in out, out + err


def test_api_h5ad_with_generated_latents_is_no_anndata_error(synth):
    pytest.importorskip("torch")
    from morphseq_build06 import api
    from morphseq_legacy.testing import make_legacy_model

    make_legacy_model(synth.data_root / "models" / "legacy" / MODEL, latent_dim=6, n_out_channels=2, seed=1)
    path = api.build_df03_with_embeddings(synth.root, synth.data_root, model_name=MODEL, generate_missing=True,
                                          backend="torch", formats="csv,h5ad")
    assert anndata.read_h5ad(path.with_suffix(".h5ad")).n_obs == 7


def _rewrite_df02(synth, header_prefix: str, cell=lambda i: f"x{i}"):
    lines = synth.df02.read_text().splitlines()
    body = [f"{cell(i)},{line}" for i, line in enumerate(lines[1:])]
    synth.df02.write_text("\n".join([header_prefix + lines[0], *body]) + "\n")


@pytest.mark.parametrize("name, key", [("", "Unnamed: 0"), ("_index", "_index_"), ("a/b", "a_b")])
def test_h5ad_takes_any_column_name_parquet_takes(synth, cli, name, key):
    with_store(synth)
    _rewrite_df02(synth, f"{name},", cell=str)  # pandas' to_csv writes its index as an unnamed column
    code, _, err = build06(cli, synth, "--formats", "csv,parquet,h5ad")
    assert code == 0, err
    adata = anndata.read_h5ad(df03(synth.root).with_suffix(".h5ad"))
    assert list(adata.obs[key].astype(int)) == list(range(7))
    assert adata.obs.columns[0] == key


def test_a_nul_byte_in_a_cell_is_one_line_and_nothing_written(synth, cli):
    with_store(synth)
    _rewrite_df02(synth, "note,", cell=lambda i: "a\0b" if i == 2 else "")
    before = tree_digest(synth.root)
    code, out, err = build06(cli, synth, "--formats", "csv,h5ad")
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    assert code == 2, err
    assert len(lines) == 1 and "NUL" in lines[0] and "'note'" in lines[0] and "row 3" in lines[0], lines
    assert tree_digest(synth.root) == before
    code, _, err = build06(cli, synth, "--formats", "csv,parquet")  # Parquet holds it
    assert code == 0, err


def test_obs_marks_embedded_rows_and_the_readme_lines_select_them(synth, cli, monkeypatch):
    with_store(synth, skip={"20231207_A02_e00_t0000"})
    code, _, err = build06(cli, synth, "--formats", "csv,h5ad")
    assert code == 0, err
    path = df03(synth.root).with_suffix(".h5ad")
    adata = anndata.read_h5ad(path)
    embedded = adata.obs["morphseq_embedded"]
    assert embedded.dtype == bool
    assert list(adata.obs_names[~embedded.to_numpy()]) == ["20231207_A02_e00_t0000"]
    assert np.isnan(adata.obsm["X_morph"][~embedded.to_numpy()]).all()

    # the documented lines, run as written, with a stand-in for scanpy when it is not installed
    block = next(b for b in re.findall(r"```python\n(.*?)```", FORMATS_DOC.read_text(), re.S) if "morphseq_embedded" in b)
    seen = {}

    def neighbors(data, use_rep):
        seen["rows"] = data.obsm[use_rep]

    fake = types.SimpleNamespace(pp=types.SimpleNamespace(neighbors=neighbors))
    try:
        import scanpy as sc
    except ImportError:
        sc = fake
    monkeypatch.chdir(path.parent)
    scope = {"anndata": anndata, "sc": sc}
    exec(block, scope)
    if sc is fake:
        assert seen["rows"].shape == (6, 6) and not np.isnan(seen["rows"]).any()
    assert scope["embedded"].n_obs == 6


@pytest.fixture
def small_disk(synth):
    """df03's folder on a 1 MB tmpfs of its own."""
    with small_tmpfs(synth.df02.parent, "1m") as folder:
        yield folder


def test_a_full_disk_while_writing_the_h5ad_is_exit_2_and_nothing_half_written(synth, cli, small_disk):
    with_store(synth)
    for _ in range(60):  # a df02 wide enough that the h5ad does not fit where df03.csv does
        _rewrite_df02(synth, "pad,", cell=lambda i: "p" * 400 + str(i))
    code, _, err = build06(cli, synth)  # df03.csv alone, to know its size
    assert code == 0, err
    room = df03(synth.root).stat().st_size
    # room for the new df03.csv and its small companions, not for the h5ad (about as big)
    filler = fill_disk(small_disk, leave_pages=room // 4096 + 12)
    before = tree_digest(synth.root)
    code, _, err = build06(cli, synth, "--formats", "csv,h5ad")
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    assert code == 2, err
    assert len(lines) == 1 and "No space left on device" in lines[0], lines
    assert tree_digest(synth.root) == before
    filler.unlink()
    code, _, err = build06(cli, synth, "--formats", "csv,h5ad")
    assert code == 0, err
    assert anndata.read_h5ad(df03(synth.root).with_suffix(".h5ad")).n_obs == 7


def test_the_readme_says_the_anndata_extra_downgrades_pandas_3():
    from importlib.metadata import requires

    pins = [r for r in requires("anndata") or [] if r.replace(" ", "").startswith("pandas") and "<3" in r]
    if not pins:
        pytest.skip("this anndata does not pin pandas below 3")
    text = " ".join(FORMATS_DOC.read_text().split())
    assert "The `anndata` extra installs pandas 2: anndata (0.12) requires `pandas<3`, so pip downgrades" in text
