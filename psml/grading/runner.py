"""``psml grade ASSIGNMENT``: grade a whole class with nbgrader, in parallel, safely.

A wrapper around nbgrader, not a replacement. For each run:

1. **collect** submissions into the course's ``submitted/<student>/<assignment>/`` (from there
   already, from a folder of ``<student>/<assignment>/`` or ``<student>.ipynb``, or from
   nbgrader's exchange with ``nbgrader collect``);
2. **prepare** the assignment: ``nbgrader generate_assignment`` from ``solutions/`` updates the
   course gradebook (so hidden tests are restored), and once more into a *template* course
   whose gradebook holds that assignment and no student;
3. **grade** each submission in its own scratch course (template gradebook, the student's
   notebooks normalised against the release, the source's data files) with
   ``nbgrader autograde`` + ``generate_feedback``, N at a time. The kernel runs isolated and
   limited (:mod:`psml.sandbox`); the grader side caps time and output
   (:mod:`psml.grading_execute`);
4. **merge** each result into the course gradebook (auto scores only: manual scores an
   instructor gave survive a re-run), copy ``autograded/`` and ``feedback/`` back, write each
   problem into the feedback, ``nbgrader export`` grades.csv, print a summary table and write
   ``grading-summary.csv``.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import nbformat

from psml import sandbox
from psml.course import tool_env
from psml.errors import PsmlError

STUDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MAX_EXTRA_FILES_MB = 20  # non-notebook files a student submits (data they made, ...)
GRADED, FAILED, FLAGGED = "graded", "failed", "flagged"


class GradingError(PsmlError, RuntimeError):
    """A problem with the course or the command line (not with a submission)."""


# --------------------------------------------------------------------------------------------
# the course


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
    config: object  # traitlets Config of nbgrader_config.py

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

    def nbgrader(self, *args: str, cwd: Path | None = None, env=None,
                 timeout: float | None = None) -> str:
        r = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd or self.root,
                           env=env or tool_env(), capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise GradingError(f"nbgrader {' '.join(args)} failed:\n{r.stdout[-3000:]}"
                               f"{r.stderr[-3000:]}")
        return r.stdout + r.stderr


# --------------------------------------------------------------------------------------------
# collecting


@dataclass
class Submission:
    student: str
    folder: Path  # the course's submitted/<student>/<assignment>


def _check_student(name: str) -> str:
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
                dest = course.submitted / _check_student(entry.stem) / assignment
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(entry, dest / f"{assignment}.ipynb")
            elif entry.is_dir():  # <student>/<assignment>/ or <student>/*.ipynb
                inner = entry / assignment if (entry / assignment).is_dir() else entry
                dest = course.submitted / _check_student(entry.name) / assignment
                if dest.exists():
                    shutil.rmtree(dest)
                shutil.copytree(inner, dest, ignore=shutil.ignore_patterns(
                    ".ipynb_checkpoints", "__pycache__"))
    subs = []
    if course.submitted.is_dir():
        for d in sorted(course.submitted.iterdir()):
            if (d / assignment).is_dir() and (not students or d.name in students):
                subs.append(Submission(_check_student(d.name), d / assignment))
    missing = sorted(set(students or []) - {s.student for s in subs})
    if missing:
        raise GradingError(f"no submission of {assignment} from: {', '.join(missing)} "
                           f"(looked in {course.submitted})")
    return subs


# --------------------------------------------------------------------------------------------
# preparing the assignment


@dataclass
class Prepared:
    assignment: str
    template_db: Path
    release: dict[str, nbformat.NotebookNode]  # notebook name -> released skeleton
    data_dir: Path  # the source's non-notebook files
    max_score: float


SCRATCH_CONFIG = """\
from nbgrader.preprocessors import (IgnorePattern, LimitOutput, SaveAutoGrades,
                                    AssignLatePenalties, CheckCellMetadata)
