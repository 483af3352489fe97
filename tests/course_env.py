"""The non-editable course environment (tools/course-env.sh) for the tests that need one
(test_install.py, the hub tests): built once per test session, kept between sessions.

    from course_env import course_env
    prefix = course_env()      # Path: prefix/bin/python, prefix/share/jupyter/kernels/psml

It lives outside the repository (the script refuses a prefix inside it) in a folder named for
this checkout, readable by every user: the hub's student accounts run its kernels.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = Path(tempfile.gettempdir()) / \
    f"psml-course-env-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]}"
_built: dict[Path, str] = {}


def run_course_env(prefix: Path = PREFIX, timeout: int = 900) -> str:
    """Run tools/course-env.sh PREFIX; its output (fails the test with it on error)."""
    r = subprocess.run([str(ROOT / "tools" / "course-env.sh"), str(prefix)], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"tools/course-env.sh {prefix} failed ({r.returncode}):\n"
                             f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout + r.stderr


def course_env(prefix: Path = PREFIX) -> Path:
    """The course environment, created or brought up to date once per session."""
    if prefix not in _built:
        _built[prefix] = run_course_env(prefix)
    return prefix
