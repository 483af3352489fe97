"""The psml wheel: the package and its data files (psml/resources.py), nothing else of the
repository, for non-editable installs (tools/course-env.sh, HPC venvs, the student bundle).

``psml wheel [-o DIR]`` builds it and prints its path. The build runs on a copy of exactly
what the wheel is made of (pyproject.toml, README.md, psml/, jobs/, kernels/), so stale
files of an earlier build or anything else in the working tree cannot slip into it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from psml.errors import PsmlError

# What the wheel is built from, relative to the repository (psml/_data links into jobs/ and
# kernels/; pyproject's readme is README.md).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "psml", "jobs", "kernels")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".ipynb_checkpoints")
DEFAULT_DEST = Path(".cache") / "wheels" / "psml"


class WheelError(PsmlError):
    """The psml wheel could not be built."""


def repo_root() -> Path:
    """The course repository this psml was imported from (editable install or checkout)."""
    root = Path(__file__).resolve().parents[1]
    if not all((root / name).exists() for name in WHEEL_SOURCES):
        raise WheelError(f"{root} is not the course repository (it lacks one of "
                         f"{', '.join(WHEEL_SOURCES)}): build the wheel from a checkout, "
                         "with the psml of its .venv (`make lab` creates it)")
    return root


def _builder(src: Path, dest: Path) -> list[str]:
    """uv when it is there (seconds, cached setuptools), else pip."""
    uv = Path(sys.executable).parent / "uv"
    if uv.exists() or shutil.which("uv"):
        return [str(uv if uv.exists() else shutil.which("uv")), "build", "--wheel", "-q",
                "-o", str(dest), str(src)]
    return [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), str(src)]


def sources_hash(root: Path) -> str:
    """Hash of the names and contents of everything the wheel is built from."""
    h = hashlib.sha256()
    for name in WHEEL_SOURCES:
        top = root / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for p in files:
            rel = p.relative_to(root)
            if not any(IGNORE(str(root), [part]) for part in rel.parts):   # same as the copy
                h.update(rel.as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def build_wheel(dest: Path | None = None, root: Path | None = None) -> Path:
    """Build the psml wheel into ``dest`` (default ``<repo>/.cache/wheels/psml``), return it.
    A wheel built there from the same sources is reused (a second call takes milliseconds)."""
    from psml import __version__

    root = root or repo_root()
    dest = Path(dest or root / DEFAULT_DEST).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"psml-{__version__}-py3-none-any.whl"
    stamp = dest / ".psml-sources-sha256"
    want = sources_hash(root)
    if wheel.is_file() and stamp.is_file() and stamp.read_text() == want:
        return wheel
    with tempfile.TemporaryDirectory(prefix="psml-wheel-") as tmp:
        src = Path(tmp) / "psml-src"
        src.mkdir()
        for name in WHEEL_SOURCES:
            if (root / name).is_dir():
                shutil.copytree(root / name, src / name, symlinks=True, ignore=IGNORE)
            else:
                shutil.copy2(root / name, src / name)
        r = subprocess.run(_builder(src, dest), capture_output=True, text=True)
        if r.returncode != 0:
            raise WheelError(f"building the psml wheel failed:\n{(r.stdout + r.stderr)[-3000:]}"
                             "\nCheck pyproject.toml's [tool.setuptools] sections.")
    if not wheel.is_file():
        raise WheelError(f"the build ran but {wheel} is not there: does pyproject.toml's "
                         f"version ({__version__} expected) match psml.__version__?")
    stamp.write_text(want)
    return wheel


def _wheel(args) -> int:
    print(build_wheel(Path(args.output) if args.output else None))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("wheel", help="build the psml wheel (package + data, no solutions) "
                       "for non-editable installs")
    p.add_argument("-o", "--output", help=f"folder for the wheel (default: <repo>/{DEFAULT_DEST})")
    p.set_defaults(func=_wheel)
