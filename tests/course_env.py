"""The non-editable course environment (tools/course-env.sh) for the tests that need one
(test_install.py, the hub tests): built once per test session, kept between sessions.

    from course_env import course_env
    prefix = course_env()      # Path: prefix/bin/python, prefix/share/jupyter/kernels/psml

It lives outside the repository (the script refuses a prefix inside it), readable by every
user (the hub's student accounts run its kernels): ``/var/tmp/psml-hub-env`` or
``$PSML_HUB_ENV``, the folder tests/hub_session.py uses, so a session builds it once.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = Path(os.environ.get("PSML_HUB_ENV", "/var/tmp/psml-hub-env"))
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
