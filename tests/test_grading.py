"""``psml grade``: a class of bad submissions graded in one parallel batch, safely.

Fast unit tests of the pieces come first (normalising, pasted cells, events, feedback
sanitising, scoring, killing a uid, collecting, config). Then ONE session-scoped batch grades
the whole corpus (tests/grading_corpus.py) of a real assignment with 2 workers and short
limits; many small tests read its results (outcome per case, per-cell scores, feedback pages,
gradebook, files). A second, small batch checks the noisy-but-correct case on a TensorFlow
unit; a third one a broken environment (the canary). Serial vs parallel scores and scores
under a CPU hog are compared by benchmarks/grading.py, not here.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import html
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from grading_corpus import FIXTURE, RUBRIC_LINE, fixture_course, make_corpus
from nbtools import ROOT

from psml import course as psml_course
from psml import grading
from psml.grading import events, feedback, runner, sandbox, scoring

REAL = "01-numpy-vectorization"  # a real assignment with a release, for the corpus
KERAS = "05-keras-mlp"           # a TensorFlow unit, for the noisy-but-correct case
LIMITS = grading.Limits(cell_timeout=20, notebook_timeout=240, memory_mb=3072, cpu_s=300,
                        max_procs=64, output_kb=512, file_mb=64)
CASES = ["good", "untouched", "memory_hog", "fork_bomb", "huge_output", "noisy",
         "solution_exception", "restructured", "edited_tests", "showtraceback", "monkeypatch",
         "edited_setup", "wrong_kernelspec", "script_output", "pasted_cells", "corrupt_json",
         "missing_notebook", "renamed_notebook", "write_outside", "read_outside", "network"]


# ----------------------------------------------------------------------------- unit tests


@pytest.fixture
def fixture_nbs(tmp_path):
    course = fixture_course(tmp_path, ROOT)
    src = nbformat.read(course / "solutions" / FIXTURE / f"{FIXTURE}.ipynb", 4)
    rel = copy.deepcopy(src)
    for c in rel.cells:  # a release by hand: stubs instead of solutions, as nbgrader does
        if c.metadata.get("nbgrader", {}).get("solution"):
            c.source = re.sub(r" *### BEGIN SOLUTION.*### END SOLUTION",
                              "    raise NotImplementedError()", c.source, flags=re.S)
    return src, rel


def _ids(nb):
    return [grading.gid(c) for c in nb.cells if grading.gid(c)]


def test_normalise_repairs_structure(fixture_nbs):
    src, rel = fixture_nbs
    nb = copy.deepcopy(src)
    cell = {grading.gid(c): c for c in nb.cells if grading.gid(c)}
    nb.cells.remove(cell["test_add"])
    nb.cells.insert(0, cell["test_add"])                                   # moved
    nb.cells.insert(nb.cells.index(cell["add"]), copy.deepcopy(cell["add"]))  # duplicated
    cell["test_square"].cell_type = "markdown"                             # retyped
    nb.cells.remove(cell["square"])                                        # deleted
    nb.cells.append(nbformat.v4.new_code_cell("helper = 1"))  # the student's own cell
    nb.metadata["kernelspec"] = {"name": "python2", "display_name": "Py2"}
    fixed, repairs = grading.normalise(nb, rel)
    text = "\n".join(repairs)
    assert _ids(fixed) == _ids(rel), f"cells not in the release order: {_ids(fixed)}"
    for word in ("moved", "'add' appears 2 times", "'square' was deleted",
                 "changed from code to markdown", "kernel 'python2'"):
        assert word in text, f"no repair note with {word!r}; got:\n{text}"
    cells = {grading.gid(c): c for c in fixed.cells if grading.gid(c)}
    assert "np.add" in cells["add"].source, "the student's solution was lost"
    assert "raise NotImplementedError()" in cells["square"].source, "deleted -> the stub"
    assert cells["test_square"].cell_type == "code"
    assert any(c.source == "helper = 1" for c in fixed.cells), "the student's own cell went"
    where = [c.source.split("\n")[0] for c in fixed.cells]
    assert where.index("import numpy as np") < where.index("def add(a, b):"), (
        f"the imports were dragged along by the moved test cell: {where}")
    assert fixed.metadata.kernelspec.name == "psml"
    assert len({c.id for c in fixed.cells}) == len(fixed.cells), "cell ids not unique"


def test_normalise_keeps_a_clean_submission(fixture_nbs):
    src, rel = fixture_nbs
    fixed, repairs = grading.normalise(src, rel)
    assert repairs == [], f"a clean submission got repair notes: {repairs}"
    assert [c.source for c in fixed.cells if grading.gid(c) in ("add", "square")] == \
        [c.source for c in src.cells if grading.gid(c) in ("add", "square")]
    assert len(fixed.cells) == len(src.cells) and _ids(fixed) == _ids(rel)


def test_edited_test_cell_is_noted(fixture_nbs):
    src, rel = fixture_nbs
    nb = copy.deepcopy(rel)
    nb.cells[3].source = ""
    _, repairs = grading.normalise(nb, rel)
    assert any("test cell 'test_add' was edited" in r for r in repairs), repairs


def test_pasted_cells_are_matched_by_content(fixture_nbs):
    src, rel = fixture_nbs
    pasted = copy.deepcopy(src)
    for c in pasted.cells:
        c.metadata.pop("nbgrader", None)
    pasted.cells.insert(3, nbformat.v4.new_code_cell("x = 1  # a helper of the student's"))
    fixed, repairs = grading.normalise(pasted, rel)
    assert any("matched to the release by content" in r for r in repairs), repairs
    assert not any("deleted" in r for r in repairs), f"pasted cells counted as deleted: {repairs}"
    cells = {grading.gid(c): c for c in fixed.cells if grading.gid(c)}
    assert "np.add" in cells["add"].source and "** 2" in cells["square"].source
    # ambiguous: two candidate cells with the same first line -> not guessed
    twice = copy.deepcopy(pasted)
    add = next(c for c in twice.cells if c.source.startswith("def add"))
    twice.cells.insert(twice.cells.index(add), copy.deepcopy(add))
    fixed, repairs = grading.normalise(twice, rel)
    assert any("'add' was deleted" in r for r in repairs), (
        f"an ambiguous pasted cell was matched: {repairs}")


def test_corrupt_notebook_gets_a_clear_reason(tmp_path):
    p = tmp_path / "x.ipynb"
    p.write_text('{"cells": [')
    nb, problem = grading.read_notebook(p)
    assert nb is None and "not valid notebook JSON" in problem, problem
    p.write_bytes(b"\xff\xfe\x00junk")
    assert "not UTF-8" in grading.read_notebook(p)[1]


def test_half_written_event_line_is_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    events.write_event(str(path), events.Kind.CELL_TIMEOUT, "a cell ran longer than 20 s")
    with open(path, "a") as f:
        f.write('{"kind": "kernel_di')  # the grading process was killed mid-write
    evs, bad = events.read_events(path)
    assert [e.kind for e in evs] == [events.Kind.CELL_TIMEOUT] and bad == 1, (evs, bad)
    assert evs[0].text.startswith("time limit per cell")


def test_underlying_error_is_the_real_one(tmp_path):
    log = tmp_path / "autograde.log"
    log.write_text("[INFO] Converting\nTraceback (most recent call last):\n  File \"x\", line 1\n"
                   "RuntimeError: Kernel died before replying to kernel_info\n"
                   "[ERROR] There was an error processing assignment. Please see the above "
                   "traceback for details.\n")
    assert runner.underlying_error(log) == ("RuntimeError: Kernel died before replying to "
                                            "kernel_info")


def _nb_with_outputs():
    test = nbformat.v4.new_code_cell(
        "assert f(1) == 1, 'visible check'\n### BEGIN HIDDEN TESTS\n"
        "assert f(-1) == 99, 'secret edge case'\n### END HIDDEN TESTS",
        metadata={"nbgrader": {"grade": True, "solution": False, "locked": True,
                               "grade_id": "t", "points": 1, "schema_version": 3}})
    test.outputs = [nbformat.v4.new_output(
        "error", ename="AssertionError", evalue="secret edge case",
        traceback=["\x1b[0;31mAssertionError\x1b[0m", "----> 3 assert f(-1) == 99"])]
    own = nbformat.v4.new_code_cell("display(HTML(...))")
    own.outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": "<script>alert('PWNED')</script><img src=x onerror=alert(1)>"}),
        nbformat.v4.new_output("display_data", data={"application/javascript": "alert(2)"})]
    md = nbformat.v4.new_markdown_cell("<details open><script>alert(3)</script></details>"
                                       "[x](javascript:alert(4))")
    nb = nbformat.v4.new_notebook(cells=[test, own, md])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    return nb


def test_feedback_hides_hidden_tests_and_is_inert():
    nb, _ = feedback.PsmlFeedback()(_nb_with_outputs(), {})  # as nbconvert calls it
    test, own, md = nb.cells
    assert "f(-1) == 99" not in test.source and "visible check" in test.source, test.source
    assert test.outputs[0].traceback == ["AssertionError: secret edge case"], (
        "the assertion message must stay, the traceback (hidden line) must go")
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter().from_notebook_node(nb)
    live = re.findall(r"<script[^>]*>[^<]*alert|<[^>]*onerror\s*=|href=\"javascript:", page, re.I)
    assert not live, f"student HTML/JS left live in the page: {live}"
    assert "widgets" not in nb.metadata, "widget state (it loads JavaScript) kept"
    assert "PWNED" in own.outputs[0].data["text/plain"], "the output should stay, as text"
    shown, _ = feedback.PsmlFeedback(show_hidden_tests=True)(_nb_with_outputs(), {})
    assert "f(-1) == 99" in shown.cells[0].source, "show_hidden_tests=True shows them"


def test_stderr_in_a_test_cell_costs_no_points():
    from nbgrader import utils

    scoring.score_by_exceptions()
    cell = nbformat.v4.new_code_cell("x", metadata={"nbgrader": {
        "grade": True, "solution": False, "grade_id": "t", "points": 3}})
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="DeprecationWarning")]
    assert utils.determine_grade(cell) == (3, 3), "stderr alone must not cost points"
    assert not utils.has_failed(cell)
    cell.outputs.append(nbformat.v4.new_output("error", ename="AssertionError", evalue="no",
                                               traceback=[]))
    assert utils.determine_grade(cell) == (0, 3), "an exception still scores 0"
    assert [o.output_type for o in cell.outputs] == ["stream", "error"], "outputs were changed"


def test_late_penalty_follows_the_course_policy():
    from traitlets.config import Config

    from psml.grading import late

    assert late.penalties(Config(), "s", 0, {"a": 3.0}) == {"a": None}
    assert late.penalties(Config(), "s", 60, {"a": 3.0}) == {"a": None}  # nbgrader's 'none'
    zero = Config({"LateSubmissionPlugin": {"penalty_method": "zero"}})
    assert late.penalties(zero, "s", 60, {"a": 3.0, "b": 0.0}) == {"a": 3.0, "b": 0.0}
    assert late.penalties(zero, "s", 0, {"a": 3.0}) == {"a": None}  # on time: no penalty
    assert [late.describe(t) for t in (30, 59 * 60, 3700, 90061)] == [
        "30 s", "59 min", "1 h 1 min", "1 d 1 h"]


@pytest.mark.skipif(not grading.can_isolate(), reason="needs root (CI runs as root)")
def test_kill_uid_from_a_worker_thread():
    uid = 3_099_000 + threading.get_ident() % 1000
    procs = [subprocess.Popen(["sleep", "60"], user=uid, group=uid, extra_groups=[])
             for _ in range(3)]
    t = threading.Thread(target=sandbox.kill_uid, args=(uid,))
    t.start()
    t.join(30)
    assert not sandbox.uid_processes(uid), "processes of the uid survived"
    assert all(p.wait(5) == -9 for p in procs)


def test_collect_from_a_folder_of_notebooks(tmp_path):
    course = grading.Course.load(fixture_course(tmp_path, ROOT))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "alice.ipynb").write_text("{}")
    (inbox / "bob").mkdir()
    (inbox / "bob" / "whatever.ipynb").write_text("{}")
    subs = grading.collect(course, FIXTURE, inbox)
    assert [s.student for s in subs] == ["alice", "bob"]
    assert (course.submitted / "alice" / FIXTURE / f"{FIXTURE}.ipynb").is_file()
    (inbox / "bad name!.ipynb").write_text("{}")
    with pytest.raises(grading.GradingError, match="not usable as a folder name"):
        grading.collect(course, FIXTURE, inbox)


def test_limits_from_nbgrader_config_and_command_line(tmp_path):
    course = fixture_course(tmp_path, ROOT)
    with open(course / "nbgrader_config.py", "a") as f:
        f.write("\nc.PsmlGrader.memory_mb = 1234\nc.PsmlGrader.workers = 3\n")
    c = grading.Course.load(course)
    cfg = c.settings()
    assert cfg.workers == 3 and cfg.limits().memory_mb == 1234
    assert cfg.limits(memory_mb=99, cpu_s=None).memory_mb == 99
    assert c.settings(workers=1).workers == 1


def test_cli_rejects_bad_input(tmp_path):
    course = fixture_course(tmp_path, ROOT)
    r = subprocess.run([sys.executable, "-m", "psml", "grade", FIXTURE, "--course", str(course)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no submissions" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "psml", "grade", "00-nope", "--course",
                        str(course), "--from", str(tmp_path / "missing")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "is not a folder" in r.stderr, r.stderr


# ---------------------------------------------------------------- the corpus, one batch


def _course_with(tmp: Path, assignment: str) -> Path:
    course = tmp / "course"
    for d in ("solutions", "exercises"):
        shutil.copytree(ROOT / d / assignment, course / d / assignment)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    return course


def _db_rows(course: Path, assignment: str) -> dict:
    """(student, notebook, grade_id) -> auto_score, from the course gradebook."""
    from nbgrader.api import Gradebook

    rows = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for sub in gb.find_assignment(assignment).submissions:
            for nb in sub.notebooks:
                for g in nb.grades:
                    rows[(sub.student.id, nb.name, g.name)] = g.auto_score
    return rows


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _points(assignment: str) -> dict[str, float]:
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", 4)
    return {grading.gid(c): float(c.metadata["nbgrader"].get("points", 0)) for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"}


def _cell_scores(result) -> dict[str, float]:
    return {g: s.auto for (_, g), s in result.scores.items()}


@pytest.fixture(scope="session")
def batch(tmp_path_factory):
    assert grading.can_isolate(), ("the grading corpus checks the sandbox, which needs root "
                                   "(CI runs as root): run this test as root")
    tmp = tmp_path_factory.mktemp("grading")
    course_dir = _course_with(tmp, REAL)
    server = socket.create_server(("127.0.0.1", 0))  # student code must not reach it
    server.settimeout(0)
    expect = make_corpus(course_dir, REAL, tmp / "inbox", port=server.getsockname()[1],
                         other_checkout=ROOT)  # this checkout: another course on the machine
    course = grading.Course.load(course_dir)
    subs = grading.collect(course, REAL, tmp / "inbox")
    protected = {p: _sha(p) for p in [course_dir / "solutions" / REAL / f"{REAL}.ipynb",
                                      course.submitted / "good" / REAL / f"{REAL}.ipynb"]}
    results = grading.grade_batch(course, REAL, subs, LIMITS, workers=2, progress=False)
    try:
        server.accept()
        reached = True
    except BlockingIOError:
        reached = False
    server.close()
    return {"tmp": tmp, "network_reached": reached, "course": course, "expect": expect,
            "protected": protected, "results": {r.student: r for r in results}}


@pytest.mark.slow
@pytest.mark.parametrize("student", CASES)
def test_outcome(batch, student):
    exp, r = batch["expect"][student], batch["results"][student]
    auto_max = sum(_points(REAL).values())  # written answers wait for the instructor
    want = {"max": auto_max, "zero": 0.0}.get(exp.score)
    ok_score = (r.score == want) if want is not None else (0 <= r.score < auto_max)
    assert r.status == exp.status and ok_score and exp.reason in r.reason, (
        f"{student}: expected {exp}, got status={r.status} score={r.score}/{r.max_score} "
        f"reason={r.reason!r}")
    assert r.fault is None, f"{student}: failed for a reason that is not the student's: {r.fault}"
    if exp.score == "max" and exp.reason == "":
        assert not r.reasons, f"{student}: a clean submission got notes: {r.reasons}"


@pytest.mark.slow
def test_noisy_but_correct_keeps_its_points(batch):
    """Issue 16: warnings on and stderr inside test cells cost nothing; the one wrong
    function's test (which also warns) scores 0."""
    points, got = _points(REAL), _cell_scores(batch["results"]["noisy"])
    wrong = [g for g in points if got[g] != points[g]]
    assert wrong == [list(points)[-1]], f"only the last test should fail: {got} vs {points}"
    nb = nbformat.read(batch["course"].autograded / "noisy" / REAL / f"{REAL}.ipynb", 4)
    stderr = [grading.gid(c) for c in nb.cells if grading.gid(c) in points and any(
        o.get("name") == "stderr" for o in c.get("outputs", []))]
    assert len(stderr) >= 2, f"the noisy test cells should have kept their stderr: {stderr}"


