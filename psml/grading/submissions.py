"""Bringing submissions into the course's ``submitted/<student>/<assignment>/``."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from psml.grading.course import Course
from psml.grading.errors import GradingError

STUDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass
class Submission:
    student: str
    folder: Path  # the course's submitted/<student>/<assignment>


def check_student(name: str) -> str:
    if not STUDENT_RE.match(name):
        raise GradingError(f"student id {name!r} is not usable as a folder name: use letters, "
                           "digits, '.', '_', '-', '@' (rename the file or folder)")
    return name


def collect(course: Course, assignment: str, source: Path | None = None,
            exchange: bool = False, students: list[str] | None = None) -> list[Submission]:
    """Bring submissions into ``submitted/`` and list them (sorted by student)."""
    if exchange:
        course.nbgrader("collect", assignment, "--update")
    if source is not None:
        source = source.resolve()
        if not source.is_dir():
            raise GradingError(f"{source} is not a folder of submissions")
        for entry in sorted(source.iterdir()):
            if entry.is_file() and entry.suffix == ".ipynb":  # <student>.ipynb
                dest = course.submitted / check_student(entry.stem) / assignment
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(entry, dest / f"{assignment}.ipynb")
            elif entry.is_dir():  # <student>/<assignment>/ or <student>/*.ipynb
                inner = entry / assignment if (entry / assignment).is_dir() else entry
                dest = course.submitted / check_student(entry.name) / assignment
                if dest.exists():
                    shutil.rmtree(dest)
                shutil.copytree(inner, dest, ignore=shutil.ignore_patterns(
                    ".ipynb_checkpoints", "__pycache__"))
    subs = []
    if course.submitted.is_dir():
        for d in sorted(course.submitted.iterdir()):
            if (d / assignment).is_dir() and (not students or d.name in students):
                subs.append(Submission(check_student(d.name), d / assignment))
    missing = sorted(set(students or []) - {s.student for s in subs})
    if missing:
        raise GradingError(f"no submission of {assignment} from: {', '.join(missing)} "
                           f"(looked in {course.submitted})")
    return subs
