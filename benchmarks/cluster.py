"""Cluster figures (issue 4): grid-search speedup on 2 engines, cluster start/stop time, Slurm
submit-to-result time. Writes results/cluster.json; run by `make bench`.

The Slurm figure uses a throw-away single-node Slurm (tools/minislurm.sh) when this machine
has none reachable; it is recorded as null with the reason when neither works (not root,
slurm-wlm missing).
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")

from psml import cluster  # noqa: E402
from psml.data import load_digits  # noqa: E402


def cv_score(gamma, C, X, y, k):
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import SVC

    return float(cross_val_score(SVC(kernel="rbf", gamma=gamma, C=C), X, y, cv=k).mean())


def grid_speedup(rc, repeat=2):
    import ipyparallel as ipp

    (X, y), _ = load_digits()
    X = X / 16.0
    gammas, Cs, k = np.logspace(-3, 0, 4), np.logspace(-1, 2, 4), 3
    rc[:].push({"X_cv": X, "y_cv": y}, block=True)
    rc[:].execute("import sklearn.svm, sklearn.model_selection", block=True)  # warm-up
    lview = rc.load_balanced_view()

    def serial():
        return [cv_score(g, C, X, y, k) for g in gammas for C in Cs]

    def parallel():
        tasks = [lview.apply_async(cv_score, g, C, ipp.Reference("X_cv"),
                                   ipp.Reference("y_cv"), k) for g in gammas for C in Cs]
        return [t.get() for t in tasks]

    best = {}
    for name, fn in (("serial", serial), ("parallel", parallel)):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        best[name] = (min(times), out)
    assert np.allclose(best["serial"][1], best["parallel"][1])
    ts, tp = best["serial"][0], best["parallel"][0]
    return {"grid": f"{len(gammas)}x{len(Cs)} gamma x C, {k}-fold CV, {len(X)} digits",
            "serial_s": round(ts, 3), "parallel_2_engines_s": round(tp, 3),
            "speedup": round(ts / tp, 2), "efficiency": round(ts / tp / 2, 2)}


def slurm_submit_to_result():
    own = None
    if cluster.slurm_problem():
        own = Path(tempfile.mkdtemp(prefix="psml-bench-slurm-"))
        r = subprocess.run(["bash", str(ROOT / "tools" / "minislurm.sh"), "start", str(own)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return {"seconds": None, "why": r.stderr.strip()[-300:]}
        os.environ["SLURM_CONF"] = str(own / "slurm.conf")
    try:
        work = Path(tempfile.mkdtemp(prefix="psml-bench-job-"))
        prog = work / "hello.py"
        prog.write_text("from mpi4py import MPI\nc = MPI.COMM_WORLD\n"
                        "s = c.allreduce(c.rank + 1)\nprint('sum', s) if c.rank == 0 else None\n")
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            job = cluster.submit(cluster.job_script("mpi"), str(prog), cwd=work)
            out = work / f"psml-mpi-{job}.out"
            while "sum 3" not in (out.read_text() if out.exists() else ""):
                if time.perf_counter() - t0 > 120:
                    raise TimeoutError(f"job {job}: no result after 120 s")
                time.sleep(0.05)
            times.append(time.perf_counter() - t0)
            cluster.wait_for_job(job, timeout=60)
        return {"seconds_best": round(min(times), 2), "seconds_all": [round(t, 2) for t in times],
                "what": "sbatch jobs/mpi.sbatch (2 ranks, srun --mpi=pmix, mpi4py allreduce) "
                        "until the result line is in the output file",
                "slurm": "throw-away single node (tools/minislurm.sh)" if own else "site"}
    finally:
        if own:
            subprocess.run(["bash", str(ROOT / "tools" / "minislurm.sh"), "stop", str(own)],
                           capture_output=True)


def main():
    res = {"machine": f"{platform.node()}, {os.cpu_count()} CPUs",
           "load_average_at_start": os.getloadavg()[0]}
    starts, stops = [], []
    for _ in range(3):
        rc = cluster.start_cluster(2, engines="mpi", timeout=120)
        starts.append(rc.psml_start_seconds)
        if "grid_search" not in res:
            res["grid_search"] = grid_speedup(rc)
        stops.append(cluster.stop_cluster(rc))
    res["cluster_2_mpi_engines"] = {"start_s_best": round(min(starts), 2),
                                    "stop_s_best": round(min(stops), 2),
                                    "start_s_all": [round(t, 2) for t in starts],
                                    "stop_s_all": [round(t, 2) for t in stops]}
    res["slurm_submit_to_result"] = slurm_submit_to_result()
    out = ROOT / "results" / "cluster.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
