"""Running notebooks and nbgrader from tests."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
TIMES = ROOT / ".cache" / "notebook-times.json"


def run_notebook(path: Path, timeout: int = 600) -> tuple[nbformat.NotebookNode, float]:
    """Execute a notebook top to bottom in the course kernel, in its own folder.
    Raises nbclient's CellExecutionError (with the failing cell and traceback) on error."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="psml",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    record_time(path, seconds)
    return nb, seconds


def error_outputs(nb) -> list[str]:
    """'ename: evalue' of every error output in an executed notebook."""
    return [f"{o.ename}: {o.evalue}" for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.output_type == "error"]


def record_time(path: Path, seconds: float) -> None:
    """Keep the latest quick-mode run time per notebook (reported, never asserted)."""
    TIMES.parent.mkdir(exist_ok=True)
    try:
        times = json.loads(TIMES.read_text())
    except (OSError, ValueError):
        times = {}
    times[str(path.relative_to(ROOT))] = round(seconds, 1)
    TIMES.write_text(json.dumps(times, indent=1, sort_keys=True))


def nbgrader(*args: str, cwd: Path) -> str:
    r = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} failed ({r.returncode}):\n"
                             f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r.stdout + r.stderr


def make_course(tmp: Path, assignment: str) -> Path:
    """A throw-away nbgrader course with one assignment copied from solutions/."""
    course = tmp / "course"
    shutil.copytree(ROOT / "solutions" / assignment, course / "solutions" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", course)
    return course


def submit(course: Path, student: str, assignment: str, notebooks: list[Path]) -> None:
    dest = course / "submitted" / student / assignment
    dest.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        shutil.copy(nb, dest / nb.name)
    (dest / "timestamp.txt").write_text("2026-01-01 12:00:00.000000 UTC")


def points(path: Path) -> tuple[float, float]:
    """(auto-graded, manually graded) points of an nbgrader source notebook.

    Autograded: test cells (grade, not solution). Manual: answer cells (grade and solution)
    and task cells, which an instructor scores in the formgrader."""
    auto = manual = 0.0
    for cell in nbformat.read(path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution") and not meta.get("task"):
            auto += float(meta.get("points", 0))
        elif meta.get("grade") or meta.get("task"):
            manual += float(meta.get("points", 0))
    return auto, manual


def read_grades(course: Path) -> dict[str, dict[str, str]]:
    """grades.csv exported by nbgrader, keyed by student id."""
    with open(course / "grades.csv", newline="") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}
