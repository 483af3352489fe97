"""Start Horovod jobs from a notebook or a script: ``horovodrun`` (Gloo or MPI) and Slurm.

Tooling only (the training scripts the students write live in their notebooks)::

    from psml.hvdrun import horovodrun, check_build
    check_build()                    # {'frameworks': [...], 'controllers': [...], ...}
    r = horovodrun(["python", "train.py", "--epochs", "1"], np=2, controller="gloo")
    print(r.stdout)

Every launch gets an environment in which Open MPI starts as root (containers, CI), may put
more ranks than cores on a node, and TensorFlow keeps its C++ start-up chatter quiet.
A failed launch raises :class:`HorovodRunError` with the command and the end of its output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence
from psml.errors import PsmlError
from psml.workers import find_bin, launch_env, tail, worker_command  # noqa: F401 (launch_env: API)

CONTROLLERS = ("gloo", "mpi")


def pinned_version() -> str | None:
    """The Horovod version the course builds (``[tool.psml] horovod`` in pyproject.toml, the
    one place it is pinned; tools/setup.sh reads the same), or None outside the repository."""
    import tomllib

    from psml.resources import PYPROJECT as path
    try:
        return tomllib.loads(path.read_text())["tool"]["psml"]["horovod"]
    except (OSError, KeyError, ValueError):
        return None


class HorovodRunError(PsmlError, RuntimeError):
    """A Horovod launch failed; the message holds the command and the end of its output."""


def horovodrun_path() -> str:
    found = find_bin("horovodrun")
    if not found:
        raise HorovodRunError(
            "horovodrun was not found: Horovod is not installed in this environment. "
            "Fix: run `make lab` (or tools/setup.sh), which builds it; on an HPC system "
            "`module load Horovod` if your site provides it.")
    return found


def horovodrun(command: Sequence[str], np: int = 2, controller: str = "gloo",
               hosts: str | None = None, threads: int | None = 1,
               env: Mapping[str, str] | None = None, timeout: float = 600,
               cwd: str | Path | None = None, echo: bool = False) -> subprocess.CompletedProcess:
    """Run ``horovodrun -np NP --gloo|--mpi COMMAND`` and return the finished process.

    command: the program and its arguments, e.g. ``["python", "train.py"]`` (``python`` is
    replaced by this interpreter, so workers use the course environment).
    hosts: horovodrun's ``-H`` (``"node1:4,node2:4"``); default: all ranks on this machine.
    threads: TensorFlow threads per worker (``PSML_THREADS``); ``None`` leaves TF's default.
    Output (stdout and stderr together) is in ``.stdout``; ``echo=True`` also prints it.
    Raises HorovodRunError when a worker fails or the run exceeds ``timeout`` seconds.
    """
    if controller not in CONTROLLERS:
        raise ValueError(f"controller must be one of {CONTROLLERS}, got {controller!r}")
    if int(np) < 1:
        raise ValueError(f"np must be a positive number of workers, got {np!r}")
    command = worker_command(command)
    horovodrun_path()  # a clear error when Horovod is missing
    # horovodrun's code, minus its build check (a TensorFlow import per launch: psml._hvdlaunch)
    cmd = [sys.executable, "-m", "psml._hvdlaunch", "-np", str(int(np)), f"--{controller}"]
    if hosts:
        cmd += ["-H", hosts]
    cmd += command
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, env=launch_env(env, threads), cwd=cwd, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise HorovodRunError(f"{' '.join(cmd)} ran past {timeout} s and was stopped. "
                              f"Last output:\n{tail(out)}") from None
    r.seconds = time.perf_counter() - t0
    if echo:
        print(r.stdout, end="")
    if r.returncode != 0:
        hint = ""
        if "run as root" in r.stdout or "allow-run-as-root" in r.stdout:
            hint = "\nFix: export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
        elif "not built with" in r.stdout.lower():
            hint = "\nFix: this Horovod lacks that controller: `horovodrun --check-build`"
        raise HorovodRunError(f"{' '.join(cmd)} failed with exit code {r.returncode}. "
                              f"Last output:\n{tail(r.stdout)}{hint}")
    return r


def check_build() -> dict[str, list[str]]:
    """What this Horovod was built with, from ``horovodrun --check-build``.

    Returns ``{"version": [...], "frameworks": [...], "controllers": [...],
    "tensor_operations": [...]}``, each list naming only what is built (marked ``[X]``).
    """
    r = subprocess.run([horovodrun_path(), "--check-build"], capture_output=True, text=True,
                       env=launch_env(), timeout=120)
    if r.returncode != 0:
        raise HorovodRunError(f"horovodrun --check-build failed:\n{tail(r.stdout + r.stderr)}")
    return parse_check_build(r.stdout)


def build_info() -> dict:
    """This process's Horovod: ``{"version", "mpi", "gloo", "nccl"}`` (in-process and fast,
    unlike ``horovodrun --check-build``, which starts a new TensorFlow per framework)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import horovod
        import horovod.tensorflow as hvd
    except ImportError as exc:
        raise HorovodRunError(f"Horovod does not import ({exc}). Fix: run `make lab` "
                              "(tools/setup.sh builds it) or load your site's Horovod module"
                              ) from None
    return {"version": horovod.__version__, "mpi": bool(hvd.mpi_built()),
            "gloo": bool(hvd.gloo_built()), "nccl": bool(hvd.nccl_built())}


