"""The operator's world for the model-based test: a pipeline root and a data root that an
operator and an analyst change, Build06 runs on, and an independent reading of what the
disk should then hold.

Nothing here uses the code under test to decide what is right: df02, the latent files,
the training sets and the outputs are read with ``csv``, ``json``, ``hashlib`` and
``pyarrow``/``anndata`` directly, and df03 is predicted from df02's bytes and the latent
files' text. The builders of ``morphseq_build06.testing`` and ``morphseq_legacy.testing``
only lay out inputs (snip JPEGs, a tiny model in the lab's format).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import random
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

MODEL = "m"
SNIP_SIZE = (32, 72)  # width, height: small, so that embedding is instant
INPUT_DIM = (1, 72, 32)
LATENT_DIM = 5  # MetricVAEConfig with zn_frac 0.2: z_mu_n_00, then z_mu_b_01..z_mu_b_04
EXPERIMENT_POOL = ("20231207", "20240509_18ss", "20250612_30hpf_ctrl_atf6", "20240626", "20250115_newexp",
                   "20241030_12ss_lmx1b", "20230830", "20251201_48hpf_tbxta")
TRAIN_POOL = ("train_a", "train_b")
DF02 = Path("metadata") / "combined_metadata_files" / "embryo_metadata_df02.csv"
DF03 = DF02.with_name("embryo_metadata_df03.csv")
UNEMBEDDED = DF02.with_name("embryo_metadata_df03_unembedded.csv")
REPORT = DF02.with_name("embryo_metadata_df03_report.html")
_Z = re.compile(r"^z_(mu|sigma)_(?:([bn])_)?(\d+)$")
# what the lab's files call one number: a plain decimal or exponent literal, nothing around it
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def upstream_sample() -> Path:
    """The lab's real metadata rows (shared/data/upstream), or the copy kept in tests/data."""
    here = Path(__file__).resolve()
    for folder in (here.parents[3] / "shared" / "data" / "upstream", Path("/work/shared/data/upstream"),
                   here.parents[1] / "data"):
        if (folder / "morphseq_metadata_sample.csv").is_file():
            return folder / "morphseq_metadata_sample.csv"
    raise FileNotFoundError("morphseq_metadata_sample.csv")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------
# Options: one Build06 invocation as the operator types it
# ---------------------------------------------------------------------------------------