@pytest.mark.slow
def test_monkeypatching_gains_nothing_and_is_reported(batch):
    r = batch["results"]["monkeypatch"]
    assert r.score == 0 and r.status == "flagged", (r.score, r.status)
    for name in ("numpy.allclose", "psml.checks.assert_no_python_loops", "builtins.round"):
        assert name in r.reason, f"{name} not reported as restored: {r.reason}"


@pytest.mark.slow
def test_limits_stopped_the_hogs(batch):
    ag = batch["course"].autograded
    text = (ag / "memory_hog" / REAL / f"{REAL}.ipynb").read_text()
    assert "MemoryError" in text, "the 64 GB allocation was not stopped by the memory limit"
    size = (ag / "huge_output" / REAL / f"{REAL}.ipynb").stat().st_size
    assert size < 4 * LIMITS.output_kb * 1024, f"huge output kept: {size} bytes"
    assert not sandbox.uid_processes(batch["results"]["fork_bomb"].uid), "fork bomb survived"


@pytest.mark.slow
def test_no_network(batch):
    assert not batch["network_reached"], "student code connected to the grading machine"


@pytest.mark.slow
def test_nothing_outside_a_submission_was_touched(batch):
    course = batch["course"]
    for p, digest in batch["protected"].items():
        assert _sha(p) == digest, f"{p} was changed by student code"
    for p in (course.root / "HACKED", Path("/tmp/psml-hacked"),
              course.autograded / "good" / "HACKED"):
        assert not p.exists(), f"student code wrote {p}"
    for kind in (course.autograded, course.feedback):  # the 50 MB file the run wrote
        big = [p for p in kind.rglob("*") if p.is_file() and p.stat().st_size > 20 * 2**20]
        assert not big, f"run outputs copied into {kind.name}/: {big}"
    # pages, notes, and the two files `nbgrader release_feedback` needs; nothing a run wrote
    allowed = {"grading-notes.txt", "timestamp.txt", "submission_secret.txt"}
    extra = [p.name for p in course.feedback.rglob("*") if p.is_file()
             and p.suffix != ".html" and p.name not in allowed]
    assert not extra, f"feedback/ holds more than pages and notes: {extra}"
    released = [d for d in course.feedback.glob("*/*") if (d / "timestamp.txt").is_file()]
    assert released, "no feedback folder has the timestamp.txt `nbgrader release_feedback` reads"


