"""The numbers behind the report: coverage, drift against chance, typical and atypical snips.

Everything here works on the z_mu matrix of df03's embedded rows (one row per snip) and
their experiments; nothing reads a file.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

#: draws of the chance baseline per experiment
DRAWS = 1000
#: an experiment of at most this many rows gets its baseline from real random draws of rows;
#: above it, from the normal law those draws' mean follows (same covariance, see ``chance_drift``)
EXACT_DRAWS_MAX_N = 50
#: drift beyond this quantile of the chance baseline is called "beyond chance"
CHANCE_QUANTILE = 0.99
#: atypicality is measured against at most this many rows (a fixed random sample beyond)
REFERENCE_ROWS = 2000
#: dimensions kept (the leading principal components) for the nearest-neighbour distances
NEIGHBOUR_DIMS = 16


@attrs.frozen(kw_only=True)
class Spectrum:
    """The principal axes of the rows: their mean, directions (columns) and variances, largest first."""

    mean: np.ndarray
    axes: np.ndarray
    variances: np.ndarray


def spectrum(z: np.ndarray) -> Spectrum:
    mean = z.mean(axis=0) if len(z) else np.zeros(z.shape[1])
    centred = z - mean
    cov = centred.T @ centred / max(len(z), 1)
    variances, axes = np.linalg.eigh(cov)
    order = np.argsort(variances)[::-1]
    return Spectrum(mean=mean, axes=axes[:, order], variances=np.clip(variances[order], 0, None))


def pca(z: np.ndarray, spec: Spectrum, dims: int = 2) -> np.ndarray:
    coords = (z - spec.mean) @ spec.axes[:, :dims]
    if coords.shape[1] < dims:  # fewer z columns than asked: pad with zeros
        coords = np.column_stack([coords, np.zeros((len(z), dims - coords.shape[1]))])
    return coords


def group_sums(z: np.ndarray, codes: np.ndarray, groups: int) -> np.ndarray:
    """Per group code 0..groups-1, the sum of its rows of ``z``."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sums = np.zeros((groups, z.shape[1]))
    present = counts > 0
    if present.any():
        sums[present] = np.add.reduceat(z[order], starts[present], axis=0)
    return sums


def within_spread(z: np.ndarray, codes: np.ndarray, sums: np.ndarray) -> float:
    """Root-mean-square distance of rows from their own experiment's mean."""
    if not len(z):
        return 0.0
    counts = np.bincount(codes, minlength=len(sums))
    means = sums / np.maximum(counts, 1)[:, None]
    # sum of squared residuals = sum |z|^2 - sum_g n_g |mean_g|^2
    total = float((z ** 2).sum() - (counts * (means ** 2).sum(axis=1)).sum())
    return float(np.sqrt(max(total, 0.0) / len(z)))


