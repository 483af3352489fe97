"""Slurm jobs from notebooks and tests: is Slurm usable here, the site's sbatch options, the
course's job scripts, submit and wait (bounded, with the job's own output in errors).

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
import time
from pathlib import Path

from psml.errors import ClusterError

SLURM_SETTINGS = {
    "PSML_ACCOUNT": "--account",
    "PSML_PARTITION": "--partition",
    "PSML_RESERVATION": "--reservation",
    "PSML_TIME": "--time",
}
FINAL_JOB_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                    "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


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
