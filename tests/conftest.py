"""Shared test set-up: quick mode for every notebook, MPI usable as root, course paths."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # test helpers (nbtools, ...) import by name
from slurm_cluster import slurm  # noqa: E402,F401  (a real single-node Slurm)
from hub_session import hub  # noqa: E402,F401  (the workshop hub `psml hub start` runs)

# Every notebook a test runs inherits these (kernels are children of this process).
os.environ["PSML_QUICK"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
os.environ.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
# Tests never see the user's data cache: MNIST comes from the offline subset, as on a fresh
# machine. Tests that need a cache make their own.
os.environ["PSML_DATA"] = tempfile.mkdtemp(prefix="psml-test-data-")
atexit.register(shutil.rmtree, os.environ["PSML_DATA"], ignore_errors=True)
# This venv's tools (jupyter, nbgrader, alembic) first on PATH, whatever shell ran pytest.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
