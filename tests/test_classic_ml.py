"""Unit 10's MPI program (parallel DBSCAN + k-means) with the solution's functions: equal to
scikit-learn / serial NumPy on 1, 2 and 3 ranks under mpiexec, and as a Slurm job through
jobs/dbscan.sbatch; plus the spatial tooling it rests on (psml.spatial)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from mpi_run import run_ranks
from nbtools import ROOT

from psml import spatial

UNIT = ROOT / "solutions" / "10-svm-dbscan"
# grade_ids of the solution cells the batch program imports (what section 6 writes)
PARTS = ("dbscan", "halo_split", "merge_clusters", "parallel_dbscan", "kmeans_step",
         "grid_cv_mpi")


def write_parts(dest):
    """mpi_clustering.py in dest, with scratch/dbscan_parts.py made from the solution cells."""
    nb = json.loads((UNIT / "10-svm-dbscan.ipynb").read_text())
    cells = {c["metadata"].get("nbgrader", {}).get("grade_id"): "".join(c["source"])
             for c in nb["cells"] if c["cell_type"] == "code"}
    missing = [g for g in PARTS if g not in cells]
    assert not missing, f"10-svm-dbscan.ipynb lost the solution cells {missing}"
    (dest / "scratch").mkdir()
    (dest / "scratch" / "dbscan_parts.py").write_text(
        "import numpy as np\nfrom psml.spatial import region_query\n\n"
        + "\n\n".join(cells[g] for g in PARTS))
    shutil.copy(UNIT / "mpi_clustering.py", dest)
    return dest / "mpi_clustering.py"


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_parallel_dbscan_and_kmeans_equal_serial(ranks, tmp_path):
    script = write_parts(tmp_path)
    r, outs = run_ranks(ranks, [str(script), "--points", "1500", "--kmeans-steps", "3"],
                        tmp_path, timeout=200)
    assert r.returncode == 0, f"exit {r.returncode}:\n{outs}\n{r.stderr[-3000:]}"
    for rank, out in enumerate(outs):
        assert f"rank {rank}/{ranks}" in out, f"rank {rank} printed:\n{out}"
    assert "dbscan vs scikit-learn: same clustering (OK)" in outs[0], outs[0]
    assert "kmeans: max |parallel - serial|" in outs[0] and outs[0].count("(OK)") == 2, outs[0]


def test_program_explains_missing_parts(tmp_path):
    shutil.copy(UNIT / "mpi_clustering.py", tmp_path)
    r = subprocess.run([sys.executable, str(tmp_path / "mpi_clustering.py")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode != 0 and "Run 10-svm-dbscan.ipynb up to section 6" in r.stderr, r.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dbscan_job_script_on_slurm(slurm, tmp_path):
    """jobs/dbscan.sbatch through sbatch: 2 ranks under srun --mpi=pmix, results checked."""
    write_parts(tmp_path)
    job = slurm.sbatch(ROOT / "jobs" / "dbscan.sbatch", "--ntasks=2", "--", "mpi_clustering.py",
                       "--points", "1500", "--kmeans-steps", "2", cwd=tmp_path)
    assert slurm.wait(job, timeout=240) == "COMPLETED", slurm.describe(job)
    out = slurm.output(job)
    assert out.name == f"psml-dbscan-{job}.out", f"output file named {out.name}"
    text = out.read_text()
    assert "parallel DBSCAN on 2 MPI ranks" in text and "rank 1/2" in text, text
    assert "same clustering (OK)" in text and text.count("(OK)") == 2, text


def test_job_script_has_no_site_settings():
    """Account, partition, reservation and time come from the environment, never the file."""
    text = (ROOT / "jobs" / "dbscan.sbatch").read_text()
    sbatch_lines = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    for option in ("--account", "--partition", "--reservation", "--time", "-A ", "-p "):
        assert not any(option in line for line in sbatch_lines), f"{option} hard-coded"


def test_cost_balanced_slabs_beat_equal_width_on_skewed_data():
    X = spatial.density_blobs(1500, seed=0)
    even = spatial.rank_costs(X, 0.35, spatial.uniform_bounds(X, 3))
    balanced = spatial.rank_costs(X, 0.35, spatial.cost_balanced_bounds(X, 0.35, 3))
    assert even.sum() == balanced.sum(), "both splits must cover every point once"
    assert balanced.max() / balanced.mean() < even.max() / even.mean(), (even, balanced)
    assert balanced.max() / balanced.mean() < 1.5, balanced


def test_bounds_cover_the_line_and_are_increasing():
    X = spatial.density_blobs(500, seed=2)
    for b in (spatial.uniform_bounds(X, 4), spatial.cost_balanced_bounds(X, 0.3, 4)):
        assert b[0] == -np.inf and b[-1] == np.inf and len(b) == 5
        assert np.all(np.diff(b) >= 0), b


def test_region_query_includes_the_point_and_matches_brute_force():
    X = spatial.density_blobs(200, seed=1)
    nbrs = spatial.region_query(X, 0.4)
    d = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    for i in (0, 17, 199):
        assert np.array_equal(nbrs[i], np.flatnonzero(d[i] <= 0.4))
        assert i in nbrs[i]


def test_same_partition_and_dbscan_mismatch():
    assert spatial.same_partition([0, 0, 1, -1], [5, 5, 2, -1])
    assert not spatial.same_partition([0, 0, 1], [0, 1, 1])
    from sklearn.cluster import DBSCAN

    X = spatial.density_blobs(400, seed=4)
    ref = DBSCAN(eps=0.4, min_samples=5).fit(X)
    core = np.zeros(len(X), bool)
    core[ref.core_sample_indices_] = True
    permuted = np.where(ref.labels_ >= 0, 100 - ref.labels_, -1)
    assert spatial.dbscan_mismatch(permuted, ref.labels_, core, X, 0.4) is None
    noisy = ref.labels_.copy()
    noisy[np.flatnonzero(core)[0]] = -1
    assert "noise" in spatial.dbscan_mismatch(noisy, ref.labels_, core, X, 0.4)
    merged = np.where(ref.labels_ >= 0, 0, -1)
    assert "grouped differently" in spatial.dbscan_mismatch(merged, ref.labels_, core, X, 0.4)
