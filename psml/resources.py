"""The one place psml finds the files it ships besides code: site profiles, job scripts,
kernel logos and the pins (``[tool.psml]`` of pyproject.toml).

They are kept where people edit them, in the repository (``jobs/``, ``kernels/``,
``pyproject.toml``), and reach the package through ``psml/_data/``, whose entries are
symlinks to them. An editable install reads the repository's files through the links; a wheel
holds copies (setuptools copies what a link points to: ``[tool.setuptools.package-data]``),
so a non-editable install works from anywhere, holds nothing else of the repository (no
solutions), and a new ``jobs/*.sbatch`` ships without touching this file.
"""

from __future__ import annotations

from pathlib import Path

from psml.errors import PsmlError

DATA = Path(__file__).resolve().parent / "_data"
# Resolved, so an editable install shows the repository's own paths (jobs/mpi.sbatch).
JOBS = (DATA / "jobs").resolve()                 # Slurm job-script templates (jobs/*.sbatch)
KERNELS = (DATA / "kernels").resolve()           # kernel logos (logo-*.png), site profiles
SITES = KERNELS / "sites"                        # site profiles (kernels/sites/*.toml)
PYPROJECT = (DATA / "pyproject.toml").resolve()  # the pins: [tool.psml] horovod


class ResourceError(PsmlError, FileNotFoundError):
    """A data file psml ships is missing: the installation is incomplete."""


def resource(*parts: str) -> Path:
    """Path of a shipped data file, e.g. ``resource("jobs", "mpi.sbatch")``; raises
    :class:`ResourceError` when it is not there."""
    path = DATA.joinpath(*parts).resolve()
    if not path.exists():
        raise ResourceError(
            f"psml's data file {'/'.join(parts)} is missing from {DATA}: this psml "
            "installation is incomplete. Reinstall it (course repository: `make lab`; "
            "elsewhere: pip install the psml wheel, see docs/hpc-deployment.md)")
    return path
