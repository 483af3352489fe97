"""Grading a batch: prepare the assignment, grade the canary, then every submission in its
own scratch course, N at a time, and merge each result into the course.

1. **prepare**: ``nbgrader generate_assignment`` from ``solutions/`` updates the course
   gradebook (hidden tests are restored from there), and once more into a *template* course
   whose gradebook holds the assignment and no student.
2. **canary**: the instructor's solution is graded first, in the same sandbox and limits.
   Unless it gets every auto-graded point the batch stops (:class:`CanaryError`) with the real
   error, before any student is graded: a broken environment never zeros a class.
3. **grade** each submission (:mod:`.scratch`, :mod:`.sandbox`, :mod:`.execute`) in a
   subprocess running ``nbgrader autograde`` + ``generate_feedback``.
4. **merge** (main thread only, one writer): auto scores into the course gradebook (manual
   scores an instructor gave survive a re-run), ``autograded/`` and the feedback page back into
   the course, the grader's notes into the feedback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nbformat

from psml.course import tool_env
from psml.grading import late, sandbox
from psml.grading.submissions import Submission
from psml.grading.course import Course
from psml.grading.errors import GradingError
from psml.grading.events import EVENTS_ENV, FLAGGING, UNTRUSTED, read_events
from psml.grading.limits import Limits, can_isolate
from psml.grading.nbconfig import write_config
from psml.grading.report import FLAGGED, GRADED, Result, Score, write_feedback_notes
from psml.grading.scratch import build_scratch

CANARY = "psml-canary"  # the instructor's solution, graded before the class


class CanaryError(GradingError):
    """The instructor's solution did not get full marks: the grading environment is broken."""


@dataclass
class Prepared:
    assignment: str
    template_db: Path
    release: dict[str, nbformat.NotebookNode]  # notebook name -> released skeleton
    data_dir: Path  # the source's non-notebook files
    max_score: float

    @property
    def auto_max(self) -> float:
        """Points of the auto-graded (code) test cells of all notebooks."""
        return float(sum(c.metadata["nbgrader"].get("points", 0) for nb in self.release.values()
                         for c in nb.cells if c.cell_type == "code"
                         and c.get("metadata", {}).get("nbgrader", {}).get("grade")))


def prepare(course: Course, assignment: str, work: Path) -> Prepared:
    """Update the course gradebook from solutions/ and build the template course."""
    src = course.source / assignment
    if not src.is_dir():
        raise GradingError(f"no {src}: the assignment's nbgrader source is needed to grade "
                           "(hidden tests live there)")
    # 1. the course's own gradebook (release written to a scratch folder: exercises/ stays
    #    exactly what `psml build` made)
    course.nbgrader("generate_assignment", assignment, "--force", "--log-level=WARN",
                    f"--CourseDirectory.release_directory={work / 'course-release'}")
    # 2. the template: same assignment, no student, nothing else
    tpl = work / "template"
    shutil.copytree(src, tpl / "source" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    db = tpl / "gradebook.db"
    write_config(tpl, course, db)
    course.nbgrader("generate_assignment", assignment, "--force", "--log-level=WARN", cwd=tpl)
    release = {p.stem: nbformat.read(p, as_version=4)
               for p in sorted((tpl / "release" / assignment).glob("*.ipynb"))}
    if not release:
        raise GradingError(f"{assignment} has no notebooks in {src}")
    data = work / "data"
    ignore = list(course.section("CourseDirectory").get("ignore", []))
    shutil.copytree(src, data, ignore=shutil.ignore_patterns(  # as nbgrader would copy them
        "*.ipynb", ".ipynb_checkpoints", "__pycache__", *ignore))
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}", course.course_id) as gb:
        max_score = gb.find_assignment(assignment).max_score
    return Prepared(assignment, db, release, data, float(max_score))