def _hidden_lines(assignment: str) -> list[str]:
    src = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", 4)
    text = "\n".join(c.source for c in src.cells)
    return [ln.strip() for ln in psml_course._blocks(text, "BEGIN HIDDEN TESTS",
                                                     "END HIDDEN TESTS") if len(ln.strip()) > 15]


@pytest.mark.slow
def test_feedback_leaks_no_hidden_test_and_is_inert(batch):
    course, hidden = batch["course"], _hidden_lines(REAL)
    assert hidden, f"{REAL} has no hidden tests to look for"
    for student, r in batch["results"].items():
        folder = course.feedback / student / REAL
        page = folder / f"{REAL}.html"
        assert page.is_file(), f"no feedback page for {student}"
        text = page.read_text()
        shown = html.unescape(re.sub(r"<[^>]+>", "", text))  # code is split into spans
        leaked = [ln for ln in hidden if ln in shown]
        assert not leaked, f"{student}: hidden tests in the feedback: {leaked[:3]}"
        live = re.findall(r"<[^>]*(?:on\w+\s*=|javascript:)[^>]*PWNED[^>]*>|<script[^>]*>[^<]*"
                          r"PWNED", text, re.I)
        assert not live, f"{student}: live student HTML/JS in the feedback: {live}"
        if r.reasons:
            assert "Notes from the grader" in text, f"{student}: reasons not in the feedback"
            notes = (folder / "grading-notes.txt").read_text()
            assert all(reason in notes for reason in r.reasons), notes
    assert "PWNED-SCRIPT" in (course.feedback / "script_output" / REAL / f"{REAL}.html"
                              ).read_text(), "the student's output should be shown, as text"


