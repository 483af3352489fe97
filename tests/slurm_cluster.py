"""A real single-node Slurm for tests: the session-scoped pytest fixture ``slurm``.

The fixture starts Debian's slurm-wlm 22.05 + munge through ``tools/minislurm.sh`` (own munge
key and socket, free TCP ports, all state in a temp dir; MpiDefault=pmix; CPUs = nproc), yields
a :class:`SlurmCluster`, and stops everything afterwards (jobs cancelled, ``scontrol
shutdown``, munged killed). It is registered for every test module in ``tests/conftest.py``;
use it by naming it::

    def test_job(slurm, tmp_path):
        job = slurm.sbatch(ROOT / "jobs" / "mpi.sbatch", "--ntasks=2", cwd=tmp_path)
        assert slurm.wait(job, timeout=120) == "COMPLETED", slurm.describe(job)
        print(slurm.output(job).read_text())

    subprocess.run(["srun", "-n", "2", "hostname"], env=slurm.env)  # any Slurm command

Needs root and the packages slurm-wlm and munge (``PSML_SETUP_TEST=1 tools/setup.sh``, which
``make test`` runs). A missing piece is a test *error* saying what to install, never a skip.
Keep jobs within the machine's CPUs (``slurm.cpus``): Slurm queues bigger ones forever
(``--overcommit`` lets more tasks share the CPUs). Set ``PSML_KEEP_SLURM=1`` to keep the
state dir (logs under ``log/``) after the session.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MINISLURM = ROOT / "tools" / "minislurm.sh"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


class SlurmCluster:
    """Handle on a running minislurm: environment, job submission, polling."""

    def __init__(self, directory: Path, cpus: int):
        self.dir = Path(directory)
        self.conf = self.dir / "slurm.conf"
        self.cpus = cpus
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        # Slurm's daemons live in /usr/sbin, which a non-login PATH may lack.
        env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/sbin", "/sbin"])
        # Settings of an enclosing allocation would leak into the test's jobs.
        for k in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SALLOC_"))]:
            if k != "SLURM_CONF":
                del env[k]
        #: Pass to every subprocess that talks to this cluster (SLURM_CONF, PATH, ...).
        self.env = env

    def run(self, *args: str, check: bool = True, timeout: float = 60,
            **kwargs) -> subprocess.CompletedProcess:
        """Run a Slurm command (``slurm.run("squeue")``) against this cluster."""
        r = subprocess.run(list(args), env=self.env, capture_output=True, text=True,
                           timeout=timeout, **kwargs)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): "
                               f"{r.stderr.strip() or r.stdout.strip()}")
        return r

    def sbatch(self, script: str | os.PathLike, *args: str,
               cwd: str | os.PathLike | None = None) -> str:
        """Submit a job; returns its id. ``script`` is a job-script file, or the script's
        text when it contains a newline. ``args`` are sbatch options; arguments after a
        ``"--"`` go to the script: ``slurm.sbatch(path, "-n", "2", "--", "arg1")``."""
        args = list(args)
        opts, script_args = (args[:args.index("--")], args[args.index("--") + 1:]) \
            if "--" in args else (args, [])
        text = str(script)
        if "\n" in text:  # the script itself, fed on stdin
            r = self.run("sbatch", "--parsable", *opts, input=text, cwd=cwd)
        else:
            r = self.run("sbatch", "--parsable", *opts, str(Path(script).resolve()),
                         *script_args, cwd=cwd)
        return r.stdout.strip().split(";")[0]

    def job_info(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, StdOut, ExitCode, ...)."""
        r = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        if r.returncode != 0:
            return {}
        return dict(re.findall(r"(\w+)=(\S*)", r.stdout))

    def state(self, job_id: str) -> str:
        return self.job_info(job_id).get("JobState", "UNKNOWN")

    def wait(self, job_id: str, timeout: float = 120, poll: float = 0.2) -> str:
        """Poll until the job reaches a final state, and return it (``"COMPLETED"``, ...).
        On timeout the job is cancelled and a TimeoutError tells its last state."""
        end = time.monotonic() + timeout
        while True:
            state = self.state(job_id)
            if state in FINAL_STATES:
                return state
            if time.monotonic() > end:
                self.run("scancel", str(job_id), check=False)
                raise TimeoutError(f"job {job_id} still {state} after {timeout:.0f}s "
                                   f"(cancelled):\n{self.describe(job_id)}")
            time.sleep(poll)

    def output(self, job_id: str) -> Path:
        """The job's stdout file (``#SBATCH --output``, default ``slurm-<id>.out``)."""
        return Path(self.job_info(job_id)["StdOut"])

    def describe(self, job_id: str) -> str:
        """What to look at when a job went wrong: its record, output and the daemon logs."""
        info = self.job_info(job_id)
        parts = [" ".join(f"{k}={info.get(k)}" for k in ("JobState", "Reason", "ExitCode"))]
        out = info.get("StdOut")
        if out and Path(out).is_file():
            parts.append(f"--- {out} (tail):\n{Path(out).read_text()[-3000:]}")
        for log in sorted((self.dir / "log").glob("*.log")):
            parts.append(f"--- {log.name} (tail):\n"
                         + "\n".join(log.read_text(errors="replace").splitlines()[-10:]))
        return "\n".join(parts)


def _minislurm(action: str, directory: Path, *extra: str, timeout: float = 60) -> str:
    r = subprocess.run(["bash", str(MINISLURM), action, str(directory), *extra],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"tools/minislurm.sh {action} failed:\n{r.stdout}{r.stderr}")
    return r.stdout


@pytest.fixture(scope="session")
def slurm():
    """A running single-node Slurm for this test session (see the module docstring)."""
    missing = [exe for exe in ("munged", "slurmctld", "slurmd", "sbatch")
               if not shutil.which(exe, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
    if missing:
        pytest.fail(f"Slurm is not installed (missing {', '.join(missing)}): run "
                    "`PSML_SETUP_TEST=1 tools/setup.sh` (installs slurm-wlm and munge)",
                    pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("the Slurm tests start slurmd, which needs root: run them as root "
                    "(CI does) or in a container", pytrace=False)
    # Not pytest's tmp_path: its 0700 parents would keep the munge user out.
    directory = Path(tempfile.mkdtemp(prefix="psml-slurm-"))
    cpus = os.cpu_count() or 1
    try:
        _minislurm("start", directory, str(cpus))
    except Exception:
        _minislurm("stop", directory)
        raise
    try:
        yield SlurmCluster(directory, cpus)
    finally:
        _minislurm("stop", directory)
        if os.environ.get("PSML_KEEP_SLURM", "") in ("", "0"):
            shutil.rmtree(directory, ignore_errors=True)
