"""Cluster start-up for the notebooks: ipyparallel engines (local, MPI, Slurm) and Slurm jobs.

Tooling only: what students write stays in the notebooks. Typical use in a notebook::

    from psml.cluster import start_cluster, stop_cluster
    rc = start_cluster(n=2, engines="mpi")   # an ipyparallel Client, engines ready
    rc[:].apply_sync(os.getpid)
    stop_cluster(rc)

Every start is bounded (``timeout``) and every failure is a :class:`ClusterError` whose
message says what to do: no MPI installed, engines that crashed (with their output), no
Slurm. Nothing here waits forever.

Slurm settings never live in code: ``sbatch_options()`` turns ``PSML_ACCOUNT``,
``PSML_PARTITION``, ``PSML_RESERVATION`` and ``PSML_TIME`` (set by the site profile or by
you) into sbatch options; sbatch itself also reads ``SBATCH_ACCOUNT`` and friends.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from psml.errors import PsmlError

ENGINE_KINDS = ("local", "mpi", "slurm")
#: Environment variable -> sbatch option, for the site's account, partition, ...
SLURM_SETTINGS = {
    "PSML_ACCOUNT": "--account",
    "PSML_PARTITION": "--partition",
    "PSML_RESERVATION": "--reservation",
    "PSML_TIME": "--time",
}
FINAL_JOB_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                    "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
# ipyparallel's default heartbeat (3 s, several misses) makes every start wait ~5 s for
# nothing; 500 ms brings a 2-engine start from ~6.6 s to ~2.6 s (HPC-FACTS.md).
HEARTBEAT_MS = 500


class ClusterError(PsmlError, RuntimeError):
    """A cluster or job could not be started or finished; the message says what to do."""


# --- MPI ---------------------------------------------------------------------------------

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


def slurm_problem(timeout: float = 5) -> str | None:
    """``None`` when Slurm jobs can be submitted from here, else why not.

    Slurm is usable when ``sbatch`` is on PATH *and* the controller answers
    ``scontrol ping`` (a laptop with the client tools but no cluster is "no Slurm").
    """
    if not shutil.which("sbatch"):
        return "no `sbatch` on PATH: this machine is not a Slurm login node"
    try:
        r = subprocess.run(["scontrol", "ping"], capture_output=True, text=True,
                           timeout=timeout)
    except FileNotFoundError:
        return "`sbatch` is here but `scontrol` is not: the Slurm client tools are incomplete"
    except subprocess.TimeoutExpired:
        return f"the Slurm controller did not answer `scontrol ping` within {timeout:.0f} s"
    if "UP" not in r.stdout:
        why = (r.stderr.strip() or r.stdout.strip()).splitlines()
        return f"the Slurm controller is not reachable ({why[-1] if why else 'no answer'})"
    return None


def slurm_available(timeout: float = 5) -> bool:
    """True when jobs can be submitted (see :func:`slurm_problem` for the reason if not)."""
    return slurm_problem(timeout) is None


def sbatch_options(env: dict | None = None) -> list[str]:
    """sbatch options from ``PSML_ACCOUNT``, ``PSML_PARTITION``, ``PSML_RESERVATION``,
    ``PSML_TIME`` (unset or empty ones are left out): ``["--account=training2401", ...]``."""
    env = os.environ if env is None else env
    return [f"{opt}={env[var].strip()}" for var, opt in SLURM_SETTINGS.items()
            if env.get(var, "").strip()]


def job_script(name: str) -> Path:
    """Path of one of the course's job-script templates: ``job_script("mpi")`` is
    ``<course>/jobs/mpi.sbatch``."""
    from psml.resources import JOBS, resource

    if not (JOBS / f"{name}.sbatch").is_file():
        known = ", ".join(sorted(p.stem for p in JOBS.glob("*.sbatch")))
        raise ClusterError(f"no job template '{name}' in {JOBS} (there are: {known or 'none'})")
    return resource("jobs", f"{name}.sbatch")


def submit(script: str | os.PathLike, *args: str, cwd: str | os.PathLike | None = None,
           options: list[str] | None = None) -> str:
    """``sbatch`` a job script with the site's options (:func:`sbatch_options`) and return
    the job id. ``args`` go to the script; ``options`` are extra sbatch options."""
    problem = slurm_problem()
    if problem:
        raise ClusterError(f"cannot submit {script}: {problem}")
    path = Path(script)
    if not path.is_file():
        raise ClusterError(f"no job script at {path.resolve()}: pass the path of an "
                           ".sbatch file (the course's templates are in jobs/)")
    cmd = ["sbatch", "--parsable", *sbatch_options(), *(options or []), str(path.resolve()),
           *args]
    # sbatch passes this environment to the job: put this Python's bin/ first, so that
    # `python` in the job is the course environment even when called from a kernel.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)
    if r.returncode != 0:
        raise ClusterError(f"sbatch refused the job: {r.stderr.strip()}\n(command: "
                           f"{' '.join(cmd)}). Account/partition come from PSML_ACCOUNT, "
                           "PSML_PARTITION, ... or SBATCH_ACCOUNT, ...: are they right?")
    return r.stdout.strip().split(";")[0]


def job_info(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (``JobState``, ``StdOut``, ``ExitCode``, ...);
    empty once Slurm has forgotten the job."""
    r = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True,
                       text=True, timeout=30)
    return dict(re.findall(r"(\w+)=(\S*)", r.stdout)) if r.returncode == 0 else {}


def wait_for_job(job_id: str, timeout: float = 300, poll: float = 0.5) -> str:
    """Poll until the job ends and return its final state (``"COMPLETED"``, ``"FAILED"``,
    ...). After ``timeout`` seconds the job is cancelled and :class:`ClusterError` raised."""
    end = time.monotonic() + timeout
    state = "UNKNOWN"
    while time.monotonic() < end:
        state = job_info(job_id).get("JobState", "UNKNOWN")
        if state in FINAL_JOB_STATES:
            return state
        time.sleep(poll)
    subprocess.run(["scancel", str(job_id)], capture_output=True, timeout=30)
    raise ClusterError(f"job {job_id} was still {state} after {timeout:.0f} s and has been "
                       "cancelled. `squeue --me` shows why jobs wait (Reason column); a "
                       "full partition or a too-long --time are the usual causes.")


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