from nbconvert.preprocessors import ClearMetadataPreprocessor
from psml.grading_execute import LimitedExecute
c = get_config()
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.db_url = {db_url!r}
c.Execute.kernel_name = "psml-sandbox"
c.Execute.timeout = {cell_timeout}
c.Execute.interrupt_on_timeout = True
c.LimitedExecute.notebook_timeout = {notebook_timeout}
c.LimitedExecute.max_output_bytes = {max_output_bytes}
c.LimitOutput.max_lines = {max_lines}
c.LimitOutput.max_traceback = {max_traceback}
c.Autograde.autograde_preprocessors = [LimitedExecute, IgnorePattern,
    ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties,
    CheckCellMetadata]
# Unix sockets, not TCP: the kernel sits in a network namespace of its own.
c.KernelManager.transport = "ipc"
c.KernelManager.ip = {ipc!r}
"""


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
    (tpl / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = {course.course_id!r}\n"
        'c.CourseDirectory.source_directory = "source"\n'
        'c.CourseDirectory.release_directory = "release"\n'
        f"c.CourseDirectory.db_url = 'sqlite:///{db}'\n"
        + _copy_config_lines(course))
    course.nbgrader("generate_assignment", assignment, "--force", "--log-level=WARN", cwd=tpl)
    release = {p.stem: nbformat.read(p, as_version=4)
               for p in sorted((tpl / "release" / assignment).glob("*.ipynb"))}
    if not release:
        raise GradingError(f"{assignment} has no notebooks in {src}")
    data = work / "data"
    ignore = list(course.config.get("CourseDirectory", {}).get("ignore", []))
    shutil.copytree(src, data, ignore=shutil.ignore_patterns(  # as nbgrader would copy them
        "*.ipynb", ".ipynb_checkpoints", "__pycache__", *ignore))
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}", course.course_id) as gb:
        max_score = gb.find_assignment(assignment).max_score
    return Prepared(assignment, db, release, data, float(max_score))


def _copy_config_lines(course: Course) -> str:
    """The course's settings a release depends on (stubs, kernel) for the template."""
    out = []
    for section, key in (("ClearSolutions", "code_stub"), ("ClearSolutions", "text_stub"),
                         ("ClearSolutions", "begin_solution_delimeter"),
                         ("ClearSolutions", "end_solution_delimeter")):
        if key in course.config.get(section, {}):
            out.append(f"c.{section}.{key} = {course.config[section][key]!r}\n")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# normalising a submitted notebook against the release


def _gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _visible(test_source: str) -> str:
    """A test cell's source without hidden tests (a submitted source notebook has them)."""
    lines, hidden = [], False
    for line in test_source.splitlines():
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            lines.append(line.rstrip())
    return "\n".join(lines).strip()


def _longest_increasing(seq: list[int]) -> set[int]:
    """Indices into ``seq`` of one longest strictly increasing subsequence."""
    import bisect

    tails, tail_idx, prev = [], [], [-1] * len(seq)
    for i, v in enumerate(seq):
        j = bisect.bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tail_idx.append(i)
        else:
            tails[j], tail_idx[j] = v, i
        prev[i] = tail_idx[j - 1] if j else -1
    out, i = set(), tail_idx[-1] if tail_idx else -1
    while i != -1:
        out.add(i)
        i = prev[i]
    return out


