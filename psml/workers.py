"""What every launcher of training workers needs, Horovod's (:mod:`psml.hvdrun`) and
TensorFlow's own (:mod:`psml.tfdist`): the workers' environment, the command resolved to the
course's Python, and the end of their output for an error message."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Mapping, Sequence


def find_bin(name: str) -> str | None:
    """``name`` from this interpreter's venv first (a kernel's PATH may lack it), then PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def launch_env(env: Mapping[str, str] | None = None, threads: int | None = None) -> dict:
    """The environment for training workers: this one, plus what MPI/TF need to behave.

    ``threads``: TensorFlow intra-/inter-op threads per worker (read by the course's
    scripts and by :mod:`psml.hvdbench` from ``PSML_THREADS``; 1 = one core per worker).
    """
    out = dict(os.environ)
    out["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), out.get("PATH", "")])
    out.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out.setdefault("PYTHONUNBUFFERED", "1")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        out.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        out.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    # More ranks than cores is fine for teaching (a laptop, a 2-core CI runner).
    out.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    # Waiting MPI ranks yield the core instead of spinning: on a shared 2-core machine the
    # MPI controller ran 2.8x slower without this (361 vs 1013 img/s, psml.hvdbench cnn).
    out.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    if threads is not None:
        out["PSML_THREADS"] = str(int(threads))
        out["OMP_NUM_THREADS"] = str(int(threads))
    if env:
        out.update({k: str(v) for k, v in env.items()})
    return out


def worker_command(command: Sequence) -> list[str]:
    """``command`` as strings, with a leading ``python`` replaced by this interpreter (so
    workers use the course environment); ValueError when it is empty."""
    command = [str(c) for c in command]
    if not command:
        raise ValueError("command is empty: pass e.g. ['python', 'train.py']")
    if command[0] in ("python", "python3"):
        command[0] = sys.executable
    return command


def tail(text: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a worker's output (for error messages)."""
    return "\n".join(text.splitlines()[-lines:])
