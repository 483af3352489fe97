"""psml.cluster: bounded, explained cluster start-up; MPI and Slurm detection; job options."""

import os
import stat
import sys
from pathlib import Path

import pytest

from psml import cluster
from psml.cluster import ClusterError


def _fake_tool(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def bare_path(monkeypatch, tmp_path):
    """PATH with only this Python's bin/ and an empty dir for fake tools: no MPI, no Slurm."""
    fake = tmp_path / "bin"
    fake.mkdir()
    monkeypatch.setenv("PATH", os.pathsep.join([str(fake), str(Path(sys.executable).parent)]))
    return fake


def test_sbatch_options_from_environment():
    env = {"PSML_ACCOUNT": "training2401", "PSML_PARTITION": " batch ",
           "PSML_RESERVATION": "", "PSML_TIME": "00:10:00"}
    assert cluster.sbatch_options(env) == [
        "--account=training2401", "--partition=batch", "--time=00:10:00"]
    assert cluster.sbatch_options({}) == [], "no settings: no options (the site default)"


def test_mpi_missing_is_explained_at_once(bare_path):
    problem = cluster.mpi_problem()
    assert problem and "mpiexec" in problem and "apt-get install openmpi-bin" in problem
    with pytest.raises(ClusterError, match="cannot start MPI engines: no `mpiexec`"):
        cluster.start_cluster(2, engines="mpi", timeout=5)


@pytest.mark.timeout(90)
def test_engines_that_die_are_reported_with_their_output(bare_path):
    """An mpiexec that fails at once: the error comes long before the timeout, with output."""
    _fake_tool(bare_path, "mpiexec", 'echo "fake mpiexec: no slots" >&2; exit 1')
    with pytest.raises(ClusterError) as info:
        cluster.start_cluster(2, engines="mpi", timeout=60)
    msg = str(info.value)
    assert "exited early" in msg, msg
    assert "fake mpiexec: no slots" in msg, f"the engines' output should be shown:\n{msg}"


def test_mpiexec_args_only_for_open_mpi(bare_path):
    _fake_tool(bare_path, "mpiexec", 'echo "HYDRA build details: (MPICH)"')
    assert cluster.mpiexec_args() == [], "MPICH's mpiexec knows no --oversubscribe"
    _fake_tool(bare_path, "mpiexec", 'echo "mpiexec (OpenRTE) 4.1.4"')
    args = cluster.mpiexec_args()
    assert "--oversubscribe" in args
    assert ("--allow-run-as-root" in args) == (os.geteuid() == 0)


def test_slurm_absent_or_unreachable(bare_path):
    assert "no `sbatch` on PATH" in cluster.slurm_problem()
    assert not cluster.slurm_available()
    _fake_tool(bare_path, "sbatch", "exit 1")
    _fake_tool(bare_path, "scontrol", 'echo "Slurmctld(primary) at vm is DOWN"; exit 1')
    assert "not reachable" in cluster.slurm_problem()
    with pytest.raises(ClusterError, match="cannot start Slurm engines"):
        cluster.start_cluster(2, engines="slurm")
    with pytest.raises(ClusterError, match="cannot submit"):
        cluster.submit("jobs/mpi.sbatch")
    assert "Slurm: not available" in cluster.describe()


def test_bad_arguments():
    with pytest.raises(ValueError, match="engines='gpu'"):
        cluster.start_cluster(2, engines="gpu")
    with pytest.raises(ValueError, match="positive integer"):
        cluster.start_cluster(0)


@pytest.mark.slow
@pytest.mark.parametrize("engines", ["local", "mpi"])
def test_start_use_stop(engines):
    rc = cluster.start_cluster(2, engines=engines, timeout=120)
    try:
        assert len(rc.ids) == 2
        pids = rc[:].apply_sync(os.getpid)
        assert len(set(pids)) == 2 and os.getpid() not in pids, f"pids {pids}"
        if engines == "mpi":
            rc[:].execute("from mpi4py import MPI; r = MPI.COMM_WORLD.Get_rank()", block=True)
            assert sorted(rc[:]["r"]) == [0, 1], "the MPI engines should be ranks 0 and 1"
    finally:
        cluster.stop_cluster(rc)
    assert not rc.cluster.engines, "engines still registered after stop"


def test_running_cluster_stops_on_error():
    with pytest.raises(ZeroDivisionError):
        with cluster.running_cluster(1, "local", timeout=120) as rc:
            c = rc.cluster
            1 / 0
    assert not c.engines and c.controller is None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_deadlock_is_cut_off_and_engines_replaced():
    def deadlock():
        """Both ranks receive first: nobody sends, every rank waits forever."""
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        return comm.recv(source=1 - comm.Get_rank())

    def rank():
        from mpi4py import MPI

        return MPI.COMM_WORLD.Get_rank()

    # Engines cannot import this test module: make ipyparallel ship the code itself.
    deadlock.__module__ = rank.__module__ = "__main__"
    rc = cluster.start_cluster(2, engines="mpi", timeout=120)
    try:
        assert cluster.apply_with_timeout(rc, os.getpid, timeout=30), "a normal call works"
        with pytest.raises(TimeoutError, match="probably a deadlock"):
            cluster.apply_with_timeout(rc, deadlock, timeout=3)
        ranks = cluster.apply_with_timeout(rc, rank, timeout=60)
        assert sorted(ranks) == [0, 1], f"fresh engines should answer, got {ranks}"
    finally:
        cluster.stop_cluster(rc)


def test_allocation_size_follows_slurm_then_affinity():
    from psml.cluster import allocation_size

    assert allocation_size({"SLURM_NTASKS": "48"}) == 48
    assert allocation_size({"SLURM_NPROCS": "3"}) == 3
    assert allocation_size({}) == len(os.sched_getaffinity(0))


def test_worker_counts_double_up_to_the_allocation(monkeypatch):
    from psml.cluster import worker_counts

    monkeypatch.delenv("PSML_QUICK", raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "48")
    assert worker_counts() == [1, 2, 4, 8, 16, 32, 48]
    assert worker_counts(limit=4) == [1, 2, 4]
    monkeypatch.setenv("SLURM_NTASKS", "3")
    assert worker_counts() == [1, 2, 3]
    monkeypatch.setenv("PSML_QUICK", "1")
    monkeypatch.setenv("SLURM_NTASKS", "48")
    assert worker_counts() == [1, 2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ipyparallel_solution_on_three_engines():
    """07-ipyparallel's functions are right with 3 engines (blocks that do not divide, a
    grid in uneven tasks), not only with the 2 the notebook gets in quick mode."""
    import ipyparallel as ipp
    import numpy as np
    from nbtools import ROOT
    from test_mpi_script import solution_cells

    ns = {"np": np, "ipp": ipp, "__name__": "__main__"}   # as in the notebook's kernel
    for src in solution_cells(ROOT / "solutions" / "07-ipyparallel" / "07-ipyparallel.ipynb",
                              ("parallel_sum", "cv_score", "grid_chunks", "parallel_grid")):
        exec(src, ns)
    X = np.random.default_rng(0).standard_normal((60, 4))
    y = (X[:, 0] > 0).astype(int)
    gammas, Cs = [0.1, 1.0], [0.5, 5.0, 50.0]
    serial = np.array([[ns["cv_score"](g, C, X, y, 2) for C in Cs] for g in gammas])
    rc = cluster.start_cluster(3, engines="local", timeout=120)
    try:
        x = np.arange(1.0, 8.0)
        assert ns["parallel_sum_of_squares"](rc[:], x) == 140.0
        assert sorted(len(c) for c in rc[:].pull("chunk", block=True)) == [2, 2, 3]
        for ppt in (1, 4, 6):
            got = ns["parallel_grid_search"](rc, X, y, gammas, Cs, 2, points_per_task=ppt)
            assert np.allclose(got, serial), f"points_per_task={ppt}:\n{got}\nvs\n{serial}"
    finally:
        cluster.stop_cluster(rc)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_on_ranks_gives_each_rank_count_its_own_communicator():
    """psml.subcomm.on_ranks: p ranks of a 3-engine MPI cluster see a communicator of size p,
    results come back in rank order, a collective spans exactly those p, a bad p is refused."""
    from psml.subcomm import on_ranks

    def who(comm, base):
        from mpi4py import MPI

        total = comm.allreduce(comm.Get_rank() + 1)        # 1 + ... + p
        return (comm.Get_rank(), comm.Get_size(), MPI.COMM_WORLD.Get_rank(), base + total)

    who.__module__ = "__main__"  # engines cannot import this test module
    rc = cluster.start_cluster(3, engines="mpi", timeout=120)
    try:
        for p in (1, 2, 3):
            got = on_ranks(rc, p, who, 100)
            assert got == [(r, p, r, 100 + p * (p + 1) // 2) for r in range(p)], (p, got)
        with pytest.raises(ValueError, match="use 1..3"):
            on_ranks(rc, 4, who, 0)
    finally:
        cluster.stop_cluster(rc)
