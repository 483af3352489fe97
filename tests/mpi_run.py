"""Running a Python program on p MPI ranks and reading each rank's output on its own.

mpiexec forwards the ranks' output in chunks, not lines, so one rank's line can be cut by
another's ("rank 2/3: 599 rowsOK 1"). Each rank here writes to rank-<r>.out instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from psml.cluster import mpiexec_args

# Run by every rank: stdout to its own line-buffered file, then the program as __main__.
WRAPPER = '''
import runpy, sys
from mpi4py import MPI
sys.stdout = open(f"rank-{MPI.COMM_WORLD.Get_rank()}.out", "w", buffering=1)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def run_ranks(ranks: int, args: list[str], cwd: Path, timeout: int):
    """Run `python args...` on `ranks` MPI ranks in cwd (under mpi4py, so an exception on one
    rank aborts all). Returns (completed process, [stdout of rank 0, 1, ...])."""
    (cwd / "mpi_wrapper.py").write_text(WRAPPER)
    r = subprocess.run(["mpiexec", *mpiexec_args(), "-n", str(ranks), sys.executable, "-m",
                        "mpi4py", "mpi_wrapper.py", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=cwd)
    outs = [(cwd / f"rank-{q}.out").read_text() if (cwd / f"rank-{q}.out").exists() else ""
            for q in range(ranks)]
    return r, outs