@pytest.mark.slow
def test_gradebook_matches_results_and_csv(batch):
    course, results = batch["course"], batch["results"]
    rows = _db_rows(course.root, REAL)
    per_student = {}
    for (student, _, _), score in rows.items():
        per_student[student] = per_student.get(student, 0) + (score or 0)
    assert set(per_student) == set(results), "students missing from the gradebook"
    for student, r in results.items():
        assert per_student[student] == pytest.approx(r.score), f"{student}: gradebook differs"
    import sqlite3

    con = sqlite3.connect(course.root / "gradebook.db")
    dup = con.execute("select student_id, count(*) from submitted_assignment "
                      "group by student_id, assignment_id having count(*) > 1").fetchall()
    assert not dup, f"duplicate submissions: {dup}"
    assert "psml-canary" not in per_student, "the canary was merged into the gradebook"
    with open(course.root / "grades.csv", newline="") as f:
        csv_scores = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}
    assert csv_scores == pytest.approx({s: r.score for s, r in results.items()})


@pytest.mark.slow
def test_rerun_is_idempotent_and_leaves_others_alone(batch):
    course = batch["course"]
    before = _db_rows(course.root, REAL)
    subs = grading.collect(course, REAL, students=["good"])
    results = grading.grade_batch(course, REAL, subs, LIMITS, workers=1, progress=False,
                                  canary=False)
    assert _db_rows(course.root, REAL) == before, "a re-run changed the gradebook"
    assert results[0].score == batch["results"]["good"].score