def underlying_error(*logs: Path) -> str:
    """The last real error line of the logs (the exception of the last traceback), never
    nbgrader's "see the above traceback"."""
    for log in logs:
        lines = [ln.strip() for ln in (log.read_text(errors="replace").splitlines()
                                       if log.is_file() else []) if ln.strip()]
        useful = [ln for ln in lines if "see the above traceback" not in ln.lower()]
        for i in range(len(useful) - 1, -1, -1):
            ln = useful[i]
            if ("Error" in ln or "Exception" in ln or "[ERROR]" in ln) and \
                    not ln.startswith(("File ", "Traceback")):
                return ln[-500:]
    return ""


class Grader:
    """Grades submissions of one assignment; one instance per ``psml grade`` run."""

    def __init__(self, course: Course, prep: Prepared, limits: Limits, work: Path,
                 isolate: bool = True, quick: bool = True, uid_base: int = 3_100_000):
        self.course, self.prep, self.limits, self.work = course, prep, limits, work
        self.isolated = isolate and can_isolate()
        self.quick, self.uid_base = quick, uid_base
        self._n = 0
        self._lock = threading.Lock()

    def _next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    def grade(self, sub: Submission) -> Result:
        t0 = time.perf_counter()
        n = self._next()
        # a uid nobody else uses: this run's block (two runs at once differ) + this submission
        uid = self.uid_base + (os.getpid() % 4096) * 1000 + n % 1000
        res = Result(sub.student, max_score=self.prep.max_score, uid=uid)
        ts = sub.folder / "timestamp.txt"
        res.timestamp = ts.read_text().strip() if ts.is_file() else None
        try:
            s = build_scratch(self.work / f"{n:04d}-{sub.student}", sub, self.prep,
                              self.course, self.limits, uid, self.isolated, self.quick)
        except Exception as exc:  # noqa: BLE001 -- one bad submission never stops a batch
            err = f"{exc.__class__.__name__}: {exc}"
            res.fail(f"could not prepare the submission: {err}", fault=err)
            res.seconds = time.perf_counter() - t0
            return res
        res.scratch, res.reasons = s.folder, s.reasons
        if not s.graded:
            res.fail("no notebook could be graded")
        else:
            try:
                self._autograde(sub, s, uid, res, len(s.graded))
            except Exception as exc:  # noqa: BLE001 -- one bad submission never stops a batch
                err = f"{exc.__class__.__name__}: {exc}"
                res.fail(f"grader error: {err}", fault=err)
        res.seconds = time.perf_counter() - t0
        return res

    def _autograde(self, sub: Submission, s, uid: int, res: Result, n_nb: int) -> None:
        a = self.prep.assignment
        events, log = s.folder / "events.jsonl", s.folder / "autograde.log"
        env = tool_env()
        env.update({"JUPYTER_PATH": str(s.folder / "jupyter"),
                    "JUPYTER_RUNTIME_DIR": str(s.folder / "runtime"), EVENTS_ENV: str(events),
                    "PYTHONWARNINGS": "ignore"})
        if self.quick:
            env["PSML_QUICK"] = "1"
        hard = self.limits.for_nbgrader_process() * n_nb + 120  # + feedback
        cmd = [sys.executable, "-m", "psml.grading.execute", a, sub.student]
        with open(log, "w") as f:
            p = subprocess.Popen(cmd, cwd=s.course, env=env, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            try:
                rc = p.wait(timeout=hard)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                rc = p.wait()
                res.reasons.append(f"grading stopped after {hard:.0f} s (the kernel did not "
                                   "answer interrupts)")
        if self.isolated:
            sandbox.kill_uid(uid)  # leftovers: background processes, fork bombs
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
        evs, _ = read_events(events)  # a line cut short by a kill is skipped, not fatal
        for ev in evs:
            res.reasons.append(ev.text)
            if ev.kind in FLAGGING:
                res.status = FLAGGED
            res.untrusted |= ev.kind in UNTRUSTED
        self._read_scores(s.course, sub.student, res)
        if rc != 0 and not res.graded_notebooks:
            err = underlying_error(log, s.run / "kernel.log") or f"exit code {rc}"
            res.fail(f"nbgrader could not grade it: {err}", fault=err)
        elif rc == 2:
            err = underlying_error(log) or "exit code 2"
            res.reasons.append(f"nbgrader could not write the feedback: {err}")
            res.fault = err

    def _read_scores(self, course: Path, student: str, res: Result) -> None:
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(f"sqlite:///{course / 'gradebook.db'}", self.course.course_id) as gb:
            try:
                sub = gb.find_submission(self.prep.assignment, student)
            except MissingEntry:
                return
            ag = course / "autograded" / student / self.prep.assignment
            for nb in sub.notebooks:
                if not (ag / f"{nb.name}.ipynb").is_file():
                    continue
                res.graded_notebooks.append(nb.name)
                for g in nb.grades:
                    manual = g.cell_type == "markdown" or g.auto_score is None
                    res.scores[(nb.name, g.name)] = Score(g.auto_score, g.needs_manual_grade,
                                                          float(g.max_score), manual)
                for c in nb.comments:
                    res.comments[(nb.name, c.name)] = c.auto_comment
        if res.untrusted:  # scores cannot be trusted: 0 and left for the instructor
            res.scores = {k: Score(0.0, True, v.max, v.manual) for k, v in res.scores.items()}
        res.score = float(sum(v.auto or 0 for v in res.scores.values()))

    # merging back into the course (main thread only) ---------------------------------------
    def merge(self, res: Result) -> None:
        from nbgrader.api import Gradebook

        a = self.prep.assignment
        with warnings.catch_warnings(), \
                Gradebook(self.course.db_url, self.course.course_id) as gb:
            warnings.simplefilter("ignore")  # SQLAlchemy notes from nbgrader's own API
            gb.update_or_create_student(res.student)
            kw = {"timestamp": res.timestamp} if res.timestamp else {}
            sub = gb.update_or_create_submission(a, res.student, **kw)
            for nb in sub.notebooks:
                for g in nb.grades:
                    sc = res.scores.get((nb.name, g.name))
                    if sc is None:
                        g.auto_score, g.needs_manual_grade = 0.0, False
                    else:
                        g.auto_score, g.needs_manual_grade = sc.auto, sc.needs_manual
                for c in nb.comments:
                    c.auto_comment = res.comments.get((nb.name, c.name))
                nb.flagged = res.status == FLAGGED
            # late: flagged with how late and the course's penalty, never dropped
            res.seconds_late = float(sub.total_seconds_late)
            own = {nb.name: float(sum(v.auto or 0 for (n, _), v in res.scores.items()
                                      if n == nb.name)) for nb in sub.notebooks}
            cut = late.penalties(self.course.config, res.student, res.seconds_late, own)
            for nb in sub.notebooks:
                nb.late_submission_penalty = cut.get(nb.name)
            res.late_penalty = float(sum(p or 0 for p in cut.values()))
            if res.seconds_late > 0:
                res.reasons.append(f"submitted {late.describe(res.seconds_late)} after the due "
                                   f"date: late-submission penalty {res.late_penalty:g} points")
            gb.db.commit()
        src = (res.scratch / "course") if res.scratch else None
        # autograded/: the graded notebooks and the student's own files (capped when the
        # scratch was built); what the run wrote stayed in the kernel's folder.
        dest = self.course.autograded / res.student / a
        if dest.exists():
            shutil.rmtree(dest)
        if src is not None and (src / "autograded" / res.student / a).is_dir():
            shutil.copytree(src / "autograded" / res.student / a, dest, symlinks=True)
        # feedback/: the pages and the notes, plus the two small files `nbgrader
        # release_feedback` reads there (which submission the feedback belongs to)
        fb = self.course.feedback / res.student / a
        if fb.exists():
            shutil.rmtree(fb)
        fb.mkdir(parents=True)
        for page in (src / "feedback" / res.student / a).glob("*.html") if src else []:
            shutil.copy(page, fb / page.name)
        for name in ("timestamp.txt", "submission_secret.txt"):
            if (dest / name).is_file():
                shutil.copy(dest / name, fb / name)
        write_feedback_notes(res, fb, list(self.prep.release))


def _cell_error(res: Result, notebook: str, grade_id: str) -> str:
    """`` (ErrorType: message)`` of a graded cell in the autograded notebook, if it raised."""
    path = (res.scratch / "course" / "autograded" / res.student / "*" / f"{notebook}.ipynb"
            ) if res.scratch else None
    for p in (sorted(path.parent.parent.glob(f"*/{notebook}.ipynb")) if path else []):
        for cell in nbformat.read(p, as_version=4).cells:
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
                errs = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
                if errs:
                    return f" ({errs[-1].get('ename')}: {str(errs[-1].get('evalue'))[:300]})"
    return ""


def check_canary(res: Result, auto_max: float) -> None:
    """Stop the batch unless the instructor's solution got every auto-graded point."""
    auto = sum(s.auto or 0 for s in res.scores.values() if not s.manual)
    if res.status == GRADED and res.graded_notebooks and auto == auto_max:
        return
    lost = [f"{nb}/{g}" + _cell_error(res, nb, g) for (nb, g), s in sorted(res.scores.items())
            if not s.manual and (s.auto or 0) < s.max]
    detail = "; ".join(res.reasons) or "no reason given"
    log = underlying_error(res.scratch / "autograde.log", res.scratch / "run" / "kernel.log") \
        if res.scratch else ""
    raise CanaryError(
        f"the instructor's solution got {auto:g}/{auto_max:g} auto-graded points "
        f"(status {res.status}) in the grading sandbox, so no student was graded. "
        f"Cells that lost points: {', '.join(lost) or '-'}. Reasons: {detail}. "
        f"Last error in the logs: {log or '-'}. Fix the grading environment (or the "
        "solution) and re-run; --keep-scratch --work DIR keeps DIR/*/autograde.log and "
        "run/kernel.log")


def grade_batch(course: Course, assignment: str, subs: list[Submission],
                limits: Limits, workers: int = 2, isolate: bool = True,
                quick: bool = True, uid_base: int = 3_100_000, work: Path | None = None,
                keep_scratch: bool = False, progress: bool = True, export: bool = True,
                canary: bool = True) -> list[Result]:
    """Grade ``subs`` in parallel and merge the results; returns one Result per submission.
    With ``canary``, the instructor's solution is graded first (see :func:`check_canary`)."""
    from tqdm import tqdm

    if workers < 1:
        raise GradingError(f"--workers must be at least 1, not {workers}")
    own_work = work is None
    work = Path(tempfile.mkdtemp(prefix="psml-grade-")) if own_work else work
    work.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    try:
        prep = prepare(course, assignment, work)
        grader = Grader(course, prep, limits, work, isolate, quick, uid_base)
        if canary:
            check_canary(grader.grade(Submission(CANARY, course.source / assignment)),
                         prep.auto_max)
        bar = tqdm(total=len(subs), desc=f"grading {assignment}", unit="nb",
                   disable=not progress, file=sys.stderr)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(grader.grade, s) for s in subs]
            for fut in as_completed(futures):
                res = fut.result()
                grader.merge(res)  # serial: one writer on the gradebook
                results.append(res)
                bar.set_postfix_str(f"{res.student}: {res.status}")
                bar.update()
        bar.close()
        if export:
            course.nbgrader("export", "--log-level=WARN")
    finally:
        if own_work and not keep_scratch:
            shutil.rmtree(work, ignore_errors=True)
    results.sort(key=lambda r: r.student)
    return results
