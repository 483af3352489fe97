"""Cluster start-up for the notebooks: ipyparallel engines (local, MPI, Slurm) and Slurm jobs.

Tooling only: what students write stays in the notebooks. Typical use in a notebook::

    from psml.cluster import start_cluster, stop_cluster
    rc = start_cluster(n=2, engines="mpi")   # an ipyparallel Client, engines ready
    rc[:].apply_sync(os.getpid)
    stop_cluster(rc)

Every start is bounded (``timeout``) and every failure is a :class:`ClusterError` whose
message says what to do: no MPI installed, engines that crashed (with their output), no
Slurm. Nothing here waits forever.

MPI ranks and the allocation (:mod:`psml.ranks`) and Slurm jobs (:mod:`psml.slurm`) have
their own modules; their notebook-facing names are importable from here too.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from psml.errors import ClusterError
# The flat API notebooks import (`from psml.cluster import submit, run_on_ranks, ...`).
from psml.ranks import (allocation_size, mpi_problem, mpiexec_args, run_on_ranks,
                        worker_counts)
from psml.slurm import (FINAL_JOB_STATES, SLURM_SETTINGS, job_info, job_script,
                        sbatch_options, slurm_available, slurm_problem, submit, wait_for_job)

__all__ = ["ClusterError", "ENGINE_KINDS", "FINAL_JOB_STATES", "SLURM_SETTINGS",
           "allocation_size", "apply_with_timeout", "connect_in_job", "describe",
           "job_info", "job_script", "mpi_problem", "mpiexec_args", "run_on_ranks",
           "running_cluster", "sbatch_options", "slurm_available", "slurm_problem",
           "start_cluster", "stop_cluster", "submit", "wait_for_job", "worker_counts"]

ENGINE_KINDS = ("local", "mpi", "slurm")
# ipyparallel's default heartbeat (3 s, several misses) makes every start wait ~5 s for
# nothing; 500 ms brings a 2-engine start from ~6.6 s to ~2.6 s (HPC-FACTS.md).
HEARTBEAT_MS = 500


# --- ipyparallel clusters ----------------------------------------------------------------

def _config(engines: str, mpiexec: str = "mpiexec"):
    from traitlets.config import Config

    c = Config()
    if engines == "mpi":
        # Set through Config: launcher attributes set after Cluster() are silently ignored.
        c.MPIEngineSetLauncher.mpi_cmd = [mpiexec]
        c.MPIEngineSetLauncher.mpi_args = mpiexec_args(mpiexec)
    elif engines == "slurm":
        opts = "".join(f"#SBATCH {o}\n" for o in sbatch_options())
        # ipyparallel writes the batch file into the working directory (a notebook's folder,
        # a repository); an absolute name keeps it, and the job's output, in a temp dir.
        scratch = Path(tempfile.mkdtemp(prefix="psml-ipp-slurm-"))
        c.SlurmEngineSetLauncher.batch_file_name = str(scratch / "engines.sbatch")
        # srun starts one engine per task; with MPI under Slurm they form one communicator.
        c.SlurmEngineSetLauncher.batch_template = (
            "#!/bin/sh\n#SBATCH --export=ALL\n#SBATCH --job-name=ipengine-{cluster_id}\n"
            f"#SBATCH --ntasks={{n}}\n#SBATCH --output={scratch}/engines-%j.out\n"
            + opts + "srun {program_and_args}\n")
    return c


def start_cluster(n: int = 2, engines: str = "local", timeout: float = 60, **kwargs):
    """Start a controller and ``n`` engines, wait until all are connected, return the
    ipyparallel ``Client`` (its cluster is ``rc.cluster``; stop it with :func:`stop_cluster`).

    ``engines``: ``"local"`` (plain processes), ``"mpi"`` (one ``mpiexec -n n`` job: the
    engines share ``MPI.COMM_WORLD``), ``"slurm"`` (a batch job of ``n`` tasks, with the
    site's account/partition from :func:`sbatch_options`). ``timeout`` bounds the whole
    start; on failure the half-started cluster is stopped and :class:`ClusterError` says
    why (with the engines' output). ``kwargs`` go to ``ipyparallel.Cluster``.
    """
    if engines not in ENGINE_KINDS:
        raise ValueError(f"engines={engines!r}: use one of {', '.join(ENGINE_KINDS)}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: the number of engines must be a positive integer")
    if engines == "mpi":
        problem = mpi_problem()
        if problem:
            raise ClusterError(f"cannot start MPI engines: {problem}")
    if engines == "slurm":
        problem = slurm_problem()
        if problem:
            raise ClusterError(f"cannot start Slurm engines: {problem}. Use engines=\"mpi\" "
                               "or \"local\" to run on this machine instead")
    import ipyparallel as ipp

    kwargs.setdefault("log_level", 40)  # stopping MPI engines would dump their log otherwise
    args = list(kwargs.pop("controller_args", []))
    args.append(f"--HeartMonitor.period={HEARTBEAT_MS}")
    if engines == "slurm":
        # Engines of a batch job may run on other nodes: listen beyond localhost.
        kwargs.setdefault("controller_ip", "*")
    cluster = ipp.Cluster(engines=engines, n=n, controller_args=args,
                          config=_config(engines), **kwargs)
    t0 = time.perf_counter()
    rc = None
    try:
        cluster.start_controller_sync()
        cluster.start_engines_sync(n)
        rc = cluster.connect_client_sync()
        _wait_for_engines(cluster, rc, n, deadline=t0 + timeout)
    except BaseException as exc:  # incl. KeyboardInterrupt: never leave engines behind
        output = _engine_output(cluster)
        _quiet_stop(cluster, rc)
        if isinstance(exc, KeyboardInterrupt):
            raise
        hint = {"mpi": "Is MPI working? `python -m psml doctor` checks it; as root, Open MPI "
                       "also needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1.",
                "slurm": "`squeue --me` shows whether the engine job is still waiting for "
                         "nodes (then raise timeout=) or failed.",
                "local": "Is the machine out of memory or processes?"}[engines]
        raise ClusterError(
            f"{n} {engines} engine(s) did not start: {exc} (limit: timeout={timeout:g} s). "
            f"{hint}"
            + (f"\nEngine output:\n{output}" if output else "")) from None
    rc.psml_start_seconds = time.perf_counter() - t0
    return rc


def _wait_for_engines(cluster, rc, n: int, deadline: float) -> None:
    # Our own loop, not rc.wait_for_engines: that one misses an engine launcher that had
    # already exited (mpiexec failing at once) and would wait out the whole timeout.
    while len(rc.ids) < n:
        for es in cluster.engines.values():
            exited = _launcher_exit(es)
            if exited is not None:
                raise RuntimeError(f"the engine launcher exited early ({exited})")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {len(rc.ids)} of {n} connected in time")
        time.sleep(0.1)


def _launcher_exit(es):
    """How an engine launcher ended, or None while it runs. ipyparallel only notices an exit
    when its event loop runs, so a local launcher's process (mpiexec) is also looked at."""
    if getattr(es, "state", "") == "after":
        return es.stop_data
    proc = getattr(es, "process", None)  # a psutil.Process for local/MPI launchers
    if proc is not None:
        import psutil

        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return {"pid": proc.pid, "state": "exited"}
        except psutil.NoSuchProcess:
            return {"pid": proc.pid, "state": "gone"}
    return None


def _engine_output(cluster, limit: int = 3000) -> str:
    out = []
    for es in getattr(cluster, "engines", {}).values():
        try:
            out.append(es.get_output() or "")
        except Exception:  # output is a hint only; never hide the real error
            pass
    return "\n".join(out).strip()[-limit:]


def _quiet_stop(cluster, rc=None) -> None:
    try:
        if rc is not None:
            rc.close()
        cluster.stop_cluster_sync()
    except Exception:
        pass


def stop_cluster(rc) -> float:
    """Stop the engines and controller behind a client from :func:`start_cluster`;
    returns the seconds it took."""
    t0 = time.perf_counter()
    cluster = rc.cluster
    rc.close()
    cluster.stop_cluster_sync()
    # Slurm engines: their temp folder (batch file, job output) goes with them.
    batch = cluster.config.SlurmEngineSetLauncher.get("batch_file_name")
    if batch and Path(batch).parent.name.startswith("psml-ipp-slurm-"):
        shutil.rmtree(Path(batch).parent, ignore_errors=True)
    return time.perf_counter() - t0


@contextmanager
def running_cluster(n: int = 2, engines: str = "local", timeout: float = 60, **kwargs):
    """``with running_cluster(2, "mpi") as rc: ...``: the cluster stops however the block ends."""
    rc = start_cluster(n, engines, timeout, **kwargs)
    try:
        yield rc
    finally:
        stop_cluster(rc)


def connect_in_job(n: int | None = None, timeout: float = 120):
    """Inside ``jobs/ipyparallel.sbatch``: a Client connected to the job's controller,
    once all ``n`` engines (default ``$SLURM_NTASKS``) are up."""
    import ipyparallel as ipp

    profile = os.environ.get("PSML_IPP_PROFILE_DIR")
    if not profile:
        raise ClusterError("PSML_IPP_PROFILE_DIR is not set: connect_in_job() is meant for "
                           "drivers started by jobs/ipyparallel.sbatch")
    n = int(n or os.environ.get("SLURM_NTASKS", "1"))
    conn = Path(profile) / "security" / "ipcontroller-client.json"
    end = time.monotonic() + timeout
    while not conn.is_file():  # the controller writes it a moment after starting
        if time.monotonic() > end:
            raise ClusterError(f"no {conn} after {timeout:.0f} s: the controller did not start")
        time.sleep(0.1)
    rc = ipp.Client(str(conn))
    try:
        rc.wait_for_engines(n, timeout=max(1.0, end - time.monotonic()), interactive=False)
    except TimeoutError as exc:
        rc.close()
        raise ClusterError(f"{exc}: see the engines' messages in the job's output file") from None
    return rc


def apply_with_timeout(rc, fn, *args, timeout: float = 30):
    """``rc[:].apply_sync(fn, *args)``, but bounded: when the engines have not answered after
    ``timeout`` seconds (typically an MPI deadlock: every rank waits for the others), the
    engines are replaced by fresh ones and a ``TimeoutError`` says so. Tests and demos use
    it so that a deadlock costs seconds, not the whole notebook."""
    ar = rc[:].apply_async(fn, *args)
    if ar.wait(timeout):
        return ar.get()
    cluster = rc.cluster
    n = len(rc.ids)
    cluster.stop_engines_sync()  # blocked in MPI: only killing the processes frees them
    cluster.start_engines_sync(n)
    deadline = time.perf_counter() + 120
    # Ready when n engines answer successfully: until the controller drops the dead ones
    # (MPI engines come back under the same ids), a call to them "finishes" with an error.
    while time.perf_counter() < deadline:
        if len(rc.ids) >= n:
            probe = rc[:].apply_async(lambda: 1)
            if probe.wait(5) and probe.successful():
                break
        time.sleep(0.2)
    raise TimeoutError(f"{getattr(fn, '__name__', fn)} did not finish on the engines within "
                       f"{timeout:g} s: probably a deadlock (every rank waiting in a blocking "
                       "call for a message no rank sends). The engines were restarted: run "
                       "the cells that set them up (imports, %%px) again.")


def describe() -> str:
    """One paragraph on what this machine offers: MPI, Slurm, CPUs (printed by notebooks)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mpi = mpi_problem()
    slurm = slurm_problem()
    return "\n".join([
        f"CPUs usable: {cpus}",
        f"MPI:   {'ready (' + shutil.which('mpiexec') + ')' if not mpi else 'not available: ' + mpi}",
        f"Slurm: {'ready: jobs can be submitted' if not slurm else 'not available: ' + slurm}"
        + ("" if not slurm else " -- the notebook runs everything on this machine instead"),
    ])


# --- psml cluster ... (command line) ------------------------------------------------------

def _cmd_check(args) -> int:
    print(describe())
    return 0


def _cmd_submit(args) -> int:
    try:
        job = submit(args.script, *args.args)
        print(job)
        if args.wait:
            state = wait_for_job(job, timeout=args.timeout)
            info = job_info(job)
            print(f"job {job}: {state}; output: {info.get('StdOut', '?')}", file=sys.stderr)
            return 0 if state == "COMPLETED" else 1
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("cluster", help="MPI and Slurm: check them, submit job scripts")
    s = p.add_subparsers(dest="cluster_cmd", required=True)
    s.add_parser("check", help="is MPI installed, is Slurm reachable?").set_defaults(
        func=_cmd_check)
    j = s.add_parser("submit", help="sbatch a job script with PSML_ACCOUNT/PARTITION/"
                     "RESERVATION/TIME as options; prints the job id")
    j.add_argument("script", help="job script, e.g. jobs/mpi.sbatch")
    j.add_argument("args", nargs="*", help="arguments for the script")
    j.add_argument("--wait", action="store_true", help="wait for the job to end")
    j.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most")
    j.set_defaults(func=_cmd_submit)