def chance_drift(z: np.ndarray, spec: Spectrum, n: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """The drift of ``DRAWS`` experiments of ``n`` rows drawn at random from all rows.

    Small n: real draws (without replacement). Larger n: the difference of a random
    subset's mean from the rest's is normal with covariance ``C * N^2 / (n (N - n) (N - 1))``
    (C: the rows' covariance), so its squared length is drawn as a sum of the principal
    variances times chi-square(1) draws: the same law, without touching every row per draw.
    """
    total = len(z)
    if n <= EXACT_DRAWS_MAX_N:
        s = z.sum(axis=0)
        out = np.empty(DRAWS)
        for b in range(DRAWS):
            pick = z[rng.choice(total, n, replace=False)].sum(axis=0)
            out[b] = np.linalg.norm(pick / n - (s - pick) / (total - n))
        return out / spread
    scale = total ** 2 / (n * (total - n) * (total - 1))
    squares = (rng.standard_normal((DRAWS, len(spec.variances))) ** 2) @ spec.variances
    return np.sqrt(scale * squares) / spread


def drift_table(z: np.ndarray, labels: np.ndarray, spec: Spectrum) -> list[dict[str, Any]]:
    """Per experiment: its drift (distance of its mean from the mean of every other row, in
    units of the within-experiment spread), the drift an experiment of its size has by
    chance (the ``CHANCE_QUANTILE`` of random draws of as many rows), and how often chance
    reached its drift (a p-value)."""
    groups = list(dict.fromkeys(labels.tolist()))
    codes = _codes(labels, groups)
    sums = group_sums(z, codes, len(groups))
    spread = within_spread(z, codes, sums)
    total = sums.sum(axis=0)
    rng = np.random.default_rng(0)
    table = []
    for k, g in enumerate(groups):
        mine = codes == k
        n = int(mine.sum())
        row: dict[str, Any] = {"experiment": g, "rows": n, "drift": None, "chance": None, "p": None,
                               "beyond_chance": False}
        if n == len(z) or spread == 0:
            table.append(row)
            continue
        s = sums[k]
        drift = float(np.linalg.norm(s / n - (total - s) / (len(z) - n))) / spread
        null = chance_drift(z, spec, n, spread, rng)
        chance = float(np.quantile(null, CHANCE_QUANTILE))
        p = (1 + int((null >= drift).sum())) / (len(null) + 1)
        row.update(drift=drift, chance=chance, p=p, beyond_chance=drift > chance)
        table.append(row)
    return table


def _codes(labels: np.ndarray, groups: list[str]) -> np.ndarray:
    index = {g: k for k, g in enumerate(groups)}
    return np.fromiter((index[x] for x in labels.tolist()), np.int64, len(labels))


def atypicality(z: np.ndarray, spec: Spectrum) -> tuple[np.ndarray, int, int]:
    """Each row's mean distance to its k nearest neighbours among all rows (a fixed random
    sample of ``REFERENCE_ROWS`` beyond that many), in the leading principal components,
    divided by the median of that distance: 1 is typical, 3 is three times as isolated.
    Returns (scores, k, the number of reference rows)."""
    n = len(z)
    if n < 3:
        return np.ones(n), 0, n
    x = pca(z, spec, min(NEIGHBOUR_DIMS, z.shape[1])).astype(np.float32)
    ref = np.arange(n) if n <= REFERENCE_ROWS else np.sort(np.random.default_rng(1).choice(n, REFERENCE_ROWS,
                                                                                          replace=False))
    # a 2% neighbourhood: a handful of identical failures still sits far from the rest
    k = int(np.clip(round(0.02 * len(ref)), 5, 30))
    k = min(k, len(ref) - 1)
    r = x[ref]
    r2 = (r ** 2).sum(axis=1)
    slot = np.full(n, -1)
    slot[ref] = np.arange(len(ref))
    scores = np.empty(n)
    for a in range(0, n, 2048):
        b = min(n, a + 2048)
        d2 = (x[a:b] ** 2).sum(axis=1)[:, None] + r2[None, :] - 2 * x[a:b] @ r.T
        own = slot[a:b] >= 0
        d2[np.flatnonzero(own), slot[a:b][own]] = np.inf  # a row is not its own neighbour
        near = np.partition(d2, k - 1, axis=1)[:, :k]
        scores[a:b] = np.sqrt(np.clip(near, 0, None)).mean(axis=1)
    median = float(np.median(scores))
    return (scores / median if median > 0 else scores), k, len(ref)


#: how coverage_table counts each merge reason (by its start; the rest: "other")
REASON_COLUMNS = (("no image", "no_image"), ("unreadable image", "unreadable"), ("no latent", "not_yet"))


def coverage_table(experiments: np.ndarray, reasons: np.ndarray) -> list[dict[str, Any]]:
    """Per experiment of df03 (its rows' experiments and the merge's reasons, "" when
    embedded): rows embedded; not embedded yet (the image exists: generation would embed
    it); unreadable image; no image (can never be embedded); other (non-finite latents)."""
    out = []
    for exp in dict.fromkeys(experiments.tolist()):
        mine = reasons[experiments == exp]
        missing = [r for r in mine.tolist() if r]
        row: dict[str, Any] = {"experiment": exp or "(none)", "rows": len(mine), "embedded": len(mine) - len(missing),
                               "not_yet": 0, "unreadable": 0, "no_image": 0, "other": 0}
        for r in missing:
            key = next((k for start, k in REASON_COLUMNS if r.startswith(start)), "other")
            row[key] += 1
        out.append(row)
    return out


def nearest_centre(z: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """Of ``rows`` (positions in ``z``), the ``count`` nearest their own mean."""
    if not len(rows):
        return rows
    d = ((z[rows] - z[rows].mean(axis=0)) ** 2).sum(axis=1)
    return rows[np.argsort(d, kind="stable")[:count]]


def most_atypical(scores: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    return rows[np.argsort(-scores[rows], kind="stable")[:count]]
