"""What a run reports: one :class:`Result` per submission, the summary table and CSV, the
notes at the top of each feedback page, and the rubrics of manually graded cells (for the
instructor only: taken from the *source* notebooks, never written into feedback)."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import nbformat

from psml.course import RUBRIC

GRADED, FAILED, FLAGGED = "graded", "failed", "flagged"


@dataclass
class Score:
    auto: float | None      # None: not scored automatically
    needs_manual: bool
    max: float
    manual: bool            # a manually graded cell (written answer): the instructor scores it


@dataclass
class Result:
    student: str
    status: str = GRADED
    score: float = 0.0
    max_score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    scores: dict = field(default_factory=dict)  # (notebook, grade_id) -> Score
    comments: dict = field(default_factory=dict)  # (notebook, grade_id) -> auto comment
    graded_notebooks: list[str] = field(default_factory=list)
    timestamp: str | None = None
    scratch: Path | None = None
    uid: int | None = None  # the uid its kernel ran as (isolated grading)
    fault: str | None = None  # set when it failed for a reason that is not the student's
    untrusted: bool = False   # student code faked success: scores are 0, needs manual grade
    seconds_late: float = 0.0  # after the due date (gradebook), 0 when on time
    late_penalty: float = 0.0  # points the course's late policy takes off

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def final_score(self) -> float:
        """The auto-graded score less the late penalty (nbgrader's ``score``)."""
        return max(0.0, self.score - self.late_penalty)

    @property
    def manual_points(self) -> float:
        """Points of manually graded cells still waiting for the instructor."""
        return float(sum(s.max for s in self.scores.values() if s.manual))

    def fail(self, reason: str, fault: str | None = None) -> None:
        """Nothing could be graded; ``fault``: the underlying error when not the student's."""
        self.status = FAILED
        self.reasons.append(reason)
        if fault:
            self.fault = fault


def summary_table(results: list[Result], width: int = 70) -> str:
    rows = [("student", "status", "score", "time", "reason")]
    for r in results:
        reason = r.reason or "-"
        score = f"{r.score:g}/{r.max_score:g}"
        if r.late_penalty:
            score += f" (-{r.late_penalty:g} late)"
        if r.manual_points and r.status != FAILED:
            score += f" (+{r.manual_points:g} manual)"
        rows.append((r.student, r.status, score, f"{r.seconds:.1f}s",
                     reason if len(reason) <= width else reason[:width - 1] + "…"))
    w = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(row[i].ljust(w[i]) for i in range(4)) + "  " + row[4] for row in rows]
    counts = {s: sum(r.status == s for r in results) for s in (GRADED, FLAGGED, FAILED)}
    lines.append(f"{len(results)} submissions: " + ", ".join(f"{v} {k}" for k, v in
                                                               counts.items()))
    manual = sum(r.manual_points > 0 and r.status != FAILED for r in results)
    if manual:
        lines.append(f"{manual} submissions have manually graded answers: needs manual "
                     "grading in the formgrader (rubrics: grading-rubrics.md)")
    return "\n".join(lines)


def write_summary(results: list[Result], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        # score and raw_score as in nbgrader's grades.csv: score = raw_score - late_penalty
        w.writerow(["student", "status", "score", "raw_score", "late_penalty", "seconds_late",
                    "max_score", "manual_points", "seconds", "reason"])
        for r in results:
            w.writerow([r.student, r.status, f"{r.final_score:g}", f"{r.score:g}",
                        f"{r.late_penalty:g}", f"{r.seconds_late:.0f}", f"{r.max_score:g}",
                        f"{r.manual_points:g}", f"{r.seconds:.1f}", r.reason])


def write_feedback_notes(res: Result, folder: Path, notebooks: list[str]) -> None:
    """Every problem the grader found, at the top of each feedback page (escaped)."""
    folder.mkdir(parents=True, exist_ok=True)
    items = "".join(f"<li>{escape(r)}</li>" for r in res.reasons)
    banner = ("<div style='border:2px solid #c60;padding:.5em 1em;margin:1em;"
              "background:#fff4e5;font-family:sans-serif'><b>Notes from the grader "
              f"(psml grade: {res.status})</b><ul>{items}</ul></div>") if res.reasons else ""
    for name in notebooks:
        page = folder / f"{name}.html"
        if page.is_file():
            if banner:
                html = page.read_text()
                i = html.find(">", html.find("<body")) + 1
                page.write_text(html[:i] + banner + html[i:])
        else:
            page.write_text(f"<html><body><h1>{escape(name)}: not graded</h1>{banner}"
                            "<p>0 points for this notebook.</p></body></html>")
    (folder / "grading-notes.txt").write_text(
        f"status: {res.status}\nscore: {res.score:g} / {res.max_score:g}\n"
        + (f"late-submission penalty: {res.late_penalty:g}\n" if res.late_penalty else "")
        + (f"manually graded: {res.manual_points:g} points, not yet graded\n"
           if res.manual_points else "")
        + "".join(f"- {r}\n" for r in res.reasons))


def manual_cells(source_nb: Path) -> list[tuple[str, float, str]]:
    """(grade_id, points, rubric) of each manually graded answer cell of a source notebook."""
    nb = nbformat.read(source_nb, as_version=4)
    out = []
    for cell in nb.cells:
        md = cell.metadata.get("nbgrader", {})
        if md.get("grade") and (cell.cell_type == "markdown" or md.get("solution")):
            text = cell.source
            i = text.find(RUBRIC)
            rubric = text[i:] if i >= 0 else "(no rubric in the source)"
            rubric = re.split(r".*END SOLUTION.*", rubric)[0].strip()
            out.append((md.get("grade_id", "?"), float(md.get("points", 0)), rubric))
    return out


def write_rubrics(source: Path, assignment: str, path: Path) -> int:
    """``grading-rubrics.md`` for the instructor: each manual cell's rubric. Returns how many
    manual cells there are (nothing is written when there are none)."""
    parts = [f"# Manually graded answers of {assignment}\n",
             "Grade them in the formgrader (`nbgrader formgrader`); the rubrics below come "
             "from the source notebooks and are never shown to students.\n"]
    n = 0
    for nb in sorted(source.glob("*.ipynb")):
        for gid, points, rubric in manual_cells(nb):
            n += 1
            parts.append(f"## {nb.stem} / `{gid}` ({points:g} points)\n\n{rubric}\n")
    if n:
        path.write_text("\n".join(parts))
    return n
