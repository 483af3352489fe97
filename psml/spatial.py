"""Spatial tooling for the density-clustering unit (10): data, region queries, the cell grid
and HPDBSCAN-style partitions, and comparing two clusterings.

Tooling only: DBSCAN itself, the halo, the merge and the MPI driver are what students write
(``solutions/10-svm-dbscan``). Typical use::

    from psml.spatial import density_blobs, region_query, cost_balanced_bounds
    X = density_blobs(2000)
    nbrs = region_query(X, eps=0.3)                # nbrs[i]: indices within eps, i included
    bounds = cost_balanced_bounds(X, 0.3, size=3)  # slab edges along x for 3 ranks
"""

from __future__ import annotations

import numpy as np


def density_blobs(n: int = 2000, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """(n, 2) points: four Gaussian blobs of very different density and size (most points in
    one dense blob, which makes equal-width slabs unbalanced) plus uniform noise."""
    rng = np.random.default_rng(seed)
    centers = np.array([[-4.0, 0.0], [0.0, 3.0], [1.5, -2.0], [4.5, 1.0]])
    scales = np.array([0.5, 0.9, 0.35, 0.7])
    weights = np.array([0.55, 0.15, 0.2, 0.1])
    n_noise = int(round(noise * n))
    which = rng.choice(len(centers), size=n - n_noise, p=weights)
    blobs = centers[which] + rng.standard_normal((n - n_noise, 2)) * scales[which, None]
    uniform = rng.uniform([-7, -5], [7, 6], size=(n_noise, 2))
    return rng.permutation(np.vstack([blobs, uniform]))


def region_query(X: np.ndarray, eps: float) -> list[np.ndarray]:
    """For every point, the indices of all points within distance ``eps`` (``<= eps``, the
    point itself included, as in scikit-learn's DBSCAN): a list of n int arrays."""
    from scipy.spatial import cKDTree

    X = np.asarray(X, dtype=float)
    if len(X) == 0:
        return []
    hits = cKDTree(X).query_ball_point(X, eps)
    return [np.sort(np.asarray(h, dtype=int)) for h in hits]


def k_distances(X: np.ndarray, k: int) -> np.ndarray:
    """Distance of every point to its k-th nearest point (itself counted as the first),
    sorted ascending: the "k-distance plot" used to choose DBSCAN's eps for min_samples=k."""
    from scipy.spatial import cKDTree

    d, _ = cKDTree(X).query(X, k=k)
    return np.sort(d[:, -1] if d.ndim == 2 else d)


def cell_columns(x: np.ndarray, eps: float) -> np.ndarray:
    """Index of the eps-wide cell column of each first coordinate (0 = leftmost column)."""
    return np.floor((x - x.min()) / eps).astype(int)


def cell_costs(X: np.ndarray, eps: float) -> np.ndarray:
    """HPDBSCAN's cost model per eps-wide cell *column*: a point costs as many distance
    computations as there are points in its 3x3 block of eps-cells; returns the summed cost
    of the points in each column (length = number of columns)."""
    cells = np.floor((X[:, :2] - X[:, :2].min(0)) / eps).astype(int)
    shape = cells.max(0) + 1
    counts = np.zeros(shape + 2)                      # one empty cell of padding around
    np.add.at(counts, (cells[:, 0] + 1, cells[:, 1] + 1), 1)
    block = sum(np.roll(np.roll(counts, dx, 0), dy, 1) for dx in (-1, 0, 1) for dy in (-1, 0, 1))
    return (counts * block)[1:-1, 1:-1].sum(axis=1)


def _with_open_ends(inner: list[float]) -> np.ndarray:
    return np.array([-np.inf, *inner, np.inf])


def uniform_bounds(X: np.ndarray, size: int) -> np.ndarray:
    """Slab edges along x for ``size`` ranks: equal widths (the naive split). ``size + 1``
    values, the outer ones -inf and +inf; rank r owns ``bounds[r] <= x < bounds[r + 1]``."""
    lo, hi = float(X[:, 0].min()), float(X[:, 0].max())
    return _with_open_ends(list(np.linspace(lo, hi, size + 1)[1:-1]))


def cost_balanced_bounds(X: np.ndarray, eps: float, size: int) -> np.ndarray:
    """Slab edges along x, on eps-cell column borders, so that every rank gets about the same
    HPDBSCAN cost (:func:`cell_costs`); same format as :func:`uniform_bounds`."""
    costs = cell_costs(X, eps)
    # The smallest possible cost of the most loaded rank (contiguous columns): binary search
    # over that bound, packing columns greedily from the left.
    lo, hi = float(costs.max()), float(costs.sum())
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if len(_pack(costs, mid)) <= size - 1 else (mid, hi)
    cuts = _pack(costs, hi)
    cuts += [len(costs)] * (size - 1 - len(cuts))      # ranks left over own empty slabs
    x0 = float(X[:, 0].min())
    return _with_open_ends([x0 + c * eps for c in cuts])


def _pack(costs: np.ndarray, limit: float) -> list[int]:
    """Column indices where a new slab starts when each slab takes columns until the next
    one would push it over ``limit``."""
    cuts, load = [], 0.0
    for c, cost in enumerate(costs):
        if load + cost > limit and load > 0:
            cuts.append(c)
            load = 0.0
        load += cost
    return cuts


def rank_costs(X: np.ndarray, eps: float, bounds: np.ndarray) -> np.ndarray:
    """Work of each rank for given slab edges: the sum, over the points it owns, of their
    number of eps-neighbours (the distance tests its local DBSCAN must make)."""
    sizes = np.array([len(nb) for nb in region_query(X, eps)])
    owner = np.searchsorted(bounds, X[:, 0], side="right") - 1
    return np.bincount(owner, weights=sizes, minlength=len(bounds) - 1)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two labelings group the points identically (labels may be permuted)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def dbscan_mismatch(labels, reference, core, X, eps) -> str | None:
    """``None`` when ``labels`` is the DBSCAN clustering ``reference`` up to renaming the
    clusters, else a sentence saying what differs (for asserts that teach).

    DBSCAN is unique except for border points reachable from two clusters, which may join
    either: noise must be identical, core points grouped identically, and every border point
    must carry the label of one of its core neighbours. ``core``: (n,) bool core mask.
    """
    labels, reference = np.asarray(labels), np.asarray(reference)
    core = np.asarray(core, dtype=bool)
    if labels.shape != reference.shape:
        return f"expected {reference.shape} labels, got {labels.shape}"
    noise_diff = np.flatnonzero((labels == -1) != (reference == -1))
    if len(noise_diff):
        i = noise_diff[0]
        return (f"{len(noise_diff)} points differ in being noise (-1), e.g. point {i}: "
                f"expected {'noise' if reference[i] == -1 else 'a cluster'}, got label {labels[i]}")
    if not same_partition(labels[core], reference[core]):
        n_mine, n_ref = len(set(labels[core].tolist())), len(set(reference[core].tolist()))
        return (f"core points are grouped differently: {n_ref} clusters expected, the core "
                f"points carry {n_mine} distinct labels (clusters split or merged)")
    nbrs = region_query(X, eps)
    for i in np.flatnonzero(~core & (reference != -1)):
        allowed = set(labels[nbrs[i]][core[nbrs[i]]].tolist())
        if labels[i] not in allowed:
            return (f"border point {i} has label {labels[i]}, but its core neighbours carry "
                    f"{sorted(allowed)}: a border point joins a cluster of a core point "
                    "within eps")
    return None
