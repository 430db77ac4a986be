"""The bad-input matrix: each case ends with exactly one line on stderr naming the file or
value, its exit code (2 bad input, 3 --strict), and not one byte changed on disk."""

from __future__ import annotations

import json
import os
import pickle
import threading
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from . import scenario
from conftest import tree_digest

DF02_ROW = b"A01,wik,48.0,Head is cut off,20231207,20231207_A01_e00_t0000,20231207_A01_e00,"


@attrs.frozen
class Case:
    id: str
    setup: Callable  # (synth, tmp_path) -> extra CLI arguments or None
    message: str
    code: int = 2
    model: bool = False  # a root with snips and a tiny model; the run generates latents


def df02_bytes(transform: Callable[[bytes], bytes]) -> Callable:
    def setup(s, _):
        s.df02.write_bytes(transform(s.df02.read_bytes()))
    return setup


def replace_df02(replacement: Path | str) -> Callable:
    def setup(s, tmp):
        s.df02.unlink()
        if replacement == "fifo":
            os.mkfifo(s.df02)
            _unblock_later(s.df02)
        elif replacement == "dir":
            s.df02.mkdir()
        else:
            s.df02.symlink_to(replacement)
    return setup


def _unblock_later(fifo: Path) -> None:
    """Should a reader block on the FIFO, a writer comes by later so that the test ends (and fails).

    The writer must never block itself (no reader: ENXIO) nor keep the interpreter alive
    (a daemon): a blocked non-daemon timer once kept pytest from exiting after its summary."""
    def open_and_close():
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # no reader: nobody is blocked on it

    timer = threading.Timer(20, open_and_close)
    timer.daemon = True
    timer.start()


def latent_bytes(data: bytes, experiment: str = "20231207") -> Callable:
    def setup(s, _):
        (s.latent_dir(scenario.MODEL) / f"morph_latents_{experiment}.csv").write_bytes(data)
    return setup


def latent_special(kind: str) -> Callable:
    def setup(s, _):
        path = s.latent_dir(scenario.MODEL) / "morph_latents_20231207.csv"
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
            _unblock_later(path)
        else:
            path.symlink_to("/dev/zero")
    return setup


def config(**changes) -> Callable:
    def setup(s, _):
        path = s.data_root / "models" / "legacy" / scenario.MODEL / "model_config.json"
        cfg = json.loads(path.read_text())
        cfg.update(changes)
        path.write_text(json.dumps(cfg))
    return setup


def model_file(name: str, data: bytes | None) -> Callable:
    def setup(s, _):
        path = s.data_root / "models" / "legacy" / scenario.MODEL / name
        if data is None:
            path.unlink()
        else:
            path.write_bytes(data)
    return setup


class _Hostile:
    def __reduce__(self):
        return (os.system, ("touch /tmp/morphseq-pwned",))


def hostile_model_pt(s, _):
    path = s.data_root / "models" / "legacy" / scenario.MODEL / "model.pt"
    path.write_bytes(pickle.dumps({"model_state_dict": _Hostile()}))


def pickled_non_encoder(s, _):
    folder = s.data_root / "models" / "legacy" / scenario.MODEL
    (folder / "encoder.pkl").write_bytes(pickle.dumps(42))
    config(name="VQVAEConfig")(s, _)
    return ["--allow-pickle"]


def pickle_without_opt_in(s, _):
    (s.data_root / "models" / "legacy" / scenario.MODEL / "encoder.pkl").write_bytes(pickle.dumps(42))
    config(name="VQVAEConfig")(s, _)


def truncated_weights(s, _):
    path = s.data_root / "models" / "legacy" / scenario.MODEL / "model.pt"
    path.write_bytes(path.read_bytes()[:500])


def image(transform: Callable[[Path], None]) -> Callable:
    def setup(s, _):
        transform(s.snip_path("20231207", s.snips["20231207"][0]))
        return ["--strict"]
    return setup


def non_utf8_snip_name(s, _):
    folder = s.root / "training_data" / "bf_embryo_snips" / "20231207"
    folder.mkdir(parents=True, exist_ok=True)
    with open(os.path.join(os.fsencode(folder), b"20231207_A01_e00_t0009\xff.jpg"), "wb") as fh:
        fh.write(b"x")


def folder_at(*parts: str, overwrite: bool = True) -> Callable:
    """A run makes its outputs first; then a folder takes the place of one of them."""
    def setup(s, tmp):
        from morphseq_stages.cli import main

        assert main(scenario.args(s, "--export-analysis-copies")) == 0
        target = tmp.joinpath(*parts)
        target.unlink()
        target.mkdir()
        return ["--export-analysis-copies"] + (["--overwrite"] if overwrite else [])
    return setup


def file_at(*parts: str) -> Callable:
    def setup(s, tmp):
        tmp.joinpath(*parts).write_text("a file where a folder should be")
        return ["--export-analysis-copies"]
    return setup


def args(*extra: str) -> Callable:
    return lambda s, tmp: [a.replace("{tmp}", str(tmp)) for a in extra]


