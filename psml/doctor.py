"""``psml doctor``: is this environment ready for the course?

Each check returns a :class:`Check`. A failed check comes with one fix-it line, and makes
``psml doctor`` exit non-zero. Units add checks with the ``@check`` decorator.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

OK, INFO, WARN, FAIL = "ok", "info", "warn", "FAIL"
_MARK = {OK: "✓", INFO: "·", WARN: "!", FAIL: "✗"}
KERNEL_NAME = "psml"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


CHECKS: list[Callable[[], Check | list[Check]]] = []


def check(fn):
    """Register a check; it runs in registration order."""
    CHECKS.append(fn)
    return fn


@check
def python_version() -> Check:
    v = platform.python_version()
    if sys.version_info[:2] == (3, 11):
        return Check("python", OK, f"{v} ({sys.executable})")
    return Check("python", FAIL, f"{v} ({sys.executable})",
                 "the course pins need Python 3.11: run `make lab` (it creates .venv with 3.11)")


# (import name, distribution name, version prefix the course needs or "")
REQUIRED = [
    ("numpy", "numpy", "1."),
    ("tensorflow", "tensorflow-cpu", "2.15."),
    ("keras", "keras", "2.15."),
    ("matplotlib", "matplotlib", ""),
    ("sklearn", "scikit-learn", ""),
    ("mlxtend", "mlxtend", ""),
    ("jupyterlab", "jupyterlab", "4."),
    ("nbgrader", "nbgrader", "0.9."),
    ("ipykernel", "ipykernel", ""),
    ("nbclient", "nbclient", ""),
    ("ipyparallel", "ipyparallel", ""),
    ("mpi4py", "mpi4py", ""),
]


def _version(dist: str, module) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for name in (dist, "tensorflow") if dist == "tensorflow-cpu" else (dist,):
        try:
            return version(name)
        except PackageNotFoundError:
            pass
    return getattr(module, "__version__", "?")


@check
def packages() -> list[Check]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ banner out of the report
    out = []
    for mod, dist, prefix in REQUIRED:
        try:
            m = importlib.import_module(mod)
        except Exception as exc:  # ImportError, or a broken install raising anything
            out.append(Check(dist, FAIL, f"cannot import {mod}: {exc}",
                             "run `make lab` (re-installs the pinned environment), "
                             "or `pip install -r requirements.lock` in the course venv"))
            continue
        v = _version(dist, m)
        if prefix and not v.startswith(prefix):
            out.append(Check(dist, FAIL, f"{v}, the course needs {prefix}x",
                             "run `make lab`, or `pip install -r requirements.lock`"))
        else:
            out.append(Check(dist, OK, v))
    return out


@check
def kernel() -> Check:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if KERNEL_NAME in specs:
        return Check("kernel", OK, f"'{KERNEL_NAME}' at {specs[KERNEL_NAME]}")
    # HPC sites get psml-<variant> kernels from a site profile (psml kernels install).
    site_kernels = sorted(k for k in specs if k.startswith(KERNEL_NAME + "-"))
    if site_kernels:
        return Check("kernel", OK, f"site kernels {', '.join(site_kernels)}")
    return Check("kernel", FAIL, f"no '{KERNEL_NAME}' kernel spec (found: {sorted(specs)})",
                 "run `make lab`, or `python -m ipykernel install --sys-prefix --name psml "
                 "--display-name 'Python 3 (psml)'`")


@check
def cpus() -> Check:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Check("CPUs", INFO, f"{usable} usable of {os.cpu_count()}")


@check
def gpus() -> Check:
    try:
        import tensorflow as tf
    except Exception:  # reported by packages()
        return Check("GPUs", INFO, "unknown (TensorFlow does not import)")
    found = tf.config.list_physical_devices("GPU")
    if not found:
        return Check("GPUs", INFO, "none visible to TensorFlow: training runs on the CPU")
    return Check("GPUs", OK, ", ".join(d.name for d in found))


@check
def mpi() -> list[Check]:
    launcher = shutil.which("mpiexec")
    if not launcher:
        return [Check("MPI", FAIL, "no mpiexec on PATH",
                      "install Open MPI (`apt-get install openmpi-bin libopenmpi-dev`, "
                      "done by `make lab` on Debian/Ubuntu) or `module load` your site's MPI")]
    code = ("import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI; "
            "print(MPI.Get_library_version().splitlines()[0])")
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=30)
        lib = r.stdout.strip() if r.returncode == 0 else ""
    except subprocess.TimeoutExpired:
        lib = ""
    out = [Check("MPI", OK if lib else FAIL, f"{launcher}; mpi4py uses {lib or '?'}",
                 "" if lib else "mpi4py cannot load an MPI library: install libopenmpi-dev "
                 "or load your site's MPI module, then re-run `make lab`")]
    if os.geteuid() == 0 and os.environ.get("OMPI_ALLOW_RUN_AS_ROOT") != "1":
        out.append(Check("MPI as root", WARN, "running as root: Open MPI refuses to start",
                         "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"))
    return out


@check
def horovod() -> Check:
    """Horovod (unit 09): version, and which controllers/GPU operations it was built with."""
    from importlib.metadata import PackageNotFoundError, version

    from psml.hvdrun import pinned_version

    want = pinned_version()
    fix = ("run `make lab` (tools/setup.sh builds Horovod; its log is "
           ".venv/horovod-build.log), or on an HPC system load the site's Horovod module")
    try:
        have = version("horovod")
    except PackageNotFoundError:
        return Check("horovod", FAIL, "not installed (needed by unit 09)", fix)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import horovod.tensorflow as hvd
    except Exception as exc:  # e.g. built against another TensorFlow: undefined symbols
        return Check("horovod", FAIL, f"{have} does not import: {exc}".splitlines()[0],
                     "rebuild it against this TensorFlow: `pip uninstall -y horovod`, then "
                     + fix)
    built = [n for n, ok in (("MPI", hvd.mpi_built()), ("Gloo", hvd.gloo_built()),
                             ("NCCL", hvd.nccl_built())) if ok]
    detail = f"{have}, TensorFlow, controllers/ops: {', '.join(built) or 'none'}"
    if want and have.split("+")[0] != want:
        return Check("horovod", FAIL, f"{detail}; the course pins {want}",
                     f"`pip uninstall -y horovod`, then {fix}")
    if not (hvd.mpi_built() or hvd.gloo_built()):
        return Check("horovod", FAIL, f"{detail}: horovodrun cannot start workers", fix)
    return Check("horovod", OK, detail)


@check
def data() -> Check:
    from psml.config import data_dir
    from psml.data import mnist_status

    d = data_dir()
    status = mnist_status()
    if status == "full":
        return Check("data", OK, f"{d}: full MNIST, checksum OK")
    if status == "corrupt":
        return Check("data", WARN, f"{d}/mnist.npz has a wrong checksum: the offline subset "
                     "is used", "delete it and run `psml data fetch`")
    return Check("data", INFO, f"{d}: no full MNIST; the 5,000-image offline subset is used "
                 "(`psml data fetch` gets the full set)")


# --- HPC session: modules, Slurm, which kernel (psml/kernels.py generates the kernels) ------

def _loaded_modules() -> list[str]:
    return [m for m in os.environ.get("LOADEDMODULES", "").split(":") if m]


@check
def course_kernel() -> Check:
    """kernel.sh of a generated course kernel exports PSML_KERNEL=<site>-<variant>."""
    tag = os.environ.get("PSML_KERNEL", "")
    if tag:
        return Check("course kernel", OK, f"running under the psml kernel '{tag}'")
    if _loaded_modules():  # a module system in use: probably an HPC site without the kernel
        return Check("course kernel", WARN, "not started by a psml course kernel "
                     "(PSML_KERNEL unset) although modules are loaded",
                     "in JupyterLab pick 'psml (CPU)' or 'psml (GPU)' (Kernel > Change Kernel); "
                     "none listed? `psml kernels install --site NAME --user` or ask the course "
                     "admin")
    return Check("course kernel", INFO, "PSML_KERNEL unset: the laptop kernel 'psml', or not "
                 "run from a kernel (run `!psml doctor` in a notebook to check its kernel)")


@check
def modules() -> Check:
    loaded = _loaded_modules()
    tag = os.environ.get("PSML_KERNEL", "")
    want: list[str] = []
    if tag:
        try:
            from psml.kernels import installed

            want = next((k.get("modules", []) for k in installed().values()
                         if f"{k['site']}-{k['variant']}" == tag), [])
        except Exception:  # no kernel metadata to compare with: just report
            want = []
    missing = [m for m in want if m not in loaded]
    if missing:
        return Check("modules", WARN, f"kernel '{tag}' loads {', '.join(want)} but "
                     f"{', '.join(missing)} is not loaded now",
                     "restart the kernel; if it persists, reinstall the kernels "
                     "(psml kernels install) or ask the course admin")
    if not loaded:
        lmod = "no Lmod modules loaded" if os.environ.get("LMOD_CMD") else "no module system"
        return Check("modules", INFO, lmod)
    return Check("modules", OK if want else INFO, f"{len(loaded)} loaded: {', '.join(loaded)}")


@check
def slurm() -> list[Check]:
    from psml.sites.render import SLURM_BREAKING_VARS

    names = sorted(k for k in os.environ if k.startswith("SLURM_"))
    srun = shutil.which("srun")
    if not names:
        where = f"srun at {srun}" if srun else "no srun on PATH"
        return [Check("Slurm", INFO, f"not inside a Slurm job ({where})")]
    job = os.environ.get("SLURM_JOB_ID", "?")
    nodes = os.environ.get("SLURM_JOB_NODELIST", "?")
    out = [Check("Slurm", INFO, f"inside job {job} on {nodes} ({len(names)} SLURM_* "
                 f"variables; {'srun at ' + srun if srun else 'no srun on PATH'})")]
    bad = [k for k in SLURM_BREAKING_VARS if k in os.environ]
    if bad:
        out.append(Check("Slurm env", WARN, f"{', '.join(bad)} set: sbatch/srun started from "
                         "here inherit them and fail (conflicting memory or cpus-per-task "
                         "options) or get pinned to this job's cores",
                         "use a psml course kernel or `module load psml` (both unset them), "
                         f"or run `unset {' '.join(bad)}` before sbatch/srun"))
    return out


@check
def slurm_controller() -> Check:
    """Slurm is optional: the cluster notebooks run locally without it (psml.cluster)."""
    from psml.cluster import sbatch_options, slurm_problem

    problem = slurm_problem()
    if problem:
        return Check("Slurm controller", INFO,
                     f"none reachable ({problem}): cluster notebooks run locally")
    opts = " ".join(sbatch_options()) or "none (site defaults; set PSML_ACCOUNT, ...)"
    return Check("Slurm controller", OK, f"reachable; job options: {opts}")


@check
def grading_sandbox() -> Check:
    """Instructors only: can `psml grade` isolate student kernels here (docs/grading.md)?"""
    from psml.grading.limits import can_isolate

    if can_isolate():
        return Check("grading sandbox", OK, "root on Linux: namespaces, own uid per submission")
    return Check("grading sandbox", INFO, "limits only (not root): student code could read "
                 "what you can; grade untrusted classes as root in a VM/container")


def run_checks() -> list[Check]:
    results: list[Check] = []
    for fn in CHECKS:
        try:
            r = fn()
        except Exception as exc:  # a crashing check is itself a finding
            r = Check(fn.__name__, FAIL, f"check crashed: {exc!r}", "report this as a bug")
        results.extend(r if isinstance(r, list) else [r] if r else [])
    return results


def report(results: list[Check]) -> str:
    width = max(len(c.name) for c in results)
    lines = []
    for c in results:
        lines.append(f"{_MARK[c.status]} {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in (WARN, FAIL):
            lines.append(f"  {'':<{width}}  fix: {c.fix}")
    failed = [c.name for c in results if c.status == FAIL]
    lines.append("")
    lines.append(f"{len(failed)} problem(s): {', '.join(failed)}" if failed
                 else "All required checks passed.")
    return "\n".join(lines)


def main() -> int:
    results = run_checks()
    print(report(results))
    return 1 if any(c.status == FAIL for c in results) else 0
