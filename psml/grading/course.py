"""The course ``psml grade`` works on: its folders, gradebook and nbgrader_config.py (read once
per run), and how to run nbgrader in it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from psml.course import tool_env
from psml.grading.errors import GradingError
from psml.grading.limits import PsmlGrader, grader_settings


@dataclass
class Course:
    root: Path
    course_id: str
    source: Path
    submitted: Path
    autograded: Path
    feedback: Path
    db_url: str
    db_path: Path | None
    config: object  # traitlets Config of nbgrader_config.py, loaded once

    @classmethod
    def load(cls, root: Path) -> "Course":
        from traitlets.config.loader import PyFileConfigLoader

        root = root.resolve()
        if not (root / "nbgrader_config.py").is_file():
            raise GradingError(f"{root} has no nbgrader_config.py: run psml grade from the "
                               "course folder (or pass --course DIR)")
        cfg = PyFileConfigLoader("nbgrader_config.py", str(root)).load_config()
        cd = cfg.get("CourseDirectory", {})
        d = lambda key, default: root / cd.get(key, default)  # noqa: E731
        db_url = cd.get("db_url", f"sqlite:///{root / 'gradebook.db'}")
        db_path = Path(db_url[len("sqlite:///"):]) if db_url.startswith("sqlite:///") else None
        return cls(root, cd.get("course_id", "psml"), d("source_directory", "source"),
                   d("submitted_directory", "submitted"), d("autograded_directory",
                                                           "autograded"),
                   d("feedback_directory", "feedback"), db_url, db_path, cfg)

    def settings(self, **override) -> PsmlGrader:
        """``c.PsmlGrader.*`` of this course, command-line overrides on top."""
        return grader_settings(self.config, **override)

    def section(self, name: str) -> dict:
        return dict(self.config.get(name, {}))

    def nbgrader(self, *args: str, cwd: Path | None = None, timeout: float | None = None) -> str:
        r = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd or self.root,
                           env=tool_env(), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise GradingError(f"nbgrader {' '.join(args)} failed:\n{r.stdout[-3000:]}"
                               f"{r.stderr[-3000:]}")
        return r.stdout + r.stderr


def find_course() -> Path:
    """The course folder: the nearest folder with nbgrader_config.py at or above here."""
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / "nbgrader_config.py").is_file():
            return d
    from psml.course import course_root

    return course_root()
