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
    out = []
    for mod, dist, prefix in REQUIRED:
        try:
            m = importlib.import_module(mod)
        except Exception as exc:  # ImportError, or a broken install raising anything
            out.append(Check(dist, FAIL, f"cannot import {mod}: {exc}",
                             "run `make lab` (re-installs the pinned environment), "
                             f"or `pip install -r requirements.lock` in the course venv"))
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