def normalise(student: nbformat.NotebookNode, release: nbformat.NotebookNode
              ) -> tuple[nbformat.NotebookNode, list[str]]:
    """The submission rebuilt on the release's skeleton, and what had to be repaired.

    Every nbgrader cell (grade_id) comes from the release, in the release's order, with the
    release's type and metadata; only the *source* of solution cells comes from the student.
    The student's own extra cells stay after the nbgrader cell they followed. Deleted cells
    are restored (a deleted solution is the stub, so its tests fail), of duplicated cells the
    last copy counts, test cells are restored later by nbgrader from the gradebook.
    """
    repairs: list[str] = []
    rel_ids = [_gid(c) for c in release.cells if _gid(c)]
    pos = {g: i for i, g in enumerate(rel_ids)}
    # The student's own cells stay after the graded cell they followed -- counting only graded
    # cells still in order (a longest increasing run), so that one moved cell does not drag
    # the cells after it along.
    order = [pos[_gid(c)] for c in student.cells if _gid(c) in pos]
    in_place = _longest_increasing(order)
    by_id: dict[str, list] = {}
    free: dict[str | None, list] = {}
    anchor, k = None, 0
    for cell in student.cells:
        gid = _gid(cell)
        if gid in pos:
            by_id.setdefault(gid, []).append(cell)
            if k in in_place:
                anchor = gid
            k += 1
        else:
            cell = copy.deepcopy(cell)
            if "nbgrader" in cell.get("metadata", {}):
                if gid:
                    repairs.append(f"cell '{gid}' is not part of the assignment: graded as an "
                                   "ordinary cell")
                del cell.metadata["nbgrader"]
            free.setdefault(anchor, []).append(cell)
    firsts = list(dict.fromkeys(order))
    if firsts != sorted(firsts):
        repairs.append("cells were moved: put back in the assignment's order")
    cells = list(free.get(None, []))
    for rel in release.cells:
        gid = _gid(rel)
        if not gid:
            continue
        new = copy.deepcopy(rel)
        copies = by_id.get(gid, [])
        md = rel.metadata["nbgrader"]
        if not copies:
            repairs.append(f"cell '{gid}' was deleted: restored from the release"
                           + (" (its solution is the empty stub)" if md.get("solution") else ""))
        else:
            if len(copies) > 1:
                repairs.append(f"cell '{gid}' appears {len(copies)} times: the last copy counts")
            mine = copies[-1]
            if mine.cell_type != rel.cell_type:
                repairs.append(f"cell '{gid}' was changed from {rel.cell_type} to "
                               f"{mine.cell_type}: changed back")
            if md.get("solution") and not md.get("locked"):
                new.source = mine.source
            elif md.get("grade") and _visible(mine.source) != _visible(rel.source):
                repairs.append(f"test cell '{gid}' was edited: the original tests were run")
        cells.append(new)
        cells.extend(free.get(gid, []))
    ids = set()
    for c in cells:  # nbformat 4.5 ids must be unique (copies and restores can clash)
        if c.get("id") in ids or not c.get("id"):
            c["id"] = uuid.uuid4().hex[:8]
        ids.add(c["id"])
    out = copy.deepcopy(student)
    out.cells = cells
    ks = student.metadata.get("kernelspec", {}).get("name")
    want = release.metadata.get("kernelspec", {})
    if want and ks != want.get("name"):
        repairs.append(f"kernel '{ks}' replaced by the course kernel '{want.get('name')}'")
    out.metadata["kernelspec"] = copy.deepcopy(want)
    out.nbformat, out.nbformat_minor = 4, max(5, release.get("nbformat_minor", 5))
    return out, repairs


# --------------------------------------------------------------------------------------------
# grading one submission


@dataclass
class Result:
    student: str
    status: str = GRADED
    score: float = 0.0
    max_score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    scores: dict = field(default_factory=dict)  # (notebook, grade_id) -> (auto, needs_manual)
    comments: dict = field(default_factory=dict)  # (notebook, grade_id) -> auto comment
    graded_notebooks: list[str] = field(default_factory=list)
    timestamp: str | None = None
    scratch: Path | None = None
    uid: int | None = None  # the uid its kernel ran as (isolated grading)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


EVENT_TEXT = {
    "cell_timeout": "time limit per cell",
    "notebook_timeout": "time limit per notebook",
    "kernel_died": "kernel died",
    "output_truncated": "output cut",
    "tampering": "TAMPERING",
    "suspicious": "note",
}


def _read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, f"{path.name} is not a text file (not UTF-8): re-download it from Jupyter"
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return None, (f"{path.name} is not valid notebook JSON ({exc}): it was damaged; "
                      "save it again from Jupyter (File > Download)")
    try:
        with warnings.catch_warnings():  # duplicate cell ids: normalise() renumbers them
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(raw), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no cells")
        for c in nb.cells:
            c.setdefault("metadata", {})
            c.source = c.get("source", "")
    except Exception as exc:  # noqa: BLE001 -- any damage means: not gradable
        return None, f"{path.name} is not a readable notebook ({exc.__class__.__name__}: {exc})"
    return nb, None