@attrs.frozen(kw_only=True)
class Options:
    experiments: tuple[str, ...] | None = None
    generate_missing_latents: bool = False
    generate_only: bool = False
    overwrite: bool = False
    overwrite_latents: bool = False
    export_analysis_copies: bool = False
    train_name: str | None = None
    formats: tuple[str, ...] = ()
    report: bool = False
    latent_format: str = "csv"
    z_schema: str = "auto"
    include_sigma: bool = False
    strict: bool = False
    dry_run: bool = False
    backend: str = "auto"

    def argv(self, world: World) -> list[str]:
        args = ["build06", "--root", str(world.root), "--data-root", str(world.data_root), "--model-name", MODEL,
                "--json", "--log-format", "json", "--quiet", "--batch-size", "8", "--workers", "1",
                "--device", "cpu"]
        if self.experiments is not None:
            args += ["--experiments", *self.experiments]
        for flag in ("generate_missing_latents", "generate_only", "overwrite", "overwrite_latents",
                     "export_analysis_copies", "report", "include_sigma", "strict", "dry_run"):
            if getattr(self, flag):
                args.append("--" + flag.replace("_", "-"))
        if self.train_name:
            args += ["--train-name", self.train_name]
        if self.formats:
            args += ["--formats", ",".join(("csv", *self.formats))]
        for flag in ("latent_format", "z_schema", "backend"):
            default = attrs.fields_dict(Options)[flag].default
            if getattr(self, flag) != default:
                args += ["--" + flag.replace("_", "-"), getattr(self, flag)]
        return args

    def pairs(self) -> set[tuple[tuple[str, Any], tuple[str, Any]]]:
        """The option values of this run, pairwise (for the coverage figure)."""
        values = sorted(self.values().items())
        return {(a, b) for i, a in enumerate(values) for b in values[i + 1:]}

    def values(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["experiments"] = "some" if self.experiments else "all"
        d["train_name"] = bool(self.train_name)
        d["formats"] = "+".join(self.formats) or "csv"
        return d

    @property
    def generates(self) -> bool:
        return self.generate_missing_latents or self.generate_only or self.overwrite_latents


# ---------------------------------------------------------------------------------------
# The world: inputs the operator changes
# ---------------------------------------------------------------------------------------

class World:
    """A pipeline root and a data root in ``base`` with a tiny legacy model ``m``."""

    def __init__(self, base: Path, seed: int = 0) -> None:
        from morphseq_legacy.testing import make_legacy_model

        self.base = Path(base)
        self.root, self.data_root = self.base / "root", self.base / "data"
        self.rng = random.Random(seed)
        self.seed = seed
        self._images = 0
        with open(upstream_sample(), newline="") as fh:
            rows = list(csv.reader(fh))
        self.header, self.templates = rows[0], rows[1:]
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_df02([])
        make_legacy_model(self.data_root / "models" / "legacy" / MODEL, input_dim=INPUT_DIM, latent_dim=LATENT_DIM,
                          n_conv_layers=3, n_out_channels=2, seed=3, layout="final_model")

    # -- paths ---------------------------------------------------------------------------
    @property
    def df02(self) -> Path:
        return self.root / DF02

    @property
    def df03(self) -> Path:
        return self.root / DF03

    @property
    def store(self) -> Path:
        return self.data_root / "analysis" / "latent_embeddings" / "legacy" / MODEL

    @property
    def copies_dir(self) -> Path:
        return self.data_root / "metadata" / "metadata_n_embeddings" / MODEL

    def snip_path(self, experiment: str, snip_id: str) -> Path:
        return self.root / "training_data" / "bf_embryo_snips" / experiment / f"{snip_id}.jpg"

    def train_input(self, name: str) -> Path:
        return self.root / "training_data" / name / "embryo_metadata_df_train.csv"

    def train_output(self, name: str) -> Path:
        return self.root / "training_data" / name / "embryo_metadata_with_embeddings.csv"

    # -- df02 ----------------------------------------------------------------------------
    def read_df02(self) -> list[list[str]]:
        with open(self.df02, newline="") as fh:
            return list(csv.reader(fh))[1:]

    def write_df02(self, rows: Sequence[Sequence[str]]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([self.header, *rows])
        self.df02.parent.mkdir(parents=True, exist_ok=True)
        self.df02.write_text(buf.getvalue())

    def col(self, name: str) -> int:
        return self.header.index(name)

    def experiments(self) -> list[str]:
        """df02's experiments, in order of first appearance."""
        ei = self.col("experiment_date")
        return list(dict.fromkeys(r[ei] for r in self.read_df02()))

    def snips(self, experiment: str | None = None) -> list[str]:
        si, ei = self.col("snip_id"), self.col("experiment_date")
        return [r[si] for r in self.read_df02() if experiment is None or r[ei] == experiment]

    # -- operator actions ----------------------------------------------------------------
    def append_experiment(self, experiment: str, n: int, *, images: int | None = None) -> None:
        """Build05 appended ``experiment`` to df02 with ``n`` snips; the first ``images`` of
        them (all by default) have their snip JPEG on disk. Real rows serve as templates."""
        from morphseq_build06.testing import snip_image

        rows = self.read_df02()
        si, ei, emb = self.col("snip_id"), self.col("experiment_date"), self.col("embryo_id")
        taken = set(self.snips())
        k = 0
        for i in range(n):
            while True:
                well = f"{'ABCDEFGH'[k // 12 % 8]}{k % 12 + 1:02}"
                snip = f"{experiment}_{well}_e{k // 96:02}_t{i % 3:04}"
                k += 1
                if snip not in taken:
                    break
            row = list(self.templates[(len(rows) + i) % len(self.templates)])
            row[si], row[ei], row[emb] = snip, experiment, snip.rsplit("_t", 1)[0]
            rows.append(row)
            taken.add(snip)
            if images is None or i < images:
                path = self.snip_path(experiment, snip)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._images += 1
                snip_image(self.seed * 100_003 + self._images, SNIP_SIZE).save(path, quality=90)
        self.write_df02(rows)

    def edit_row(self, index: int, column: str, value: str) -> None:
        rows = self.read_df02()
        rows[index % len(rows)][self.col(column)] = value
        self.write_df02(rows)

    def remove_row(self, index: int) -> None:
        rows = self.read_df02()
        del rows[index % len(rows)]
        self.write_df02(rows)

    def break_snip(self, index: int) -> Path | None:
        """Replace one snip image with bytes no image library reads."""
        images = sorted((self.root / "training_data" / "bf_embryo_snips").rglob("*.jpg"))
        if not images:
            return None
        path = images[index % len(images)]
        path.write_bytes(b"not a jpeg: truncated upload\n" * 3)
        return path

    def foreign_latent_file(self, experiment: str, snips: Sequence[str], *, seed: int, flat: bool = False,
                            non_finite: bool = False) -> Path:
        """A latent file for ``experiment`` made elsewhere (no manifest entry): the real
        column layout, values in the texts other tools write (``+0.5``, ``1.5e-03``)."""
        rng = random.Random(seed)
        n_nuis = LATENT_DIM // 5
        mu = [f"z_mu_{d:02}" if flat else f"z_mu_{'n' if d < n_nuis else 'b'}_{d:02}" for d in range(LATENT_DIM)]
        sigma = [c.replace("z_mu_", "z_sigma_") for c in mu]
        formats = ("{:.6f}", "{:+.4f}", "{:.3e}", "{:.9g}")
        lines = [["experiment_date", "embryo_id", "snip_id", *mu, *sigma]]
        for j, snip in enumerate(snips):
            values = [formats[rng.randrange(4)].format(rng.gauss(0, 1)) for _ in range(2 * LATENT_DIM)]
            if non_finite and j == 0:
                values[rng.randrange(LATENT_DIM)] = rng.choice(["nan", "inf", "-inf", ""])
            lines.append([experiment, snip.rsplit("_t", 1)[0], snip, *values])
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(lines)
        path = self.store / f"morph_latents_{experiment}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(buf.getvalue())
        return path

    def write_training_set(self, name: str, indices: Iterable[int]) -> None:
        """A training set: df02's header and some of its records, as the lab cuts them."""
        rows = self.read_df02()
        chosen = [rows[i % len(rows)] for i in dict.fromkeys(indices)] if rows else []
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([self.header, *chosen])
        path = self.train_input(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(buf.getvalue())

    def training_sets(self) -> list[str]:
        return [n for n in TRAIN_POOL if self.train_input(n).is_file()]

    # -- running Build06 -------------------------------------------------------------------
    def run(self, options: Options, *, dry_run: bool | None = None) -> RunResult:
        """Build06 through the CLI's ``main`` in this process (stdout and stderr captured)."""
        import structlog

        from morphseq_stages.cli import main

        if dry_run is not None:
            options = attrs.evolve(options, dry_run=dry_run)
        argv = options.argv(self)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse refusing an option
                code = exc.code if isinstance(exc.code, int) else 2
            finally:
                structlog.reset_defaults()
        return RunResult(options=options, argv=argv, code=code, stdout=out.getvalue(), stderr=err.getvalue())

    def runner(self, interface: str) -> Callable[[Options], RunResult]:
        """Build06 through ``interface``: ``cli``, ``api`` or ``run_stage``."""
        return {"cli": self.run, "api": self.run_api, "run_stage": self.run_stage}[interface]

    def run_api(self, options: Options) -> RunResult:
        """Build06 through ``api.build_df03_with_embeddings`` (the CLI's code path): exit 0
        when it returns, a UserError's exit code when it raises one (``kept``: it raised
        OutputExists, an output left as it was), 70 for any other exception. A dry run's
        :class:`PlannedRun` goes to ``stdout`` as JSON, as ``--dry-run --json`` prints it."""
        from morphseq_build06 import api

        o = options
        kwargs: dict[str, Any] = dict(
            model_name=MODEL, experiments=list(o.experiments) if o.experiments else None,
            generate_missing=o.generate_missing_latents, export_analysis=o.export_analysis_copies,
            train_name=o.train_name, overwrite=o.overwrite, dry_run=o.dry_run, z_schema=o.z_schema,
            generate_only=o.generate_only, overwrite_latents=o.overwrite_latents, formats=["csv", *o.formats],
            report=o.report, latent_format=o.latent_format, include_sigma=o.include_sigma, strict=o.strict,
            backend=o.backend, batch_size=8, workers=1, device="cpu")

        def call() -> str:
            returned = api.build_df03_with_embeddings(self.root, self.data_root, **kwargs)
            if not o.dry_run:
                return ""
            if not isinstance(returned, api.PlannedRun):  # what an analyst prints must be the plan
                raise TypeError(f"build_df03_with_embeddings(dry_run=True) returned {returned!r}, not a PlannedRun")
            return json.dumps(returned)

        return _in_process(options, f"api.build_df03_with_embeddings(R, D, **{kwargs!r})", "api", call)

    def run_stage(self, options: Options) -> RunResult:
        """Build06 through ``morphseq_stages.run_stage(host, "build06", {...})``, ``dry_run``
        among the options as a notebook user passes it; ``stdout``: the summary (``--json``'s),
        or for a dry run the plan (``--dry-run --json``'s)."""
        from morphseq_stages import get_host, run_stage

        o = options
        given: dict[str, Any] = dict(
            root=self.root, data_root=self.data_root, model_name=MODEL, experiments=o.experiments,
            generate_missing_latents=o.generate_missing_latents, generate_only=o.generate_only,
            overwrite=o.overwrite, overwrite_latents=o.overwrite_latents,
            export_analysis_copies=o.export_analysis_copies, train_name=o.train_name, formats=("csv", *o.formats),
            report=o.report, latent_format=o.latent_format, z_schema=o.z_schema, include_sigma=o.include_sigma,
            strict=o.strict, backend=o.backend, batch_size=8, workers=1, device="cpu", dry_run=o.dry_run)
        given = {k: v for k, v in given.items() if v is not None}

        def call() -> str:
            result = run_stage(get_host(), "build06", given)
            if result.exit_code:
                print(f"exit {result.exit_code}: {' | '.join(result.summary['warnings'])}", file=sys.stderr)
            return json.dumps(result.plan.as_dict() if o.dry_run else result.summary, default=str)

        return _in_process(options, f"morphseq_stages.run_stage(host, 'build06', {given!r})", "run_stage", call)

    # -- what is on disk -------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        files: dict[str, tuple[str, int]] = {}
        dirs: set[str] = set()
        for top in (self.root, self.data_root):
            for dirpath, dirnames, names in os.walk(top):
                dirs.update(str(Path(dirpath) / d) for d in dirnames)
                for name in names:
                    p = Path(dirpath) / name
                    files[str(p)] = (sha256(p), p.stat().st_mtime_ns)
        return Snapshot(files=files, dirs=frozenset(dirs))


def _in_process(options: Options, command: str, interface: str, call: Callable[[], str]) -> RunResult:
    """``call()`` (it returns what goes to stdout) as the CLI's exit codes would report it:
    0 when it returns, a UserError's exit code (``kept``: OutputExists, an output left as it
    was), 70 with the traceback for any other exception."""
    import traceback

    import structlog

    from morphseq_build06 import api
    from morphseq_stages.errors import UserError

    out, err = io.StringIO(), io.StringIO()
    code, kept = 0, False
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            print(call())
        except api.OutputExists as exc:
            code, kept = exc.exit_code, True
            print(f"OutputExists: {exc}", file=sys.stderr)
        except UserError as exc:
            code = exc.exit_code
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        except Exception:
            code = 70
            traceback.print_exc()
        finally:
            structlog.reset_defaults()
    return RunResult(options=options, argv=[command], code=code, stdout=out.getvalue(), stderr=err.getvalue(),
                     interface=interface, kept=kept)


@attrs.frozen
class Snapshot:
    files: Mapping[str, tuple[str, int]]  # path -> (sha256, mtime_ns)
    dirs: frozenset[str]

    def changed(self, after: Snapshot, *, rewrites: bool = False) -> set[str]:
        """Files created, removed or with other bytes (``rewrites``: or rewritten at all)."""
        keys = set(self.files) | set(after.files)
        i = None if rewrites else 0
        return {k for k in keys if (self.files.get(k) or ())[:i] != (after.files.get(k) or ())[:i]}


@attrs.frozen(kw_only=True)
class RunResult:
    options: Options
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    interface: str = "cli"  # or "api" (build_df03_with_embeddings), "run_stage"
    kept: bool = False  # the API raised OutputExists
    touched: frozenset[str] = frozenset()  # the files the run created, removed or rewrote

    @property
    def has_summary(self) -> bool:
        """Whether ``json`` is the run summary ``--json`` prints (the CLI's, run_stage's)."""
        return self.interface != "api" and not self.options.dry_run

    @property
    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.stdout)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def command(self) -> str:
        return "morphseq-stages " + " ".join(self.argv) if self.interface == "cli" else self.argv[0]


# ---------------------------------------------------------------------------------------
# The independent model: what df03 and its copies must hold, read from the inputs
# ---------------------------------------------------------------------------------------

def z_key(name: str) -> tuple[int, int, int] | None:
    """Sort key of a z column (mu before sigma, then dimension index), None if not one."""
    m = _Z.match(name)
    if not m:
        return None
    return (0 if m.group(1) == "mu" else 1, int(m.group(3)), {"": 0, "n": 1, "b": 2}[m.group(2) or ""])


def chosen_z(names: Iterable[str], z_schema: str, include_sigma: bool) -> list[str]:
    """The z columns ``--z-schema``/``--include-sigma`` keep, in dimension order."""
    z = [(n, m) for n in names if (m := _Z.match(n)) and (m.group(1) == "mu" or include_sigma)]
    flat = [n for n, m in z if not m.group(2)]
    bn = [n for n, m in z if m.group(2)]
    chosen = flat if z_schema == "flat" else (bn or flat) if z_schema == "bio_nuisance" else [n for n, _ in z]
    return sorted(dict.fromkeys(chosen), key=lambda n: z_key(n) or (9, 0, 0))


def is_number(text: str) -> bool:
    return bool(_NUMBER.match(text)) and math.isfinite(float(text))


@attrs.frozen
class LatentRows:
    """One latent file as read: its z column names and, per snip_id, the first row's cells
    (text for CSV, float for Parquet)."""

    path: Path
    columns: tuple[str, ...]
    rows: Mapping[str, tuple[Any, ...]]


def read_latent_file(path: Path) -> LatentRows:
    if path.suffix == ".parquet":
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrow = pq.read_table(path)
        table = arrow.to_pydict()
        names = [n for n in table if _Z.match(n)]
        # a value keeps its stored precision: df03's text of a float32 is float32's shortest
        kinds = [np.float32 if arrow.schema.field(n).type == pa.float32() else float for n in names]
        rows: dict[str, tuple[Any, ...]] = {}
        for i, snip in enumerate(table["snip_id"]):
            rows.setdefault(str(snip).strip(), tuple(None if table[n][i] is None else kind(table[n][i])
                                                     for n, kind in zip(names, kinds, strict=True)))
        return LatentRows(path, tuple(names), rows)
    with open(path, newline="") as fh:
        records = list(csv.reader(fh))
    header, body = records[0], records[1:]
    si = header.index("snip_id")
    names = [n for n in header if _Z.match(n)]
    idx = [header.index(n) for n in names]
    rows = {}
    for r in body:
        rows.setdefault(r[si].strip(), tuple(r[i] for i in idx))
    return LatentRows(path, tuple(names), rows)


def manifest(world: World) -> dict[str, Any]:
    try:
        data = json.loads((world.store / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if isinstance(data, dict) else {}


def latent_sources(world: World, latent_format: str) -> dict[str, Path]:
    """The latent file the merge reads for each of df02's experiments: the one in
    ``--latent-format`` where the store holds both."""
    out = {}
    for exp in world.experiments():
        files = {fmt: world.store / f"morph_latents_{exp}.{fmt}" for fmt in ("csv", "parquet")}
        other = "parquet" if latent_format == "csv" else "csv"
        for fmt in (latent_format, other):
            if files[fmt].is_file():
                out[exp] = files[fmt]
                break
    return out


@attrs.frozen
class Expected:
    """What df03 must hold under some options: df02's header and records with the z cells."""

    z_columns: tuple[str, ...]
    cells: Mapping[str, tuple[Any, ...] | None]  # snip_id -> the z cells of its latent row (None: unembedded)

    def z_of(self, snip: str) -> tuple[Any, ...] | None:
        return self.cells.get(snip.strip())


def expected(world: World, options: Options) -> Expected:
    files = [read_latent_file(p) for p in latent_sources(world, options.latent_format).values()]
    names = chosen_z([n for f in files for n in f.columns], options.z_schema, options.include_sigma)
    cells: dict[str, tuple[Any, ...] | None] = {}
    for f in files:
        where = {n: i for i, n in enumerate(f.columns)}
        for snip, row in f.rows.items():
            if snip in cells:
                continue
            values = tuple(row[where[n]] if n in where else None for n in names)
            finite = all((is_number(v) if isinstance(v, str) else v is not None and math.isfinite(v))
                         for v in row)
            cells[snip] = values if finite and None not in values else None
    return Expected(tuple(names), cells)


def split_records(data: bytes) -> list[bytes]:
    """Records of a CSV whose fields hold no line break (all of this world's)."""
    assert data.endswith(b"\n"), "no final line end"
    return data[:-1].split(b"\n")


def cell_matches(cell: str, want: Any) -> bool:
    if want is None:
        return cell == ""
    if isinstance(want, str):
        return cell == want
    return cell != "" and type(want)(cell) == want  # float32 or float64, as the Parquet file stores it


def table_mismatch(out: Path, source: Path, exp: Expected, *, keep=None) -> str | None:
    """Why ``out`` is not ``source``'s records (those ``keep`` accepts) each followed by the
    z cells of its snip; None when it is."""
    src = split_records(source.read_bytes())
    got = split_records(out.read_bytes())
    header = next(csv.reader([src[0].decode()]))
    si = header.index("snip_id")
    body = [r for r in src[1:] if keep is None or keep(next(csv.reader([r.decode()])))]
    z_head = ",".join(exp.z_columns).encode()
    want_head = src[0] + (b"," + z_head if exp.z_columns else b"")
    if got[0] != want_head:
        return f"{out.name}: header {got[0][-120:]!r}, expected {want_head[-120:]!r}"
    if len(got) - 1 != len(body):
        return f"{out.name}: {len(got) - 1} records, expected {len(body)}"
    n_z = len(exp.z_columns)
    for i, (g, s) in enumerate(zip(got[1:], body, strict=True)):
        if not g.startswith(s + (b"," if n_z else b"")) or (not n_z and g != s):
            return f"{out.name} record {i + 1}: does not start with the source's bytes {s[:80]!r}: {g[:120]!r}"
        snip = next(csv.reader([s.decode()]))[si]
        cells = g[len(s) + 1:].decode().split(",") if n_z else []
        want = exp.z_of(snip) or (None,) * n_z
        if len(cells) != n_z or not all(cell_matches(c, w) for c, w in zip(cells, want, strict=True)):
            return f"{out.name} record {i + 1} ({snip}): z cells {cells}, expected {list(want)}"
    return None
