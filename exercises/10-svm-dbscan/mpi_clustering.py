"""Parallel DBSCAN (HPDBSCAN-style) and k-means over MPI: the batch version of 10-svm-dbscan.

    mpiexec -n 3 python -m mpi4py mpi_clustering.py [--points 20000] [--grid] [--parts FILE]
    sbatch --ntasks=3 jobs/dbscan.sbatch mpi_clustering.py --points 200000    (on Slurm)

Uses *your* functions from the notebook: its section 6 writes them to
scratch/dbscan_parts.py (``--parts`` points elsewhere). Every rank makes the same data
(psml.spatial.density_blobs), takes its cost-balanced slab, runs your ``parallel_dbscan``
(timing its local clustering and its exchange + merge apart) and a few ``kmeans_step``
iterations on its shard. Rank 0 checks both against scikit-learn / serial NumPy and prints
"(OK)" lines; the exit code is 1 when a result differs. ``--grid`` also times your
``grid_cv_mpi`` on the 8x8 digits, best parameter set and all sets (piSVM's table);
``--json FILE`` saves the figures (benchmarks/classic_ml.py reads them).
"""

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from psml.spatial import (cost_balanced_bounds, dbscan_mismatch, density_blobs, rank_costs,
                          uniform_bounds)


def load_parts(path: Path):
    if not path.is_file():
        sys.exit(f"cannot import your functions: no {path}. Run 10-svm-dbscan.ipynb up to "
                 "section 6 first; it writes them there (or pass --parts FILE)")
    spec = importlib.util.spec_from_file_location("dbscan_parts", path)
    parts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parts)
    return parts


def run_dbscan(comm, parts, X, eps, min_samples, split):
    """Labels, per-rank seconds of local clustering, total seconds (slowest rank)."""
    size, rank = comm.Get_size(), comm.Get_rank()
    bounds = (cost_balanced_bounds(X, eps, size) if split == "cost"
              else uniform_bounds(X, size))
    owned, halo = parts.halo_split(X[:, 0], bounds[rank], bounds[rank + 1], eps)
    ids = np.flatnonzero(owned | halo)
    parts.dbscan(X[ids[:20]], eps, min_samples)      # warm-up: imports, first-call costs
    # The two phases of parallel_dbscan timed apart: local clustering, then (after a barrier,
    # so no rank's wait for the slowest one counts) the exchange and the merge.
    comm.Barrier()
    t0 = time.perf_counter()
    local, core = parts.dbscan(X[ids], eps, min_samples, owned=owned[ids])
    t_local = time.perf_counter() - t0
    local = np.where(local >= 0, local + rank * len(X), -1)
    comm.Barrier()
    t0 = time.perf_counter()
    parts.merge_clusters(len(X), comm.allgather((ids, local, core, owned[ids])))
    t_merge = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    comm.Barrier()
    t0 = time.perf_counter()
    labels = parts.parallel_dbscan(comm, X, eps, min_samples, bounds)   # the real thing
    t_total = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    return labels, comm.gather(t_local, root=0), t_merge, t_total, bounds, len(ids)


