"""``--report``: one self-contained HTML page describing a Build06 run.

- coverage per experiment (bar chart): rows embedded, rows not embedded yet (their snip
  image exists, so ``--generate-missing-latents`` would embed them), and rows that can
  never be embedded (no snip image on disk), shown apart;
- a 2-D projection of the ``z_mu`` vectors (PCA; UMAP when ``umap-learn`` is installed),
  coloured by experiment, the experiments generated in this run drawn larger and edged;
- a drift table: for each experiment, the distance between its mean embedding and the
  mean of all other experiments' rows, divided by the typical within-experiment spread
  (the root-mean-square distance of rows from their own experiment's mean). Above
  ``DRIFT_THRESHOLD`` the experiment is flagged: its embeddings sit apart from the others
  (a batch effect, another model, bad images). An experiment of n rows drifts by about
  sqrt(1/n) by chance alone, so small experiments deserve a look before a verdict;
- the run's provenance (the sidecar's content).

Figures are PNG embedded as base64; matplotlib (Agg) comes with the ``[report]`` extra.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morphseq_stages.errors import UserError
from morphseq_stages.files import atomic_write_bytes

from .latents import parse_z
from .typed import z_matrix

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .merge import MergeResult
    from .plan import Build06Plan


DRIFT_THRESHOLD = 0.5
MAX_POINTS = 20_000  # points drawn in the projection (a fixed random sample beyond this)


def require_report() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("--report needs matplotlib: pip install 'morphseq-stages[report]'") from None


def coverage_table(plan: Build06Plan, merged: MergeResult) -> list[dict[str, Any]]:
    """Per experiment of df03: rows embedded, not embedded yet, never embeddable (no image)."""
    rows = np.flatnonzero(merged.keep)
    out = []
    for exp in dict.fromkeys(plan.row_experiments[rows]):
        mine = rows[plan.row_experiments[rows] == exp]
        missing = mine[merged.take[mine] < 0]
        no_image = int((~plan.has_image[missing]).sum())
        out.append({"experiment": exp or "(none)", "rows": len(mine), "embedded": len(mine) - len(missing),
                    "not_yet": len(missing) - no_image, "never": no_image})
    return out


def drift_table(z: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    groups = list(dict.fromkeys(labels))
    means = {g: z[labels == g].mean(axis=0) for g in groups}
    resid = z - np.stack([means[g] for g in labels]) if len(z) else z
    spread = float(np.sqrt((resid ** 2).sum(axis=1).mean())) if len(z) else 0.0
    table = []
    for g in groups:
        others = labels != g
        if not others.any() or spread == 0:
            table.append({"experiment": g, "rows": int((labels == g).sum()), "drift": None, "flag": False})
            continue
        dist = float(np.linalg.norm(means[g] - z[others].mean(axis=0))) / spread
        table.append({"experiment": g, "rows": int((labels == g).sum()), "drift": dist, "flag": dist > DRIFT_THRESHOLD})
    return table


def project(z: np.ndarray) -> tuple[np.ndarray, str]:
    """2-D coordinates: UMAP when umap-learn is installed (and there are enough rows), else PCA."""
    if len(z) >= 10:
        try:
            import umap

            return umap.UMAP(n_components=2, random_state=0).fit_transform(z), "UMAP"
        except ImportError:
            pass
    centred = z - z.mean(axis=0)
    if len(z) < 2:
        return np.zeros((len(z), 2)), "PCA"
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.column_stack([coords, np.zeros(len(z))])
    return coords, "PCA"


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def coverage_figure(table: list[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t["experiment"] for t in table]
    fig, ax = plt.subplots(figsize=(8, 1 + 0.35 * max(1, len(names))))
    left = np.zeros(len(names))
    for key, label, colour in (("embedded", "embedded", "#2b8a3e"), ("not_yet", "not embedded yet", "#f08c00"),
                               ("never", "can never be embedded (no snip image)", "#868e96")):
        values = np.array([t[key] for t in table], float)
        ax.barh(names, values, left=left, color=colour, label=label)
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("df03 rows")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Coverage per experiment")
    return _png(fig)


def projection_figure(coords: np.ndarray, labels: np.ndarray, generated: set[str], method: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    groups = list(dict.fromkeys(labels))
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    size = float(np.clip(4000 / max(len(coords), 1), 2, 30))  # fewer points, bigger markers
    for i, g in enumerate(groups):
        m = labels == g
        new = g in generated
        ax.scatter(coords[m, 0], coords[m, 1], s=size * (3 if new else 1), color=cmap(i % cmap.N),
                   alpha=0.9 if new else 0.6,
                   edgecolors="black" if new else "none", linewidths=0.6,
                   label=f"{g} (generated this run)" if new else g)
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.set_title(f"z_mu, {method} projection, coloured by experiment")
    ax.legend(fontsize=7, loc="best", ncol=1 + len(groups) // 20)
    return _png(fig)


def _embedded(plan: Build06Plan, merged: MergeResult) -> tuple[np.ndarray, np.ndarray]:
    """z_mu of the embedded df03 rows, and their experiments."""
    rows = np.flatnonzero(merged.keep & (merged.take >= 0))
    columns = merged.latents.columns
    mu = [j for j, c in enumerate(columns) if (parse_z(c) or ("",))[0] == "mu"]
    z = z_matrix(merged.latents, merged.take[rows])[:, mu]
    finite = np.isfinite(z).all(axis=1)
    return z[finite], plan.row_experiments[rows][finite].astype(str)


def write_report(path: Path, plan: Build06Plan, merged: MergeResult, provenance: Mapping[str, Any]) -> int:
    """Write the report; return the number of experiments it covers."""
    require_report()
    coverage = coverage_table(plan, merged)
    z, labels = _embedded(plan, merged)
    generated = {e.experiment for e in plan.experiments if str(e.latent_path) in merged.generated.written}
    figures = [("Coverage per experiment", coverage_figure(coverage))]
    if len(z):
        pick = np.random.default_rng(0).choice(len(z), MAX_POINTS, replace=False) if len(z) > MAX_POINTS else slice(None)
        coords, method = project(z[pick])
        figures.append((f"Embeddings ({method})", projection_figure(coords, labels[pick], generated, method)))
    page = _html(coverage, drift_table(z, labels), figures, generated, provenance)
    atomic_write_bytes(path, page.encode())
    return len(coverage)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _html(coverage: list[dict[str, Any]], drift: list[dict[str, Any]], figures: list[tuple[str, str]],
          generated: Collection[str], provenance: Mapping[str, Any]) -> str:
    e = html.escape
    cov_rows = "".join(
        f"<tr><td>{e(t['experiment'])}{' <b>(generated this run)</b>' if t['experiment'] in generated else ''}</td>"
        f"<td>{t['rows']}</td><td>{t['embedded']}</td><td>{t['not_yet']}</td><td>{t['never']}</td>"
        f"<td>{t['embedded'] / t['rows']:.1%}</td></tr>" for t in coverage if t["rows"])
    drift_rows = "".join(
        f"<tr{' class=flag' if d['flag'] else ''}><td>{e(d['experiment'])}</td><td>{d['rows']}</td>"
        f"<td>{_fmt(d['drift'])}</td><td>{'DRIFT' if d['flag'] else 'ok'}</td></tr>"
        for d in drift)
    imgs = "".join(f"<h2>{e(title)}</h2><img alt='{e(title)}' src='data:image/png;base64,{data}'>"
                   for title, data in figures)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Build06 report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:first-child{{text-align:left}}
tr.flag{{background:#ffe3e3}}pre{{background:#f5f5f5;padding:1em;overflow:auto}}</style></head><body>
<h1>Build06 report</h1>
<h2>Coverage</h2>
<table><tr><th>experiment</th><th>rows</th><th>embedded</th><th>not embedded yet</th>
<th>can never be embedded (no image)</th><th>coverage</th></tr>{cov_rows}</table>
{imgs}
<h2>Drift</h2>
<p>Distance of each experiment's mean z_mu from the mean of all other rows, in units of the typical
within-experiment spread; flagged above {DRIFT_THRESHOLD}.</p>
<table><tr><th>experiment</th><th>embedded rows</th><th>drift</th><th></th></tr>{drift_rows}</table>
<h2>Provenance</h2>
<pre>{e(json.dumps(provenance, indent=2, default=str))}</pre>
</body></html>
"""