def parse_check_build(text: str) -> dict[str, list[str]]:
    """Parse ``horovodrun --check-build`` output (sections of ``[X] name`` lines)."""
    out: dict[str, list[str]] = {"version": [], "frameworks": [], "controllers": [],
                                 "tensor_operations": []}
    m = re.search(r"Horovod v([\w.+]+)", text)
    if m:
        out["version"] = [m.group(1)]
    section = None
    for line in text.splitlines():
        head = line.strip().rstrip(":").lower().replace(" ", "_")
        if head.startswith("available_"):
            section = head[len("available_"):]
            continue
        m = re.match(r"\s*\[X\]\s+(.+?)\s*$", line)
        if m and section in out:
            out[section].append(m.group(1))
    return out


# --- Slurm ------------------------------------------------------------------------------

def sbatch_args(nodes: int = 1, tasks_per_node: int = 1, gpus_per_node: int = 0,
                time_limit: str | None = None, job_name: str = "psml-horovod") -> list[str]:
    """``sbatch`` options for N nodes x G workers (one task per GPU when there are GPUs).

    Account, partition, QoS come from the standard ``SBATCH_ACCOUNT``, ``SBATCH_PARTITION``,
    ``SBATCH_QOS`` environment variables (set by the site profile), never from here.
    """
    if nodes < 1 or tasks_per_node < 1 or gpus_per_node < 0:
        raise ValueError("need nodes >= 1, tasks_per_node >= 1, gpus_per_node >= 0; got "
                         f"{nodes}, {tasks_per_node}, {gpus_per_node}")
    args = [f"--nodes={nodes}", f"--ntasks-per-node={tasks_per_node}", f"--job-name={job_name}"]
    if gpus_per_node:
        args.append(f"--gres=gpu:{gpus_per_node}")
    if time_limit:
        args.append(f"--time={time_limit}")
    return args



# --- site profiles -> job environment, and the `psml horovod` command --------------------

def render_job_env(site: str | Path, variant: str = "gpu", values: Mapping[str, str] | None = None
                   ) -> str:
    """A shell file for ``PSML_JOB_ENV`` (sourced by jobs/horovod.sbatch) from a site profile
    (``kernels/sites/NAME.toml``, see :mod:`psml.sites.profile`): the variant's modules, the course
    environment and the profile's variables, with ``${...}`` left for the job to expand."""
    import shlex

    from psml.sites.profile import ProfileError, load_profile, substitute
    from psml.sites.render import shell_word

    profile = substitute(load_profile(site), {"PSML_VENV": sys.prefix, **(values or {})})
    if variant not in profile.variants:
        raise ProfileError(f"site {profile.name!r} has no variant {variant!r}: choose one of "
                           f"{', '.join(profile.variants)}")
    lines = [f"# Job environment from site profile {profile.name!r}, variant {variant!r}.",
             "# Generated by `psml horovod job-env`; used as PSML_JOB_ENV=this-file sbatch ...",
             f"PSML_MODULES={shlex.quote(' '.join(profile.all_modules(variant)))}",
             f"PSML_VENV={shell_word(profile.environment.rstrip('/'), 'the environment field')}",
             f"PSML_UNSET_PYTHONPATH={1 if profile.pythonpath == 'unset' else 0}"]
    for k, v in {**profile.env, **profile.variants[variant].env}.items():
        lines.append(f"export {k}={shell_word(v, k)}")
    return "\n".join(lines) + "\n"


def _cmd_check(args) -> int:
    try:
        print(json.dumps({"build_info": build_info(), "check_build": check_build()}, indent=1))
    except HorovodRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_job_env(args) -> int:
    from psml.cluster import job_script
    from psml.sites.profile import ProfileError

    values = {}
    for pair in args.var or []:
        if "=" not in pair:
            print(f"error: --var {pair!r}: write NAME=VALUE", file=sys.stderr)
            return 2
        k, v = pair.split("=", 1)
        values[k] = v
    try:
        text = render_job_env(args.site, args.variant, values)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: submit with PSML_JOB_ENV={Path(args.output).resolve()} "
              f"sbatch ... {job_script('horovod')} SCRIPT.py", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def add_parser(sub) -> None:
    h = sub.add_parser("horovod", help="Horovod: build check, Slurm job environment").add_subparsers(
        dest="horovod_cmd", required=True)
    h.add_parser("check", help="what Horovod was built with (controllers, frameworks)"
                 ).set_defaults(func=_cmd_check)
    j = h.add_parser("job-env", help="a PSML_JOB_ENV file for jobs/horovod.sbatch from a site "
                     "profile (modules, course venv, variables)")
    j.add_argument("--site", required=True, help="profile name in kernels/sites/ or a .toml file")
    j.add_argument("--variant", default="gpu", help="profile variant (default: gpu)")
    j.add_argument("--var", action="append", metavar="NAME=VALUE",
                   help="fill a ${NAME} placeholder of the profile (repeatable)")
    j.add_argument("-o", "--output", help="write to this file (default: print)")
    j.set_defaults(func=_cmd_job_env)
