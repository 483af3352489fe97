"""``psml grade``: a class of bad submissions graded in one parallel batch, safely.

The corpus (tests/grading_corpus.py) is generated from a real assignment. One batch grades
all of it with 2 workers and short limits; each submission's outcome is asserted, the good one
keeps full marks, the gradebook is checked, a re-run changes nothing, serial grading gives the
same scores. Fast unit tests of the pieces (normalising, collecting, config) come first.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from grading_corpus import FIXTURE, fixture_course, make_corpus
from nbtools import ROOT

from psml import grading, sandbox

REAL = "01-numpy-vectorization"  # a real assignment with a release, for the corpus
LIMITS = sandbox.Limits(cell_timeout=20, notebook_timeout=240, memory_mb=3072, cpu_s=300,
                        max_procs=64, output_kb=512, file_mb=64)


# ----------------------------------------------------------------------------- unit tests


@pytest.fixture
def fixture_nbs(tmp_path):
    course = fixture_course(tmp_path, ROOT)
    src = nbformat.read(course / "solutions" / FIXTURE / f"{FIXTURE}.ipynb", 4)
    rel = copy.deepcopy(src)
    for c in rel.cells:  # a release by hand: stubs instead of solutions
        if c.metadata.get("nbgrader", {}).get("solution"):
            c.source = "raise NotImplementedError()"
    return src, rel


def _ids(nb):
    return [grading._gid(c) for c in nb.cells if grading._gid(c)]


def test_normalise_repairs_structure(fixture_nbs):
    src, rel = fixture_nbs
    nb = copy.deepcopy(src)
    cell = {grading._gid(c): c for c in nb.cells if grading._gid(c)}
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
    cells = {grading._gid(c): c for c in fixed.cells if grading._gid(c)}
    assert "np.add" in cells["add"].source, "the student's solution was lost"
    assert cells["square"].source == "raise NotImplementedError()", "deleted -> the stub"
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
    assert [c.source for c in fixed.cells if grading._gid(c) in ("add", "square")] == \
        [c.source for c in src.cells if grading._gid(c) in ("add", "square")]
    assert len(fixed.cells) == len(src.cells) and _ids(fixed) == _ids(rel)


def test_edited_test_cell_is_noted(fixture_nbs):
    src, rel = fixture_nbs
    nb = copy.deepcopy(rel)
    nb.cells[3].source = ""
    _, repairs = grading.normalise(nb, rel)
    assert any("test cell 'test_add' was edited" in r for r in repairs), repairs


def test_corrupt_notebook_gets_a_clear_reason(tmp_path):
    p = tmp_path / "x.ipynb"
    p.write_text('{"cells": [')
    nb, problem = grading._read_notebook(p)
    assert nb is None and "not valid notebook JSON" in problem, problem
    p.write_bytes(b"\xff\xfe\x00junk")
    assert "not UTF-8" in grading._read_notebook(p)[1]


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
    cfg = sandbox.load_grader_config(course)
    assert cfg.workers == 3 and cfg.limits().memory_mb == 1234
    assert cfg.limits(memory_mb=99, cpu_s=None).memory_mb == 99
    assert sandbox.load_grader_config(course, workers=1).workers == 1


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


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    assert sandbox.can_isolate(), ("the grading corpus checks the sandbox, which needs root "
                                   "(CI runs as root): run this test as root")
    tmp = tmp_path_factory.mktemp("grading")
    course_dir = _course_with(tmp, REAL)
    server = socket.create_server(("127.0.0.1", 0))  # student code must not reach it
    server.settimeout(0)
    expect = make_corpus(course_dir, REAL, tmp / "inbox", port=server.getsockname()[1])
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
    return {"tmp": tmp, "network_reached": reached, "course": course, "expect": expect, "protected": protected,
            "results": {r.student: r for r in results}}


def test_every_submission_has_the_expected_outcome(batch):
    problems = []
    for student, exp in sorted(batch["expect"].items()):
        r = batch["results"][student]
        want = {"max": r.max_score, "zero": 0.0}.get(exp.score)
        ok_score = (r.score == want) if want is not None else (0 <= r.score < r.max_score)
        if r.status != exp.status or not ok_score or exp.reason not in r.reason:
            problems.append(f"{student}: expected {exp}, got status={r.status} "
                            f"score={r.score}/{r.max_score} reason={r.reason!r}")
    assert not problems, "\n".join(problems)


def test_good_submission_keeps_full_marks(batch):
    r = batch["results"]["good"]
    assert r.status == "graded" and r.score == r.max_score > 0, (r.status, r.score, r.reason)


def test_limits_stopped_the_hogs(batch):
    ag = batch["course"].autograded
    text = (ag / "memory_hog" / REAL / f"{REAL}.ipynb").read_text()
    assert "MemoryError" in text, "the 64 GB allocation was not stopped by the memory limit"
    size = (ag / "huge_output" / REAL / f"{REAL}.ipynb").stat().st_size
    assert size < 4 * LIMITS.output_kb * 1024, f"huge output kept: {size} bytes"
    assert not sandbox.uid_processes(batch["results"]["fork_bomb"].uid), "fork bomb survived"


def test_no_network(batch):
    assert not batch["network_reached"], "student code connected to the grading machine"


def test_nothing_outside_a_submission_was_touched(batch):
    course = batch["course"]
    for p, digest in batch["protected"].items():
        assert _sha(p) == digest, f"{p} was changed by student code"
    for p in (course.root / "HACKED", Path("/tmp/psml-hacked"),
              course.autograded / "good" / "HACKED"):
        assert not p.exists(), f"student code wrote {p}"


def test_bad_submissions_get_reasons_in_their_feedback(batch):
    course, results = batch["course"], batch["results"]
    for student, r in results.items():
        folder = course.feedback / student / REAL
        page = folder / f"{REAL}.html"
        assert page.is_file(), f"no feedback page for {student}"
        if r.reasons:
            html = page.read_text()
            assert "Notes from the grader" in html, f"{student}: reasons not in the feedback"
            notes = (folder / "grading-notes.txt").read_text()
            assert all(reason in notes for reason in r.reasons), notes


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
    with open(course.root / "grades.csv", newline="") as f:
        csv_scores = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}
    assert csv_scores == pytest.approx({s: r.score for s, r in results.items()})


def test_rerun_is_idempotent_and_leaves_others_alone(batch):
    course = batch["course"]
    before = _db_rows(course.root, REAL)
    again = ["good", "solution_exception", "corrupt_json"]
    subs = grading.collect(course, REAL, students=again)
    results = grading.grade_batch(course, REAL, subs, LIMITS, workers=2, progress=False)
    after = _db_rows(course.root, REAL)
    assert after == before, "a re-run changed the gradebook"
    for r in results:
        assert r.score == batch["results"][r.student].score


def test_serial_grading_gives_the_same_scores(batch, tmp_path):
    some = ["good", "untouched", "solution_exception", "deleted_cells", "duplicated_cells"]
    course = grading.Course.load(_course_with(tmp_path, REAL))
    make_corpus(course.root, REAL, tmp_path / "inbox", only=some)
    subs = grading.collect(course, REAL, tmp_path / "inbox")
    serial = grading.grade_batch(course, REAL, subs, LIMITS, workers=1, progress=False)
    assert {r.student: r.score for r in serial} == {
        s: batch["results"][s].score for s in some}


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


def test_validate_passes_a_solved_notebook(tmp_path):
    course = fixture_course(tmp_path, ROOT)
    out = _validate(course / "solutions" / FIXTURE / f"{FIXTURE}.ipynb", tmp_path)
    assert "Success! Your notebook passes all the tests." in out, out[-2000:]


@pytest.mark.slow
def test_cli_grades_a_folder_without_sandbox(tmp_path):
    """The command end to end, in the mode a non-root instructor gets (limits, no isolation)."""
    course = fixture_course(tmp_path, ROOT)
    make_corpus(course, FIXTURE, tmp_path / "inbox", only=["good", "untouched", "corrupt_json"])
    r = subprocess.run([sys.executable, "-m", "psml", "grade", FIXTURE, "--from",
                        str(tmp_path / "inbox"), "--no-sandbox", "--workers", "2",
                        "--cell-timeout", "30"], cwd=course, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3 submissions: 2 graded, 0 flagged, 1 failed" in r.stdout, r.stdout
    with open(course / "grades.csv", newline="") as f:
        scores = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}
    assert scores == {"good": 5.0, "untouched": 0.0, "corrupt_json": 0.0}, scores
    with open(course / "grading-summary.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert "not valid notebook JSON" in rows["corrupt_json"]["reason"]
    assert (course / "feedback" / "good" / FIXTURE / f"{FIXTURE}.html").is_file()