def _kernel_env(run: Path, limits: sandbox.Limits, quick: bool, isolated: bool) -> dict:
    """What the student's kernel sees: nothing of the grader's environment but the basics."""
    home = run / "home"
    env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin",
                                    "/usr/bin", "/bin"]),
           "HOME": str(home), "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(home / ".mpl"),
           "IPYTHONDIR": str(home / ".ipython"), "TMPDIR": "/tmp", "PYTHONNOUSERSITE": "1",
           "PSML_DATA": str(home / "psml-data")}
    for k, v in os.environ.items():
        if k.startswith(("OMPI_", "TF_", "LC_", "PSML_")) or k in ("LANG", "TZ"):
            env[k] = v
    data = os.environ.get("PSML_DATA")
    if data and os.path.isdir(data) and (not isolated or os.stat(data).st_mode & 0o005 == 5):
        env["PSML_DATA"] = data  # a data cache everyone may read (else the offline subset)
    env.pop("PSML_GRADE_EVENTS", None)
    if quick:
        env["PSML_QUICK"] = "1"
    return env


class Grader:
    """Grades submissions of one assignment; one instance per ``psml grade`` run."""

    def __init__(self, course: Course, prep: Prepared, limits: sandbox.Limits, work: Path,
                 isolate: bool = True, quick: bool = True, uid_base: int = 3_100_000):
        self.course, self.prep, self.limits, self.work = course, prep, limits, work
        self.isolated = isolate and sandbox.can_isolate()
        self.quick, self.uid_base = quick, uid_base
        self._n = 0
        self._lock = threading.Lock()

    def _next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    # the scratch course of one submission -------------------------------------------------
    def _scratch(self, sub: Submission, n: int, uid: int) -> tuple[Path, list[str], dict]:
        a = self.prep.assignment
        s = self.work / f"{n:04d}-{sub.student}"
        course = s / "course"
        dest = course / "submitted" / sub.student / a
        dest.mkdir(parents=True)
        (course / "autograded").mkdir()
        shutil.copy(self.prep.template_db, course / "gradebook.db")
        shutil.copytree(self.prep.data_dir, course / "source" / a)
        reasons, found = [], {}
        present = {p.name: p for p in sorted(sub.folder.rglob("*.ipynb"))
                   if ".ipynb_checkpoints" not in p.parts}
        top = {p.stem: p for p in sub.folder.glob("*.ipynb")}
        for name, rel in self.prep.release.items():
            path = top.get(name)
            if path is None:  # moved into a subfolder, or renamed: find it by its cells
                rel_ids = {_gid(c) for c in rel.cells if _gid(c)}
                for p in present.values():
                    if p.stem in self.prep.release and p.parent == sub.folder:
                        continue
                    nb, _ = _read_notebook(p)
                    if nb is not None and rel_ids & {_gid(c) for c in nb.cells}:
                        path = p
                        reasons.append(f"{name}.ipynb was missing; graded "
                                       f"{p.relative_to(sub.folder)} in its place")
                        break
            if path is None:
                reasons.append(f"{name}.ipynb is missing: 0 points for it")
                continue
            nb, problem = _read_notebook(path)
            if problem:
                reasons.append(problem + ": 0 points for it")
                continue
            fixed, repairs = normalise(nb, rel)
            reasons += [f"{name}: {r}" for r in repairs]
            nbformat.write(fixed, dest / f"{name}.ipynb")
            found[name] = path
        used = {p.resolve() for p in found.values()}
        for p in present.values():
            if p.resolve() not in used and p.stem not in self.prep.release:
                reasons.append(f"extra notebook {p.relative_to(sub.folder)} was ignored")
        size = 0
        for p in sorted(sub.folder.rglob("*")):  # the student's own files (data, images)
            if p.is_file() and p.suffix != ".ipynb" and ".ipynb_checkpoints" not in p.parts:
                size += p.stat().st_size
                if size > MAX_EXTRA_FILES_MB * 2**20:
                    reasons.append(f"files beyond {MAX_EXTRA_FILES_MB} MB were not copied")
                    break
                target = dest / p.relative_to(sub.folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, target)
        run = s / "run"
        (run / "home").mkdir(parents=True)
        rt = s / "runtime"
        rt.mkdir()
        kdir = s / "jupyter" / "kernels" / "psml-sandbox"
        kdir.mkdir(parents=True)
        (kdir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "psml.sandbox", str(s / "spec.json"), "-f",
                     "{connection_file}"],
            "display_name": "psml (grading sandbox)", "language": "python"}))
        work_dir = course / "autograded" / sub.student / a
        spec = {"uid": uid, "isolate": self.isolated, "python": sys.executable,
                "run_dir": str(run), "limits": self.limits.__dict__,
                "env": _kernel_env(run, self.limits, self.quick, self.isolated),
                "hide": [str(p) for p in (self.course.source, self.course.submitted,
                                          self.course.autograded, self.course.feedback,
                                          self.work, self.course.db_path) if p],
                "tmpfs": ["/tmp", "/var/tmp", "/dev/shm"]}
        # The kernel's Python and psml stay visible even when they live under a covered
        # path (a course checked out under /tmp, say): bound back after the covering.
        runtime = [sys.prefix, sys.base_prefix, str(Path(__file__).resolve().parent)]
        covered = [Path(c) for c in spec["hide"] + spec["tmpfs"]]
        spec["keep"] = [str(run), str(work_dir)] + sorted(
            {r for r in runtime if any(Path(r).is_relative_to(c) for c in covered)})
        (s / "spec.json").write_text(json.dumps(spec))
        lim = self.course.config.get("LimitOutput", {})
        (course / "nbgrader_config.py").write_text(SCRATCH_CONFIG.format(
            course_id=self.course.course_id, db_url=f"sqlite:///{course / 'gradebook.db'}",
            cell_timeout=self.limits.cell_timeout or -1,
            notebook_timeout=self.limits.notebook_timeout,
            max_output_bytes=self.limits.output_kb * 1024,
            max_lines=lim.get("max_lines", 1000), max_traceback=lim.get("max_traceback", 100),
            ipc=str(run / "ipc")))
        ts = sub.folder / "timestamp.txt"
        if ts.is_file():
            shutil.copy(ts, dest / "timestamp.txt")
        if self.isolated:
            # root-only except the way to the kernel's own folders (owned by its uid)
            for p in (s, course, course / "autograded"):
                os.chmod(p, 0o711)
            for p in (course / "submitted", course / "source", rt, s / "jupyter"):
                os.chmod(p, 0o700)
            for p in (course / "gradebook.db", s / "spec.json", course / "nbgrader_config.py"):
                os.chmod(p, 0o600)
            for p in [run, *run.rglob("*")]:
                os.chown(p, uid, uid)
            os.chmod(run, 0o700)
        return s, reasons, found

    def grade(self, sub: Submission) -> Result:
        t0 = time.perf_counter()
        n = self._next()
        # a uid nobody else uses: this run's block (two runs at once differ) + this submission
        uid = self.uid_base + (os.getpid() % 4096) * 1000 + n % 1000
        res = Result(sub.student, max_score=self.prep.max_score, uid=uid)
        ts = sub.folder / "timestamp.txt"
        res.timestamp = ts.read_text().strip() if ts.is_file() else None
        try:
            s, reasons, found = self._scratch(sub, n, uid)
        except Exception as exc:  # noqa: BLE001 -- one bad submission never stops a batch
            res.status, res.reasons = FAILED, [f"could not prepare the submission: {exc}"]
            res.seconds = time.perf_counter() - t0
            return res
        res.scratch, res.reasons = s, reasons
        if not found:
            res.status = FAILED
            res.reasons.append("no notebook could be graded")
        else:
            try:
                self._autograde(sub, s, uid, res, len(found))
            except Exception as exc:  # noqa: BLE001 -- one bad submission never stops a batch
                res.status = FAILED
                res.reasons.append(f"grader error: {exc.__class__.__name__}: {exc}")
        res.seconds = time.perf_counter() - t0
        return res

    def _autograde(self, sub: Submission, s: Path, uid: int, res: Result, n_nb: int) -> None:
        a, course = self.prep.assignment, s / "course"
        events = s / "events.jsonl"
        env = tool_env()
        env.update({"JUPYTER_PATH": str(s / "jupyter"), "JUPYTER_RUNTIME_DIR": str(s / "runtime"),
                    sandbox.EVENTS_ENV: str(events), "PYTHONWARNINGS": "ignore"})
        if self.quick:
            env["PSML_QUICK"] = "1"
        hard = self.limits.for_nbgrader_process() * n_nb + 120  # + feedback
        cmd = [sys.executable, "-m", "psml.grading_execute", a, sub.student]
        with open(s / "autograde.log", "w") as log:
            p = subprocess.Popen(cmd, cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT,
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
        seen = set()
        for line in (events.read_text().splitlines() if events.exists() else []):
            ev = json.loads(line)
            text = f"{EVENT_TEXT.get(ev['kind'], ev['kind'])}: {ev['detail']}"
            if text not in seen:
                seen.add(text)
                res.reasons.append(text)
                if ev["kind"] == "tampering":
                    res.status = FLAGGED
        self._read_scores(course, sub.student, res)
        if rc != 0 and not res.graded_notebooks:
            res.status = FAILED
            tail = (s / "autograde.log").read_text()[-3000:]
            msg = [ln for ln in tail.splitlines() if "[ERROR]" in ln or "Error" in ln]
            res.reasons.append("nbgrader could not grade it: "
                               + (msg[-1].strip() if msg else f"exit code {rc}"))
        elif rc == 2:
            res.reasons.append("nbgrader could not write the feedback (see autograde.log)")

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
                    res.scores[(nb.name, g.name)] = (g.auto_score, g.needs_manual_grade)
                for c in nb.comments:
                    res.comments[(nb.name, c.name)] = c.auto_comment
        if res.status == FLAGGED and any("passing" in r for r in res.reasons):
            # scores cannot be trusted: 0 and left for the instructor to look at
            res.scores = {k: (0.0, True) for k in res.scores}
        res.score = float(sum(v[0] or 0 for v in res.scores.values()))

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
                    auto, manual = res.scores.get((nb.name, g.name), (0.0, False))
                    g.auto_score, g.needs_manual_grade = auto, manual
                for c in nb.comments:
                    c.auto_comment = res.comments.get((nb.name, c.name))
                nb.flagged = res.status == FLAGGED
            gb.db.commit()
        for kind, dest_root in (("autograded", self.course.autograded),
                                ("feedback", self.course.feedback)):
            dest = dest_root / res.student / a
            if dest.exists():
                shutil.rmtree(dest)
            src = (res.scratch / "course" / kind / res.student / a) if res.scratch else None
            if src is not None and src.is_dir():
                shutil.copytree(src, dest, symlinks=True)
            elif kind == "feedback":
                dest.mkdir(parents=True)
        self._write_feedback_notes(res, self.course.feedback / res.student / a)

    def _write_feedback_notes(self, res: Result, folder: Path) -> None:
        """Every problem the grader found, at the top of each feedback page."""
        items = "".join(f"<li>{escape(r)}</li>" for r in res.reasons)
        banner = ("<div style='border:2px solid #c60;padding:.5em 1em;margin:1em;"
                  "background:#fff4e5;font-family:sans-serif'><b>Notes from the grader "
                  f"(psml grade: {res.status})</b><ul>{items}</ul></div>") if res.reasons else ""
        for name in self.prep.release:
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
            + "".join(f"- {r}\n" for r in res.reasons))


