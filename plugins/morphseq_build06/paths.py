"""Where Build06 finds its inputs and puts its outputs (SPEC §2), in one place."""

from __future__ import annotations

from pathlib import Path

DF_DIR = Path("metadata") / "combined_metadata_files"
SNIP_DIR = Path("training_data") / "bf_embryo_snips"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DF03_NAME = "embryo_metadata_df03.csv"
#: the provenance sidecar of the analysis copies, beside them
COPIES_SIDECAR = "df03_copies.json"
TRAINING_OUTPUT = "embryo_metadata_with_embeddings.csv"


def df02(root: Path) -> Path:
    return Path(root) / DF_DIR / "embryo_metadata_df02.csv"


def df03(root: Path) -> Path:
    return Path(root) / DF_DIR / DF03_NAME


def unembedded(df03_path: Path) -> Path:
    return df03_path.with_name(df03_path.stem + "_unembedded.csv")


def sidecar(output: Path) -> Path:
    """The JSON provenance record beside a table."""
    return output.with_suffix(".json")


def snip_dir_candidates(root: Path, data_root: Path, experiment: str) -> tuple[Path, Path]:
    """The snip folder under the pipeline root, else the same under the data root."""
    return Path(root) / SNIP_DIR / experiment, Path(data_root) / SNIP_DIR / experiment


def store(data_root: Path, embedder: str, model_name: str) -> Path:
    return Path(data_root) / "analysis" / "latent_embeddings" / embedder / model_name


def training_input(root: Path, train_name: str) -> Path:
    return Path(root) / "training_data" / train_name / "embryo_metadata_df_train.csv"


def training_output(root: Path, train_name: str) -> Path:
    return training_input(root, train_name).with_name(TRAINING_OUTPUT)


def analysis_dir(data_root: Path, model_name: str) -> Path:
    return Path(data_root) / "metadata" / "metadata_n_embeddings" / model_name


def analysis_copy(data_root: Path, model_name: str, experiment: str) -> Path:
    return analysis_dir(data_root, model_name) / f"df03_{experiment}.csv"


# the lock file a run holds while it writes a folder's outputs (morphseq_stages.files.exclusive_lock),
# with what it guards, for the "busy" message
def output_lock(path: Path) -> tuple[Path, str]:
    return Path(path).parent / f".{Path(path).name}.lock", str(path)


def store_lock(store: Path) -> tuple[Path, str]:
    return Path(store) / ".latents.lock", f"latent files in {store}"


def training_lock(folder: Path) -> tuple[Path, str]:
    """The training join's folder (``training_data/<T>``): the join, its sidecar and typed copies."""
    return output_lock(Path(folder) / TRAINING_OUTPUT)


def copies_lock(folder: Path) -> tuple[Path, str]:
    return Path(folder) / ".df03_copies.lock", f"analysis copies in {folder}"
