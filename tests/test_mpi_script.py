"""08-mpi's MPI code (the solution's functions, the notebook's %%px cells, the batch
program) is correct with 1, 2 and 3 ranks: one `mpiexec -n p` per size runs it all."""

import json
import shutil
import subprocess
import sys

import pytest
from mpi_run import run_ranks
from nbtools import ROOT

NOTEBOOK = ROOT / "solutions" / "08-mpi" / "08-mpi.ipynb"
# grade_ids of the solution cells the batch program imports (dp_sgd_parts.py)
PARTS = ("grad_sum", "ring_shift", "dp_step", "ring_allreduce")

# Run by every rank: the notebook's %%px cells as plain code, then the parts against
# Allreduce, then the batch program's main(). Prints "OK <rank>" when all of it held.
CHECK = '''
import sys
import numpy as np
from mpi4py import MPI
import data_parallel_sgd
from dp_sgd_parts import data_parallel_step, logistic_grad_sum, ring_allreduce, ring_shift

comm = MPI.COMM_WORLD
r, p = comm.Get_rank(), comm.Get_size()
for cell in CELLS:
    exec(cell)
assert got == (None if r == 0 else {"greeting": "hello", "to": r}), got
assert chunk == [3 * r, 3 * r + 1, 3 * r + 2], chunk
assert everywhere == p * (p + 1) // 2 and stuck and passed_ok
assert (gathered, total) == (([9 * q + 3 for q in range(p)], everywhere) if r == 0 else (None, None))

x = np.arange(7.0) + 100 * r
assert np.array_equal(ring_shift(comm, x), np.arange(7.0) + 100 * ((r - 1) % p))
for n in (0, 2, 11):
    x = np.random.default_rng(r).standard_normal(n)
    ref = np.empty(n)
    comm.Allreduce(x, ref, op=MPI.SUM)
    assert np.allclose(ring_allreduce(comm, x), ref, rtol=1e-12, atol=1e-12), n

X, y = data_parallel_sgd.load_task()
sizes = [len(X) * (q + 1) // (p * (p + 1) // 2) for q in range(p)]  # unequal shards
sizes[-1] += len(X) - sum(sizes)
lo = sum(sizes[:r])
w_par = w_ser = np.zeros(X.shape[1])
for _ in range(3):
    w_par = data_parallel_step(comm, w_par, X[lo:lo + sizes[r]], y[lo:lo + sizes[r]], 0.5, len(X))
    w_ser = w_ser - 0.5 * logistic_grad_sum(w_ser, X, y) / len(X)
assert np.max(np.abs(w_par - w_ser)) < 1e-12

sys.argv = ["data_parallel_sgd.py", "--steps", "5"]
assert data_parallel_sgd.main() == 0
print("OK", r, flush=True)
'''


def solution_cells(path, grade_ids):
    """Source of the solution cells with these grade_ids, in that order."""
    nb = json.loads(path.read_text())
    cells = {c["metadata"].get("nbgrader", {}).get("grade_id"): "".join(c["source"])
             for c in nb["cells"] if c["cell_type"] == "code"}
    missing = [g for g in grade_ids if g not in cells]
    assert not missing, f"{path.name} lost the solution cells {missing}"
    return [cells[g] for g in grade_ids]


def px_cells(path):
    """The notebook's %%px cells (code the engines run), without the magic line."""
    nb = json.loads(path.read_text())
    return ["".join(c["source"]).split("\n", 1)[1] for c in nb["cells"]
            if c["cell_type"] == "code" and "".join(c["source"]).startswith("%%px")]


def write_parts(dest):
    """Copy data_parallel_sgd.py to dest with dp_sgd_parts.py made from the solution cells
    (what the notebook's section 6 writes for a student who solved it)."""
    (dest / "dp_sgd_parts.py").write_text(
        "import numpy as np\n\n" + "\n\n".join(solution_cells(NOTEBOOK, PARTS)))
    shutil.copy(ROOT / "solutions" / "08-mpi" / "data_parallel_sgd.py", dest)
    return dest / "data_parallel_sgd.py"


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_mpi_code_with_any_number_of_ranks(tmp_path, ranks):
    write_parts(tmp_path)
    (tmp_path / "check.py").write_text(f"CELLS = {px_cells(NOTEBOOK)!r}\n" + CHECK)
    r, outs = run_ranks(ranks, ["check.py"], tmp_path, timeout=150)
    assert r.returncode == 0, f"exit {r.returncode}:\n{outs}\n{r.stderr[-3000:]}"
    for q, out in enumerate(outs):
        assert out.splitlines()[-1:] == [f"OK {q}"], f"rank {q} did not finish the checks:\n{out}"
    assert f"{ranks} ranks, 5 steps" in outs[0] and "(OK)" in outs[0], outs[0]


def test_script_explains_missing_parts(tmp_path):
    shutil.copy(ROOT / "solutions" / "08-mpi" / "data_parallel_sgd.py", tmp_path)
    r = subprocess.run([sys.executable, str(tmp_path / "data_parallel_sgd.py")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode != 0 and "run 08-mpi.ipynb up to section 6" in r.stderr, r.stderr