DF = ("root", "metadata", "combined_metadata_files")
LONG = "2024" + "x" * 240
Z4 = b"snip_id,z_mu_00,z_mu_01,z_mu_02,z_mu_03\n"  # the scenario's dimensions: the file is read, not left out
CASES = [
    # df02
    Case("df02 missing", lambda s, _: s.df02.unlink(), "df02 not found"),
    Case("df02 empty", df02_bytes(lambda b: b""), "is empty"),
    Case("df02 without snip_id", df02_bytes(lambda b: b.replace(b",snip_id,", b",snip,", 1)), "has no snip_id column"),
    Case("df02 row with a field too many", df02_bytes(lambda b: b.replace(b",E3\n", b",E3,extra\n", 1)), "cannot parse"),
    Case("df02 row with a field too few", df02_bytes(lambda b: b.replace(b",E3\n", b"\n", 1)), "cannot parse"),
    Case("df02 snip_id not utf-8",
         df02_bytes(lambda b: b.replace(b",20231207_A01_e00_t0000,", b",20231207_A01_e00_t\xff000,", 1)), "cannot parse"),
    Case("df02 header not utf-8", df02_bytes(lambda b: b.replace(b"genotype", b"geno\xfftype", 1)), "header"),
    Case("df02 unclosed quote", df02_bytes(lambda b: b.replace(b"Head is cut off", b'"Head is cut off', 1)),
         "never closed"),
    Case("df02 is a folder", replace_df02("dir"), "is not a regular file"),
    Case("df02 is a fifo", replace_df02("fifo"), "is not a regular file"),
    Case("df02 is /dev/zero", replace_df02("/dev/zero"), "is not a regular file"),
    Case("df02 already holds z columns", df02_bytes(lambda b: b.replace(b",medium\n", b",z_mu_00\n", 1)),
         "already holds z column 'z_mu_00'"),
    Case("df02 snip_id with a slash", df02_bytes(lambda b: b.replace(b",20231207_A01_e00_t0000,", b",a/b,", 1)),
         "unsafe snip_id 'a/b'"),
    Case("df02 snip_id with a newline",
         df02_bytes(lambda b: b.replace(b",20231207_A01_e00_t0000,", b',"20231207_A01\ne00_t0000",', 1)),
         "unsafe snip_id"),
    Case("df02 experiment with a newline", df02_bytes(lambda b: b.replace(b",20231207,", b',"2023\n1207",', 1)),
         "control characters"),
    Case("df02 experiment escaping its folder", df02_bytes(lambda b: b.replace(b",20231207,", b",../20231207,", 1)),
         "unsafe experiment '../20231207'"),
    Case("df02 experiment name too long", df02_bytes(lambda b: b.replace(b",20231207,", f",{LONG},".encode(), 1)),
         "too long for a file name"),
    Case("qc filter without use_embryo_flag",
         lambda s, _: (df02_bytes(lambda b: b.replace(b",use_embryo_flag,", b",flag,", 1))(s, _), ["--qc-filter"])[1],
         "--qc-filter needs a use_embryo_flag column"),
    # latent files
    Case("latent file without snip_id", latent_bytes(b"id,z_mu_00\nx,1\n"), "has no snip_id column"),
    Case("latent file without z columns", latent_bytes(b"snip_id,foo\n20231207_A01_e00_t0000,1\n"), "has no z columns"),
    Case("latent file empty", latent_bytes(b""), "is empty"),
    Case("latent file ragged", latent_bytes(Z4 + b"20231207_A01_e00_t0000,1,2,3,4,5\n"),
         "cannot parse latent file"),
    Case("latent z cell not utf-8", latent_bytes(Z4 + b"20231207_A01_e00_t0000,1,2,3,1.\xff5\n"),
         "cannot parse latent file"),
    Case("latent snip_id not utf-8", latent_bytes(Z4 + b"20231207_A01_e00_t\xff000,1,2,3,1.5\n"),
         "cannot parse latent file"),
    Case("latent z column that maps to no dimension", latent_bytes(b"snip_id,z_mu_x\nx,1\n"), "maps to no latent dimension"),
    Case("latent file is a fifo", latent_special("fifo"), "morph_latents_20231207.csv"),
    Case("latent file is /dev/zero", latent_special("zero"), "morph_latents_20231207.csv"),
    # model folders (the run generates latents)
    Case("model folder missing", lambda s, _: ["--model-name", "absent"], "model folder not found", model=True),
    Case("model config not json", model_file("model_config.json", b"{nope"), "cannot read", model=True),
    Case("model config not an object", model_file("model_config.json", b"[1]"), "is not a JSON object", model=True),
    Case("latent_dim 2**40", config(latent_dim=2**40), "latent_dim 1099511627776", model=True),
    Case("latent_dim negative", config(latent_dim=-3), "latent_dim must be a positive integer", model=True),
    Case("n_conv_layers not the weights'", config(n_conv_layers=4), "n_conv_layers is 4", model=True),
    Case("input_dim not the weights'", config(input_dim=[1, 288, 128]), "input_dim [1, 288, 128]", model=True),
    Case("model.pt missing", model_file("model.pt", None), "model.pt", model=True),
    Case("model.pt not a torch file", model_file("model.pt", b"not torch at all"), "cannot read weights", model=True),
    Case("model.pt truncated", truncated_weights, "cannot read weights", model=True),
    Case("model.pt runs code when unpickled", hostile_model_pt, "cannot read weights", model=True),
    Case("encoder.pkl without --allow-pickle", pickle_without_opt_in, "--allow-pickle", model=True),
    Case("encoder.pkl that is no encoder", pickled_non_encoder, "does not hold an encoder: it unpickled to int",
         model=True),
    # images (--strict: a bad image is a failure)
    Case("unreadable image", image(lambda p: p.write_bytes(b"not a jpeg")), "unreadable image", code=3, model=True),
    Case("huge sparse image", image(lambda p: (p.write_bytes(b""), os.truncate(p, 1 << 26))), "unreadable image", code=3, model=True),
    Case("snip file name not utf-8", non_utf8_snip_name, "is not valid UTF-8"),
    # options
    Case("data root missing", args("--data-root", "{tmp}/nowhere"), "not found"),
    Case("data root is a file", args("--data-root", "{tmp}/root/metadata/combined_metadata_files/embryo_metadata_df02.csv"),
         "is not a folder"),
    Case("pipeline root missing", args("--root", "{tmp}/nowhere"), "pipeline root not found"),
    Case("experiment option with a newline", args("--experiments", "2023\n1207"), "control characters"),
    Case("experiment option too long", args("--experiments", LONG), "too long for a file name"),
    Case("model name escaping its folder", args("--model-name", "../m"), "unsafe model name"),
    Case("training set name with a slash", args("--train-name", "a/b"), "unsafe training set name"),
    Case("model dir missing", args("--model-dir", "{tmp}/nowhere"), "--model-dir not found"),
    Case("min coverage above 1", args("--min-coverage", "2"), "--min-coverage"),
    Case("batch size 0", args("--batch-size", "0"), "--batch-size"),
    Case("unknown z schema", args("--z-schema", "wide"), "--z-schema"),
    Case("unknown embedder", args("--embedder", "nope"), "unknown embedder 'nope'"),
    # the file system
    Case("a folder where df03 should be", folder_at(*DF, "embryo_metadata_df03.csv"),
         "a folder stands where the file should be"),
    Case("a folder where the sidecar should be", folder_at(*DF, "embryo_metadata_df03.json"),
         "a folder stands where the file should be"),
    Case("a folder where the unembedded list should be", folder_at(*DF, "embryo_metadata_df03_unembedded.csv"),
         "a folder stands where the file should be"),
    Case("a folder where an analysis copy should be",
         folder_at("data", "metadata", "metadata_n_embeddings", scenario.MODEL, "df03_20240509_18ss.csv"),
         "a folder stands where the file should be"),
    Case("a file where the analysis folder should be", file_at("data", "metadata"), "is a file, not a folder"),
    Case("a folder where the df03 lock should be",
         lambda s, _: (s.df02.parent / ".embryo_metadata_df03.csv.lock").mkdir(), "cannot take lock"),
    Case("a folder where a latent file should be", lambda s, _: (
        (s.latent_dir(scenario.MODEL) / "morph_latents_20240509_18ss.csv").mkdir(parents=True),
        ["--overwrite"])[1], "morph_latents_20240509_18ss.csv", model=True),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(tmp_path, cli, case):
    if case.model:
        pytest.importorskip("torch")
        synth = scenario.model_root(tmp_path)
        base = ["--generate-missing-latents", "--workers", "1"]
    else:
        synth = scenario.merge_root(tmp_path)
        base = []
    extra = case.setup(synth, tmp_path) or []
    argv = scenario.args(synth, *base, *extra)
    if "--root" in extra or "--data-root" in extra:  # the case's value replaces the scenario's
        for flag in ("--root", "--data-root"):
            if flag in extra:
                at = argv.index(flag)
                del argv[at : at + 2]
    before = tree_digest(tmp_path)
    code, _, err = cli(*argv)
    plain = [line for line in err.splitlines() if not line.startswith("{")]
    assert code == case.code, err
    assert len(plain) == 1 and plain[0].startswith("morphseq-stages: error: "), err
    assert case.message in plain[0]
    assert tree_digest(tmp_path) == before
    assert not Path("/tmp/morphseq-pwned").exists()


def test_a_fifo_and_a_device_among_the_snips_are_left_unread(tmp_path, cli):
    pytest.importorskip("torch")
    synth = scenario.model_root(tmp_path)
    fifo, zero = (synth.snip_path("20231207", s) for s in synth.snips["20231207"][:2])
    fifo.unlink()
    os.mkfifo(fifo)
    _unblock_later(fifo)
    zero.unlink()
    zero.symlink_to("/dev/zero")
    code, out, err = cli(*scenario.args(synth, "--generate-missing-latents", "--min-coverage", "0", "--json"))
    assert code == 0, err
    assert json.loads(out)["rows"]["unembedded"] == 2


def test_the_matrix_is_large():
    assert len(CASES) >= 40
