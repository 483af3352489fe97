"""Data-parallel logistic regression with MPI: the batch version of 08-mpi.ipynb, section 4.

    cd scratch && mpiexec -n 2 python -m mpi4py ../data_parallel_sgd.py [--steps 50] [--lr 0.5]
    cd scratch && sbatch ../../../jobs/mpi.sbatch ../data_parallel_sgd.py   (on a Slurm cluster)

Uses *your* functions from the notebook: its section 6 writes them to scratch/dp_sgd_parts.py;
this program imports them from the directory it runs in (or, failing that, its own). Any
number of ranks >= 1 works. Every rank loads the same 8x8 digits (task: "is the digit >= 5?"), keeps its
shard of the rows, and trains with data_parallel_step. Rank 0 then trains serially on all
rows and checks that both weight vectors agree to 1e-12; the exit code is 1 when not.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

sys.path[:0] = [str(Path.cwd()), str(Path(__file__).resolve().parent)]
try:
    from dp_sgd_parts import data_parallel_step, logistic_grad_sum
except ImportError as exc:
    sys.exit(f"cannot import your functions ({exc}): run 08-mpi.ipynb up to section 6 first; "
             "it writes scratch/dp_sgd_parts.py: run this program in scratch/")


def load_task():
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data - d.data.mean(0)) / (d.data.std(0) + 1e-8)
    X = np.hstack([X, np.ones((len(X), 1))])           # a bias column
    return X, (d.target >= 5).astype(float)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lr", type=float, default=0.5)
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()

    X, y = load_task()
    n, d = X.shape
    rows = np.array_split(np.arange(n), size)[rank]        # this rank's shard
    X_shard, y_shard = X[rows], y[rows]
    w = np.zeros(d)
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        w = data_parallel_step(comm, w, X_shard, y_shard, args.lr, n)
    seconds = comm.reduce(time.perf_counter() - t0, op=MPI.MAX, root=0)
    print(f"rank {rank}/{size}: {len(rows)} rows", flush=True)

    if rank != 0:
        return 0
    w_serial = np.zeros(d)
    for _ in range(args.steps):
        w_serial = w_serial - args.lr * logistic_grad_sum(w_serial, X, y) / n
    diff = float(np.max(np.abs(w - w_serial)))
    accuracy = float(np.mean((X @ w > 0) == (y == 1)))
    print(f"{size} ranks, {args.steps} steps in {seconds:.3f} s; training accuracy {accuracy:.3f}")
    print(f"max |w_parallel - w_serial| = {diff:.3e} ({'OK' if diff < 1e-12 else 'MISMATCH'})")
    return 0 if diff < 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
