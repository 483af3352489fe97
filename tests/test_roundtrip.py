"""nbgrader round trip per assignment, in a throw-away course directory.

A student who submits the solution gets every auto-graded point (manually graded answer
cells wait for the instructor) (and nbgrader ran it top to bottom
without an error: this is the solution notebooks' execution test); one who submits the
untouched release gets 0; feedback is generated; the exported CSV holds exactly those scores.
"""

import time

import nbformat
import pytest
from nbtools import (ROOT, error_outputs, make_course, nbgrader, points, read_grades,
                     record_time, submit)
from psml.course import assignments

ASSIGNMENTS = assignments(ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_roundtrip(assignment, tmp_path):
    course = make_course(tmp_path, assignment)
    for student in ("solved", "untouched"):
        nbgrader("db", "student", "add", student, cwd=course)
    nbgrader("generate_assignment", assignment, cwd=course)
    sources = sorted((course / "solutions" / assignment).glob("*.ipynb"))
    released = sorted((course / "exercises" / assignment).glob("*.ipynb"))
    assert [p.name for p in sources] == [p.name for p in released]
    submit(course, "solved", assignment, sources)
    submit(course, "untouched", assignment, released)

    t0 = time.perf_counter()
    nbgrader("autograde", assignment, "--student=solved", cwd=course)
    for src in sources:  # nbgrader ran the whole solution: record its quick-mode time
        record_time(ROOT / "solutions" / assignment / src.name, time.perf_counter() - t0)
        graded = nbformat.read(course / "autograded" / "solved" / assignment / src.name, 4)
        assert not error_outputs(graded), f"{src.name} raised: {error_outputs(graded)}"
    nbgrader("autograde", assignment, "--student=untouched", cwd=course)
    nbgrader("generate_feedback", assignment, cwd=course)
    nbgrader("export", cwd=course)

    for student in ("solved", "untouched"):
        for nb in released:
            html = course / "feedback" / student / assignment / nb.with_suffix(".html").name
            assert html.is_file(), f"no feedback for {student}: {html}"
    grades = read_grades(course)
    assert set(grades) == {"solved", "untouched"}
    auto, manual = map(sum, zip(*(points(src) for src in sources)))
    max_score = float(grades["solved"]["max_score"])
    assert auto > 0, "the assignment has no auto-graded points"
    assert max_score == auto + manual, (
        f"the gradebook's maximum {max_score} is not the notebooks' {auto} auto-graded + "
        f"{manual} manual points")
    assert float(grades["solved"]["score"]) == auto, (
        f"the solution scored {grades['solved']['score']} of {auto} auto-graded points: a "
        "test fails on the reference solution (see the autograded notebook for which)")
    assert float(grades["untouched"]["score"]) == 0, (
        f"the untouched exercise scored {grades['untouched']['score']}: some test passes "
        "without any work from the student")
