"""MPI ranks for the cluster units: is MPI usable here, ``mpiexec``'s flags, how many ranks the
allocation holds, and :func:`run_on_ranks` (a function on n fresh ranks, for tests and checks).

``allocation_size()`` / ``worker_counts()`` size cluster cells by what they run on: Slurm's
``SLURM_NTASKS`` inside a job, the CPUs this process may use elsewhere; quick mode keeps 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from psml.errors import ClusterError

def mpi_problem() -> str | None:
    """``None`` when MPI engines can start here, else a sentence saying what is missing."""
    if not shutil.which("mpiexec"):
        return ("no `mpiexec` on PATH, so MPI engines cannot start. Install Open MPI "
                "(`apt-get install openmpi-bin libopenmpi-dev`, which `make lab` does on "
                "Debian/Ubuntu; `brew install open-mpi` on macOS) or `module load` your "
                "site's MPI; or use engines=\"local\" for the non-MPI parts")
    import importlib.util

    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed in this environment: run `make lab` (or `pip install mpi4py`)"
    return None


def _is_open_mpi(mpiexec: str) -> bool:
    try:
        r = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Open MPI" in r.stdout or "OpenRTE" in r.stdout


def mpiexec_args(mpiexec: str = "mpiexec") -> list[str]:
    """Extra mpiexec flags this machine needs: with Open MPI, ``--oversubscribe`` (more
    engines than cores is fine for teaching) and, as root (containers, CI),
    ``--allow-run-as-root``. Other MPIs (MPICH, Intel MPI) need none."""
    path = shutil.which(mpiexec)
    if not path or not _is_open_mpi(path):
        return []
    args = ["--oversubscribe"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-run-as-root")
    return args


# The program each rank of run_on_ranks() runs: load (fn, args), call it, write the result.
# A rank that raises writes its traceback and aborts the job, so the others never hang.
_RANK_PROGRAM = """\
import pickle, sys, traceback
from mpi4py import MPI
rank = MPI.COMM_WORLD.Get_rank()
fn, args = pickle.load(open(sys.argv[1], "rb"))
try:
    out = ("ok", fn(*args))
except BaseException:
    out = ("error", traceback.format_exc())
with open(f"{sys.argv[1]}.{rank}", "wb") as f:
    pickle.dump(out, f)
if out[0] == "error":
    MPI.COMM_WORLD.Abort(1)
"""


def run_on_ranks(fn, *args, n: int = 2, timeout: float = 60) -> list:
    """``fn(*args)`` on each of ``n`` fresh MPI ranks (one ``mpiexec -n n``); the results
    as a list in rank order. ``fn`` travels by value (cloudpickle), so functions defined in
    a notebook or a test work; inside, ``MPI.COMM_WORLD`` has ``n`` ranks.

    Independent of any ipyparallel cluster: tests use it to check MPI code with 1, 2, 3, ...
    ranks. A rank that raises stops the job and its traceback comes back in a
    :class:`ClusterError`; ranks still running after ``timeout`` seconds (a deadlock) are
    killed and ``TimeoutError`` raised."""
    problem = mpi_problem()
    if problem:
        raise ClusterError(f"cannot run on MPI ranks: {problem}")
    import cloudpickle

    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    by_value = module is not None and module.__name__ not in ("__main__",) and \
        not module.__name__.startswith("psml")   # e.g. a test module the ranks cannot import
    with tempfile.TemporaryDirectory(prefix="psml-ranks-") as tmp:
        job = Path(tmp) / "job.pkl"
        if by_value:
            cloudpickle.register_pickle_by_value(module)
        try:
            job.write_bytes(cloudpickle.dumps((fn, args)))
        finally:
            if by_value:
                cloudpickle.unregister_pickle_by_value(module)
        cmd = ["mpiexec", *mpiexec_args(), "-n", str(n), sys.executable, "-c", _RANK_PROGRAM,
               str(job)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, cwd=tmp, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)          # mpiexec and every rank it started
            proc.communicate()
            raise TimeoutError(f"{getattr(fn, '__name__', fn)} did not finish on {n} ranks "
                               f"within {timeout:g} s: probably a deadlock (every rank "
                               "waiting in a blocking call for a message no rank sends)"
                               ) from None
        import pickle

        parts = [Path(f"{job}.{rank}") for rank in range(n)]
        outs = [pickle.loads(p.read_bytes()) if p.is_file() else (None, None) for p in parts]
        for rank, (status, value) in enumerate(outs):
            if status == "error":   # first the real error; the others were aborted by it
                raise ClusterError(f"rank {rank} of {n} raised:\n{value}")
        for rank, (status, value) in enumerate(outs):
            if status is None:
                raise ClusterError(f"rank {rank} of {n} returned nothing (mpiexec exit "
                                   f"{proc.returncode}):\n{output[-3000:]}")
        results = [value for _, value in outs]
        return results


# --- Slurm -------------------------------------------------------------------------------

def allocation_size(env: dict | None = None) -> int:
    """How many workers (engines, ranks) the current allocation holds.

    Inside a Slurm job: ``SLURM_NTASKS`` (or ``SLURM_NPROCS``); elsewhere the CPUs this
    process may run on (``os.sched_getaffinity``, which honours cgroups and ``taskset``).
    """
    env = os.environ if env is None else env
    for var in ("SLURM_NTASKS", "SLURM_NPROCS"):
        if env.get(var, "").strip().isdigit() and int(env[var]) > 0:
            return int(env[var])
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS has no affinity API
        return max(1, os.cpu_count() or 1)


def worker_counts(limit: int | None = None, quick: int = 2) -> list[int]:
    """Sizes for a scaling study: 1, 2, 4, ... up to the allocation (its size included).

    ``limit`` caps the largest size; in quick mode (tests, grading) the cap is ``quick``, so
    CI stays at 2 whatever machine it runs on.
    """
    from psml.config import is_quick

    top = allocation_size()
    for cap in (limit, quick if is_quick() else None):
        if cap is not None:
            top = min(top, cap)
    sizes = [1]
    while sizes[-1] * 2 <= top:
        sizes.append(sizes[-1] * 2)
    return sizes if sizes[-1] == top else sizes + [top]