# --------------------------------------------------------------------------------------------
# the whole batch


def grade_batch(course: Course, assignment: str, subs: list[Submission],
                limits: sandbox.Limits, workers: int = 2, isolate: bool = True,
                quick: bool = True, uid_base: int = 3_100_000, work: Path | None = None,
                keep_scratch: bool = False, progress: bool = True,
                export: bool = True) -> list[Result]:
    """Grade ``subs`` in parallel and merge the results; returns one Result per submission."""
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


def summary_table(results: list[Result], width: int = 70) -> str:
    rows = [("student", "status", "score", "time", "reason")]
    for r in results:
        reason = r.reason or "-"
        rows.append((r.student, r.status, f"{r.score:g}/{r.max_score:g}", f"{r.seconds:.1f}s",
                     reason if len(reason) <= width else reason[:width - 1] + "…"))
    w = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(row[i].ljust(w[i]) for i in range(4)) + "  " + row[4] for row in rows]
    counts = {s: sum(r.status == s for r in results) for s in (GRADED, FLAGGED, FAILED)}
    lines.append(f"{len(results)} submissions: " + ", ".join(f"{v} {k}" for k, v in
                                                               counts.items()))
    return "\n".join(lines)


def write_summary(results: list[Result], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "status", "score", "max_score", "seconds", "reason"])
        for r in results:
            w.writerow([r.student, r.status, f"{r.score:g}", f"{r.max_score:g}",
                        f"{r.seconds:.1f}", r.reason])


