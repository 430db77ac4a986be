"""The report page: drawn from df03 as the merge holds it (the package's docstring says what it shows)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morphseq_stages.files import atomic_write_bytes

from ..csvtext import read_columns
from ..latents import parse_z
from ..report_spec import require_report
from ..typed import z_matrix
from . import figures, page, stats, thumbs

if TYPE_CHECKING:
    from ..merge import MergeResult
    from ..plan import Build06Plan

#: embedded rows drawn in the projection, each with its thumbnail; a fixed random sample beyond
POINT_BUDGET = 5000
#: snips per gallery: nearest the centre, and most atypical; and in the "look first" strip
GALLERY = 6
LOOK_FIRST = 12
#: an atypicality from which a snip is ringed in the projection and shown first (times the median row's)
STANDS_OUT = 1.5
#: unreadable images named per experiment (all are in the unembedded list)
UNREADABLE_SHOWN = 30
#: df02 columns shown on hover when present, besides those coloured by
HOVER_COLUMNS = ("predicted_stage_hpf", "genotype")


def project(z: np.ndarray, spec: stats.Spectrum) -> tuple[np.ndarray, str]:
    """2-D coordinates: UMAP when umap-learn is installed (and there are enough rows), else PCA."""
    if len(z) >= 10:
        try:
            import umap
        except ImportError:
            pass
        else:
            return umap.UMAP(n_components=2, random_state=0).fit_transform(z), "UMAP"
    return stats.pca(z, spec), "PCA"


def _embedded(plan: Build06Plan, merged: MergeResult) -> tuple[np.ndarray, np.ndarray]:
    """df02 rows of df03 that hold an embedding (all finite), and their z_mu."""
    rows = np.flatnonzero(merged.keep & (merged.take >= 0))
    mu = [j for j, c in enumerate(merged.latents.columns) if (parse_z(c) or ("",))[0] == "mu"]
    z = z_matrix(merged.latents, merged.take[rows])[:, mu]
    finite = np.isfinite(z).all(axis=1)
    return rows[finite], z[finite]


def write_report(path: Path, plan: Build06Plan, merged: MergeResult, provenance: Mapping[str, Any],
                 note: str) -> int:
    """Write the report for df03 as ``merged`` holds it; ``provenance``: df03's (its
    sidecar's content), ``note`` says where it comes from. Returns the experiments covered."""
    require_report()
    import plotly.offline

    color_by = [c for c in plan.options.report_color_by if c != "experiment"]
    experiments = plan.row_experiments.astype(str)
    rows = np.flatnonzero(merged.keep)
    coverage = stats.coverage_table(experiments[rows], merged.reasons[rows].astype(str))
    emb, z = _embedded(plan, merged)
    labels = experiments[emb]
    spec = stats.spectrum(z)
    drift = stats.drift_table(z, labels, spec) if len(z) else []
    scores, k, reference = stats.atypicality(z, spec)
    written = merged.settled.generated.written
    generated = {x.experiment for x in merged.settled.experiments if str(x.latent_path) in written}

    groups = list(dict.fromkeys(labels.tolist()))
    central = {g: stats.nearest_centre(z, np.flatnonzero(labels == g), GALLERY) for g in groups}
    # at most half an experiment's rows: the other half is what it looks like
    atypical = {g: stats.most_atypical(scores, np.flatnonzero(labels == g), min(GALLERY, int((labels == g).sum()) // 2))
                for g in groups}
    first = stats.most_atypical(scores, np.arange(len(z)), LOOK_FIRST)
    first = first[scores[first] >= STANDS_OUT]
    marked_pos = np.unique(np.concatenate([first, *atypical.values()])) if groups else np.array([], int)
    marked_pos = marked_pos[scores[marked_pos] >= STANDS_OUT]
    sampled = len(z) > POINT_BUDGET
    drawn = (np.union1d(np.random.default_rng(0).choice(len(z), POINT_BUDGET, replace=False), marked_pos)
             if sampled else np.arange(len(z)))

    gallery_pos = np.unique(np.concatenate([first, *central.values(), *atypical.values()])) if groups \
        else np.array([], int)
    unreadable = _unreadable(plan, merged, rows)
    images = thumbs.image_paths(plan.options.root, plan.options.data_root, experiments, plan.row_keys,
                                np.concatenate([emb[drawn], emb[gallery_pos]]))
    hover_img = thumbs.thumbnails(images[:len(drawn)], thumbs.HOVER_PX)
    big = dict(zip(gallery_pos.tolist(), thumbs.thumbnails(images[len(drawn):], thumbs.GALLERY_PX), strict=True))

    hover_names = list(dict.fromkeys([*color_by, *(c for c in HOVER_COLUMNS if c in plan.df02.names)]))
    meta = read_columns(plan.df02, hover_names) if hover_names else {}
    values = {c: np.asarray(meta[c].to_pylist(), dtype=object)[emb[drawn]] for c in hover_names}
    ids = [s or "" for s in plan.snip_ids.take(np.asarray(emb[drawn])).to_pylist()]
    hover = [[ids[i], labels[drawn][i], *(str(values[c][i] or "") for c in hover_names)] for i in range(len(drawn))]
    # the hover panel sets them as HTML: escaped here
    snips = [[hover_img[i], page.e(ids[i]), page.e(str(labels[drawn][i])),
              "".join(f"<div>{page.e(c)}: {page.e(str(values[c][i] or ''))}</div>" for c in hover_names)]
             for i in range(len(drawn))]

    sections = [("Coverage", _coverage_section(coverage, generated, unreadable))]
    if len(z):
        coords, method = project(z[drawn], spec)
        colourings = {"experiment": [str(x) for x in labels[drawn]],
                      **{c: [str(v or "") for v in values[c]] for c in color_by}}
        marked = np.isin(drawn, marked_pos)
        budget = (f"{len(drawn):,} of {len(z):,} embedded rows drawn: a fixed random sample of {POINT_BUDGET:,} "
                  "(the point budget) plus the ringed atypical snips. " if sampled else
                  f"All {len(z):,} embedded rows drawn (point budget {POINT_BUDGET:,}). ")
        sections.insert(0, ("Look at these first", _look_first(first, emb, scores, big, plan, labels, k, reference,
                                                               unreadable)))
        sections.append((f"Embeddings ({method})",
                         f"<p class=note>{budget}Hover over or click a point to see its snip; click a legend entry "
                         "to hide it, double-click to show it alone; drag to zoom, double-click to zoom out.</p>"
                         "<div class='wrap'>" + figures.projection_figure(coords, method, colourings, hover,
                                                                        hover_names, marked) +
                         "<div id='snip'>Hover over a point to see its snip.</div></div>"))
        sections.append(("Gallery per experiment", _galleries(groups, central, atypical, scores, emb, big, plan,
                                                              unreadable, k, reference)))
        sections.append(("Drift", page.drift_table(drift)))
    sections.append(("Provenance", page.provenance_section(provenance, note)))
    total = sum(t["rows"] for t in coverage)
    embedded = sum(t["embedded"] for t in coverage)
    summary = (f"df03: {total:,} rows in {len(coverage)} experiment(s), {embedded:,} embedded"
               f"{f' ({embedded / total:.1%})' if total else ''}; model "
               f"{page.e(str((provenance.get('model') or {}).get('name', plan.model.name)))}.")
    text = page.page(title="Build06 report: embryo_metadata_df03", plotly_js=plotly.offline.get_plotlyjs(),
                     sections=sections, snips=snips, summary=summary)
    atomic_write_bytes(path, text.encode())
    return len(coverage)


def _unreadable(plan: Build06Plan, merged: MergeResult, rows: np.ndarray) -> dict[str, list[tuple[str, str]]]:
    """Per experiment: (snip_id, image path) of df03 rows whose image could not be read."""
    prefix = "unreadable image "
    bad = rows[np.char.startswith(merged.reasons[rows].astype(str), prefix)]
    ids = plan.snip_ids.take(np.asarray(bad)).to_pylist() if len(bad) else []
    out: dict[str, list[tuple[str, str]]] = {}
    for i, snip in zip(bad.tolist(), ids, strict=True):
        out.setdefault(str(plan.row_experiments[i]), []).append((snip or "", merged.reasons[i][len(prefix):]))
    return out


def _coverage_section(coverage: list[dict[str, Any]], generated: set[str],
                      unreadable: Mapping[str, list[tuple[str, str]]]) -> str:
    html = figures.coverage_figure(coverage) + page.coverage_table(coverage, generated)
    if unreadable:
        items = "".join(
            f"<li><b>{page.e(exp)}</b>: {len(bad)} unreadable: "
            + ", ".join(f"<code title='{page.e(p)}'>{page.e(s)}</code>" for s, p in bad[:UNREADABLE_SHOWN])
            + (f" and {len(bad) - UNREADABLE_SHOWN} more" if len(bad) > UNREADABLE_SHOWN else "") + "</li>"
            for exp, bad in unreadable.items())
        html += ("<p class=note>Snip images that could not be read (truncated or corrupt files; all are listed, "
                 "with their paths, in embryo_metadata_df03_unembedded.csv):</p>" f"<ul id='unreadable'>{items}</ul>")
    return html


def _tile(pos: int, emb: np.ndarray, big: Mapping[int, str | None], plan: Build06Plan, labels: np.ndarray,
          caption: str) -> page.Tile:
    return page.Tile(snip_id=str(plan.snip_ids[int(emb[pos])].as_py() or ""), experiment=str(labels[pos]),
                     image=big.get(pos), caption=caption)


def _look_first(first: np.ndarray, emb: np.ndarray, scores: np.ndarray, big: Mapping[int, str | None],
                plan: Build06Plan, labels: np.ndarray, k: int, reference: int,
                unreadable: Mapping[str, list[tuple[str, str]]]) -> str:
    items = [_tile(int(p), emb, big, plan, labels, f"{scores[p]:.1f}x typical") for p in first]
    out = (f"<p class=note>Embedded snips far from every experiment's rows: the mean distance to their {k} nearest "
           f"neighbours among {reference:,} rows is at least {STANDS_OUT}x the median row's (most atypical first; "
           "each is ringed in the projection). Segmentation failures, off-centre, out-of-focus or dead embryos "
           "show here.</p>")
    out += page.tiles(items, with_experiment=True) if items else "<p><b>None stands out.</b></p>"
    bad = [page.Tile(snip_id=s, experiment=exp, image=None, caption=p) for exp, rows in unreadable.items()
           for s, p in rows[:UNREADABLE_SHOWN]]
    if bad:
        total = sum(len(v) for v in unreadable.values())
        out += (f"<p class=note>{total} snip image(s) could not be read (truncated or corrupt files), so these "
                "embryos have no embedding:</p>" + page.tiles(bad, with_experiment=True))
    return out


def _galleries(groups: Sequence[str], central: Mapping[str, np.ndarray], atypical: Mapping[str, np.ndarray],
               scores: np.ndarray, emb: np.ndarray, big: Mapping[int, str | None], plan: Build06Plan,
               unreadable: Mapping[str, list[tuple[str, str]]], k: int, reference: int) -> str:
    labels = plan.row_experiments.astype(str)[emb]
    out = [f"<p class=note>Per experiment: the snips nearest its mean z_mu (what it looks like), and its most "
           f"atypical ones (mean distance to their {k} nearest neighbours among {reference:,} rows of all "
           "experiments, as a multiple of the median row's).</p>"]
    for g in groups:
        n = int((labels == g).sum())
        typical = [_tile(int(p), emb, big, plan, labels, "") for p in central[g]]
        odd = [_tile(int(p), emb, big, plan, labels, f"{scores[p]:.1f}x" + (" (stands out)" if scores[p] >= STANDS_OUT
                                                                          else "")) for p in atypical[g]]
        bad = unreadable.get(g, [])
        bad_html = (f"<div>unreadable images ({len(bad)}): " + ", ".join(f"<code>{page.e(s)}</code>" for s, _ in
                                                                         bad[:UNREADABLE_SHOWN]) + "</div>"
                    if bad else "")
        out.append(f"<div class='exp' id='gallery-{page.e(g)}'><h3>{page.e(g)} <small>({n:,} embedded rows)"
                   f"</small></h3><div>nearest the centre</div>{page.tiles(typical)}"
                   f"<div>most atypical</div>{page.tiles(odd)}{bad_html}</div>")
    return "".join(out)
