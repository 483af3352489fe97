"""08-mpi's batch program runs under `mpiexec -n 2` with the functions of the solution."""

import json
import shutil
import subprocess
import sys

import pytest
from nbtools import ROOT

from psml.cluster import mpiexec_args

PARTS = ("grad_sum", "ring_shift", "dp_step")  # grade_ids of the solution cells it imports


def write_parts(dest):
    """Copy data_parallel_sgd.py to dest with dp_sgd_parts.py made from the solution cells
    (what the notebook's section 6 writes for a student who solved it)."""
    nb = json.loads((ROOT / "solutions" / "08-mpi" / "08-mpi.ipynb").read_text())
    cells = {c["metadata"].get("nbgrader", {}).get("grade_id"): "".join(c["source"])
             for c in nb["cells"] if c["cell_type"] == "code"}
    missing = [g for g in PARTS if g not in cells]
    assert not missing, f"08-mpi.ipynb lost the solution cells {missing}"
    (dest / "dp_sgd_parts.py").write_text(
        "import numpy as np\n\n" + "\n\n".join(cells[g] for g in PARTS))
    shutil.copy(ROOT / "solutions" / "08-mpi" / "data_parallel_sgd.py", dest)
    return dest / "data_parallel_sgd.py"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_script_under_mpiexec(tmp_path):
    script = write_parts(tmp_path)
    r = subprocess.run(["mpiexec", *mpiexec_args(), "-n", "2", sys.executable, "-m", "mpi4py",
                        str(script), "--steps", "5"], capture_output=True, text=True,
                       timeout=150, cwd=tmp_path)
    assert r.returncode == 0, f"exit {r.returncode}:\n{r.stdout}\n{r.stderr[-3000:]}"
    assert "rank 0/2" in r.stdout and "rank 1/2" in r.stdout, r.stdout
    assert "(OK)" in r.stdout, f"parallel and serial weights differ:\n{r.stdout}"


def test_script_explains_missing_parts(tmp_path):
    shutil.copy(ROOT / "solutions" / "08-mpi" / "data_parallel_sgd.py", tmp_path)
    r = subprocess.run([sys.executable, str(tmp_path / "data_parallel_sgd.py")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode != 0 and "run 08-mpi.ipynb up to section 6" in r.stderr, r.stderr