# --------------------------------------------------------------------------------------------
# command line


def _grade(args) -> int:
    try:
        course = Course.load(Path(args.course) if args.course else _find_course())
        cfg = sandbox.load_grader_config(course.root, workers=args.workers)
        limits = cfg.limits(cell_timeout=args.cell_timeout, notebook_timeout=args.timeout,
                            memory_mb=args.memory_mb, cpu_s=args.cpu_s,
                            max_procs=args.max_procs, output_kb=args.output_kb,
                            network=True if args.network else None)
        if not cfg.sandbox or args.no_sandbox:
            isolate = False
        else:
            isolate = True
        if isolate and not sandbox.can_isolate():
            print("note: not root, so kernels run as you: time, memory, CPU and output "
                  "limits apply, but not the network/file-system isolation "
                  "(docs/grading.md)", file=sys.stderr)
        subs = collect(course, args.assignment, Path(args.source) if args.source else None,
                       args.exchange, args.student or None)
        if not subs:
            raise GradingError(f"no submissions of {args.assignment} in {course.submitted} "
                               "(use --from DIR or --exchange)")
        results = grade_batch(course, args.assignment, subs, limits, cfg.workers, isolate,
                              cfg.quick, cfg.uid_base,
                              Path(args.work) if args.work else None, args.keep_scratch)
    except GradingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(results))
    out = course.root / "grading-summary.csv"
    write_summary(results, out)
    print(f"grades: {course.root / 'grades.csv'}   summary: {out}   "
          f"feedback: {course.feedback}/<student>/{args.assignment}/")
    return 0