@pytest.mark.slow
def test_noisy_but_correct_on_a_tensorflow_unit(tmp_path):
    """Issue 16 on Keras: warnings inside test cells cost nothing, a wrong answer still 0."""
    course = grading.Course.load(_course_with(tmp_path, KERAS))
    make_corpus(course.root, KERAS, tmp_path / "inbox", only=["noisy"])
    [r] = grading.grade_batch(course, KERAS, grading.collect(course, KERAS, tmp_path / "inbox"),
                              grading.Limits(cell_timeout=120, notebook_timeout=600),
                              workers=1, progress=False, canary=False)  # 01's batch has one
    points, got = _points(KERAS), _cell_scores(r)
    wrong = [g for g in points if got[g] != points[g]]
    assert r.status == "graded" and wrong == [list(points)[-1]], (
        f"only the last test should fail: {got} vs {points}; reasons: {r.reason}")


# ------------------------------------------------------------ the command, end to end


@pytest.mark.slow
def test_cli_grades_a_folder_without_sandbox(tmp_path):
    """The command end to end, in the mode a non-root instructor gets (limits, no isolation),
    with a manually graded answer cell: its rubric goes to the instructor, not the student;
    and a due date the corpus missed by a day under the course's 'zero' late policy."""
    course = fixture_course(tmp_path, ROOT)
    make_corpus(course, FIXTURE, tmp_path / "inbox",
                only=["good", "untouched", "corrupt_json", "on_time"])
    # every corpus submission is stamped 2026-01-01 12:00 UTC; "on_time" a day earlier
    on_time = tmp_path / "inbox" / "on_time"
    shutil.copytree(tmp_path / "inbox" / "good", on_time)
    (on_time / FIXTURE / "timestamp.txt").write_text("2025-12-30 12:00:00.000000 UTC")
    with open(course / "nbgrader_config.py", "a") as f:
        f.write("\nc.LateSubmissionPlugin.penalty_method = 'zero'\n")
    subprocess.run([sys.executable, "-m", "nbgrader", "db", "assignment", "add", FIXTURE,
                    "--duedate=2025-12-31 12:00:00 UTC"], cwd=course, check=True,
                   capture_output=True)
    r = subprocess.run([sys.executable, "-m", "psml", "grade", FIXTURE, "--from",
                        str(tmp_path / "inbox"), "--no-sandbox", "--workers", "2",
                        "--cell-timeout", "30"], cwd=course, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 submissions: 3 graded, 0 flagged, 1 failed" in r.stdout, r.stdout
    assert "5/7 (+2 manual)" in r.stdout, f"manual points not shown as pending:\n{r.stdout}"
    assert "5/7 (-5 late) (+2 manual)" in r.stdout, f"late penalty not shown:\n{r.stdout}"
    with open(course / "grades.csv", newline="") as f:
        export = {row["student_id"]: row for row in csv.DictReader(f)}
    scores = {k: (float(v["raw_score"]), float(v["late_submission_penalty"]),
                  float(v["score"])) for k, v in export.items()}
    # late but kept: the raw score stands, the course's policy ('zero') takes it off
    assert scores == {"good": (5.0, 5.0, 0.0), "untouched": (0.0, 0.0, 0.0),
                      "corrupt_json": (0.0, 0.0, 0.0), "on_time": (5.0, 0.0, 5.0)}, scores
    with open(course / "grading-summary.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert "not valid notebook JSON" in rows["corrupt_json"]["reason"]
    assert rows["good"]["manual_points"] == "2"
    assert (rows["good"]["seconds_late"], rows["good"]["late_penalty"], rows["good"]["score"],
            rows["good"]["raw_score"]) == ("86400", "5", "0", "5"), rows["good"]
    assert rows["on_time"]["seconds_late"] == "0" and rows["on_time"]["score"] == "5"
    assert "submitted 1 d 0 h after the due date" in rows["good"]["reason"], rows["good"]
    notes = (course / "feedback" / "good" / FIXTURE / f"{FIXTURE}.html").read_text()
    assert "after the due date" in notes and "penalty 5 points" in notes, "no late note"
    assert RUBRIC_LINE in (course / "grading-rubrics.md").read_text(), "no rubric for the instructor"
    # ("good" submitted the source itself, model answer and rubric included)
    page = (course / "feedback" / "untouched" / FIXTURE / f"{FIXTURE}.html").read_text()
    assert "fixture-rubric-marker" not in page, "the rubric leaked into student feedback"


@pytest.mark.slow
def test_canary_stops_a_broken_environment(tmp_path):
    """A kernel that cannot start (here: a memory limit far too small) zeros nobody: the batch
    stops before any student, with the real error and a non-zero exit."""
    course = fixture_course(tmp_path, ROOT)
    make_corpus(course, FIXTURE, tmp_path / "inbox", only=["good"])
    r = subprocess.run([sys.executable, "-m", "psml", "grade", FIXTURE, "--from",
                        str(tmp_path / "inbox"), "--memory-mb", "40", "--cell-timeout", "20",
                        "--timeout", "40"], cwd=course, capture_output=True, text=True)
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    assert "instructor's solution got 0/5" in r.stderr and "no student was graded" in r.stderr, (
        r.stderr[-3000:])
    assert "see the above traceback" not in r.stderr.lower(), r.stderr[-3000:]
    assert not (course / "autograded" / "good").exists(), "a student was graded anyway"


# ------------------------------------------------------------ student side: nbgrader validate

RELEASES = sorted(p for p in (ROOT / "exercises").glob("[0-9][0-9]-*/[0-9][0-9]-*.ipynb"))


def _validate(nb: Path, cwd: Path) -> str:
    r = subprocess.run([sys.executable, "-m", "nbgrader", "validate", str(nb)], cwd=cwd,
                       capture_output=True, text=True, timeout=600)
    return r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("nb", RELEASES, ids=lambda p: p.parent.name)
def test_validate_fails_on_every_untouched_exercise(nb, tmp_path):
    work = tmp_path / nb.parent.name
    shutil.copytree(nb.parent, work)  # as a student has it: no course around it
    out = _validate(work / nb.name, tmp_path)
    assert "VALIDATION FAILED" in out, (f"`nbgrader validate` passed the untouched {nb.name}: "
                                        f"its tests must fail until solved:\n{out[-2000:]}")
    assert "NotImplementedError" in out, f"validate did not show the stubs failing:\n{out[-2000:]}"


def test_validate_passes_a_solved_noisy_notebook(tmp_path):
    """`nbgrader validate` in the course agrees with psml grade: stderr in a test is no error."""
    course = fixture_course(tmp_path, ROOT)
    path = course / "solutions" / FIXTURE / f"{FIXTURE}.ipynb"
    nb = nbformat.read(path, 4)
    add = next(c for c in nb.cells if grading.gid(c) == "add")
    add.source += ("\nimport sys, warnings\n_add = add\ndef add(a, b):\n"
                   "    warnings.warn('add: deprecated', DeprecationWarning)\n"
                   "    print('debug', file=sys.stderr)\n    return _add(a, b)\n")
    nbformat.write(nb, path)
    out = _validate(path, course)
    assert "Success! Your notebook passes all the tests." in out, out[-2000:]
