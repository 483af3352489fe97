"""Run an MPI function on the first p of a cluster's MPI engines (1, 2, 3, ... ranks from one
``start_cluster(n, engines="mpi")``), so a notebook can check a parallel algorithm for every
rank count without restarting engines::

    rc = start_cluster(3, engines="mpi")
    for p in (1, 2, 3):
        results = on_ranks(rc, p, my_mpi_function, arg1, arg2)   # [rank 0's, ..., rank p-1's]

``my_mpi_function(comm, *args)`` gets a communicator of exactly p ranks (``COMM_WORLD`` split
with ``MPI_Comm_split``); the other engines take part in the split only. The call is bounded:
a deadlock raises ``TimeoutError`` after ``timeout`` seconds (engines restarted).
"""

from __future__ import annotations

from psml.cluster import apply_with_timeout


def _run_on_subcomm(p, fn, args):
    """On every engine: split COMM_WORLD, call fn on the first p ranks, return (rank, result)."""
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    sub = world.Split(0 if rank < p else MPI.UNDEFINED, rank)
    if sub == MPI.COMM_NULL:
        return rank, None
    try:
        return rank, fn(sub, *args)
    finally:
        sub.Free()


def on_ranks(rc, p: int, fn, *args, timeout: float = 60) -> list:
    """``fn(comm, *args)`` on MPI ranks 0..p-1 of the engines of client ``rc``; returns the p
    results in rank order. ``p`` must not exceed the number of engines."""
    if not 1 <= p <= len(rc.ids):
        raise ValueError(f"p={p}: the cluster has {len(rc.ids)} engines, so use 1..{len(rc.ids)}")
    out = apply_with_timeout(rc, _run_on_subcomm, p, fn, args, timeout=timeout)
    return [res for rank, res in sorted(out, key=lambda t: t[0]) if rank < p]