def _find_course() -> Path:
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / "nbgrader_config.py").is_file():
            return d
    from psml.course import course_root

    return course_root()


def add_parser(sub) -> None:
    p = sub.add_parser("grade", help="autograde a class with nbgrader: parallel, isolated, "
                                     "limited; feedback and grades.csv")
    p.add_argument("assignment", help="assignment id, e.g. 01-numpy-vectorization")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--from", dest="source", metavar="DIR",
                     help="folder of <student>/<assignment>/, <student>/*.ipynb or "
                          "<student>.ipynb (copied into submitted/)")
    src.add_argument("--exchange", action="store_true",
                     help="first run `nbgrader collect` from the exchange")
    p.add_argument("--student", action="append", help="only this student (repeatable)")
    p.add_argument("--workers", "-j", type=int, help="parallel graders (default 2, "
                   "c.PsmlGrader.workers)")
    p.add_argument("--cell-timeout", type=int, help="s per cell")
    p.add_argument("--timeout", type=int, help="s per notebook")
    p.add_argument("--memory-mb", type=int, help="memory (address space) per kernel")
    p.add_argument("--cpu-s", type=int, help="CPU seconds per kernel process")
    p.add_argument("--max-procs", type=int, help="processes+threads per submission")
    p.add_argument("--output-kb", type=int, help="output kept per notebook")
    p.add_argument("--network", action="store_true", help="let student code use the network")
    p.add_argument("--no-sandbox", action="store_true",
                   help="no namespaces/own uid even as root (limits still apply)")
    p.add_argument("--course", help="course folder (default: found from here)")
    p.add_argument("--work", help="scratch folder (default: a new temp dir)")
    p.add_argument("--keep-scratch", action="store_true", help="keep scratch courses")
    p.set_defaults(func=_grade)