def run_grid(comm, parts, folds):
    """Seconds (slowest rank) of the best set alone and of the whole grid, and the scores."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    gammas, Cs = np.array([0.003, 0.01, 0.03, 0.1]), np.array([1.0, 10.0, 100.0])
    parts.grid_cv_mpi(comm, X[:60], y[:60], gammas[:1], Cs[:1], 2)    # warm-up

    def timed(g, c):
        comm.Barrier()
        t0 = time.perf_counter()
        scores = parts.grid_cv_mpi(comm, X, y, g, c, folds)
        return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX), scores

    t_all, scores = timed(gammas, Cs)
    gi, ci = np.unravel_index(np.argmax(scores), scores.shape)
    t_best, _ = timed(gammas[gi:gi + 1], Cs[ci:ci + 1])
    return {"grid": f"{len(gammas)}x{len(Cs)} gamma x C, {folds}-fold CV, {len(X)} digits",
            "best_gamma": float(gammas[gi]), "best_C": float(Cs[ci]),
            "best_accuracy": round(float(scores[gi, ci]), 4),
            "best_set_s": round(t_best, 3), "all_sets_s": round(t_all, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--eps", type=float, default=None,
                    help="default: 0.3 scaled to the point density (0.3 at 3,000 points)")
    ap.add_argument("--min-samples", type=int, default=5)
    ap.add_argument("--split", choices=["cost", "uniform"], default="cost")
    ap.add_argument("--kmeans-steps", type=int, default=5)
    ap.add_argument("--parts", type=Path, default=Path("scratch") / "dbscan_parts.py")
    ap.add_argument("--grid", action="store_true", help="also time grid_cv_mpi (SVM grid)")
    ap.add_argument("--folds", type=int, default=5, help="folds of the --grid search")
    ap.add_argument("--json", type=Path, help="rank 0 writes the figures to this file")
    args = ap.parse_args()
    parts = load_parts(args.parts)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()

    X = density_blobs(args.points, seed=0)
    eps = args.eps or 0.3 * np.sqrt(3000 / args.points)
    labels, t_local, t_merge, t_total, bounds, n_local = run_dbscan(
        comm, parts, X, eps, args.min_samples, args.split)
    n_local = comm.gather(n_local, root=0)

    shard = np.array_split(X, size)[rank]
    centers = X[:4].copy()
    for _ in range(args.kmeans_steps):
        centers = parts.kmeans_step(comm, shard, centers)
    grid = run_grid(comm, parts, args.folds) if args.grid else None
    print(f"rank {rank}/{size}: {len(shard)} k-means points, slab "
          f"[{bounds[rank]:.2f}, {bounds[rank + 1]:.2f})", flush=True)
    if rank != 0:
        return 0

    from sklearn.cluster import DBSCAN

    ok = True
    ref = DBSCAN(eps=eps, min_samples=args.min_samples).fit(X)
    core = np.zeros(len(X), bool)
    core[ref.core_sample_indices_] = True
    problem = dbscan_mismatch(labels, ref.labels_, core, X, eps)
    ok &= problem is None
    cost = rank_costs(X, eps, bounds)
    merge_share = t_merge / (max(t_local) + t_merge)
    print(f"dbscan: {args.points} points, eps={eps:.3f}, {labels.max() + 1} clusters on "
          f"{size} ranks ({args.split} slabs) in {t_total:.3f} s")
    print(f"dbscan: points per rank incl. halo {n_local}; cost imbalance (max/mean) "
          f"{cost.max() / cost.mean():.2f}")
    print(f"dbscan: local clustering {max(t_local):.3f} s (slowest rank), exchange + merge "
          f"{t_merge:.3f} s ({merge_share:.0%})")
    print(f"dbscan vs scikit-learn: {problem or 'same clustering'} ({'OK' if not problem else 'MISMATCH'})")

    c_ser = X[:4].copy()
    for _ in range(args.kmeans_steps):
        nearest = ((X[:, None] - c_ser[None]) ** 2).sum(2).argmin(1)
        c_ser = np.array([X[nearest == c].mean(0) if np.any(nearest == c) else c_ser[c]
                          for c in range(len(c_ser))])
    diff = float(np.max(np.abs(centers - c_ser)))
    ok &= diff < 1e-12
    print(f"kmeans: max |parallel - serial| = {diff:.1e} ({'OK' if diff < 1e-12 else 'MISMATCH'})")
    if grid:
        print(f"grid: {grid['grid']} on {size} ranks: best set (gamma={grid['best_gamma']:g}, "
              f"C={grid['best_C']:g}) {grid['best_set_s']:.2f} s, all sets {grid['all_sets_s']:.2f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "ranks": size, "points": args.points, "eps": round(eps, 4), "split": args.split,
            "dbscan_s": round(t_total, 4), "local_s_per_rank": [round(t, 4) for t in t_local],
            "merge_s": round(t_merge, 4), "merge_share": round(merge_share, 3),
            "cost_imbalance": round(float(cost.max() / cost.mean()), 3),
            "points_per_rank_with_halo": n_local, "correct": bool(ok), "grid": grid}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
