"""Unit 10 figures: the SVM grid search over MPI ranks (best set and all sets, 1 vs 2 ranks,
piSVM's table in small), parallel DBSCAN time vs ranks with the merge step's share, and the
load balance of equal-width vs cost-balanced slabs. Writes results/classic_ml.json; run by
`make bench`.

Runs the unit's batch program (solutions/10-svm-dbscan/mpi_clustering.py) under mpiexec with
the solution's functions, exactly as tests/test_classic_ml.py does.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")

from psml.cluster import mpiexec_args  # noqa: E402
from test_classic_ml import write_parts  # noqa: E402  (the solution's functions, as the tests)

POINTS = 20_000
PISVM = {"best_set_min": [14.41, 1.02], "all_sets": ["~9 h", "~35 min"], "machine": "JURECA"}


def run(work: Path, ranks: int, *args: str) -> dict:
    out = work / f"fig-{ranks}-{'-'.join(a.strip('-') for a in args)}.json"
    cmd = ["mpiexec", *mpiexec_args(), "-n", str(ranks), sys.executable, "-m", "mpi4py",
           str(work / "mpi_clustering.py"), "--json", str(out), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=work)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr[-3000:]}")
    return json.loads(out.read_text())


def best_of(work: Path, ranks: int, *args: str, repeat: int = 3) -> dict:
    runs = [run(work, ranks, *args) for _ in range(repeat)]
    return min(runs, key=lambda f: f["dbscan_s"])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="psml-bench-classic-") as d:  # removed afterwards
        measure(Path(d))


def measure(work: Path) -> None:
    write_parts(work)
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
               "load_average_at_start": os.getloadavg()[0]}

    grid = {p: min((run(work, p, "--points", "1000", "--grid", "--folds", "10")["grid"]
                    for _ in range(2)), key=lambda g: g["all_sets_s"]) for p in (1, 2)}
    s_best = grid[1]["best_set_s"] / grid[2]["best_set_s"]
    s_all = grid[1]["all_sets_s"] / grid[2]["all_sets_s"]
    results["svm_grid_search"] = {
        "grid": grid[1]["grid"], "best_set": f"gamma={grid[1]['best_gamma']:g}, C={grid[1]['best_C']:g}",
        "best_set_s": [grid[1]["best_set_s"], grid[2]["best_set_s"]],
        "all_sets_s": [grid[1]["all_sets_s"], grid[2]["all_sets_s"]],
        "speedup_2_ranks": {"best_set": round(s_best, 2), "all_sets": round(s_all, 2)},
        "efficiency_2_ranks": {"best_set": round(s_best / 2, 2), "all_sets": round(s_all / 2, 2)},
        "pisvm_lecture": PISVM}
    print("grid search:", json.dumps(results["svm_grid_search"]))

    by_ranks = {}
    for p in (1, 2, 3):
        f = best_of(work, p, "--points", str(POINTS))
        by_ranks[p] = {k: f[k] for k in ("dbscan_s", "local_s_per_rank", "merge_s", "merge_share",
                                         "cost_imbalance", "points_per_rank_with_halo",
                                         "correct")}
        print(f"dbscan on {p} ranks:", json.dumps(by_ranks[p]))
    uniform = best_of(work, 3, "--points", str(POINTS), "--split", "uniform")
    t1 = by_ranks[1]["dbscan_s"]
    results["parallel_dbscan"] = {
        "points": POINTS, "eps": uniform["eps"], "min_samples": 5,
        "by_ranks": by_ranks,
        "speedup": {p: round(t1 / v["dbscan_s"], 2) for p, v in by_ranks.items()},
        "equal_width_slabs_3_ranks": {k: uniform[k] for k in ("dbscan_s", "cost_imbalance",
                                                              "local_s_per_rank", "correct")},
        "note": "2 cores: 3 ranks oversubscribe them; merge_share = (allgather + union-find) / "
                "(slowest local clustering + allgather + union-find), the phases timed apart"}
    out = ROOT / "results" / "classic_ml.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
