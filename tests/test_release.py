"""exercises/ is exactly what the build makes from solutions/, and leaks nothing."""

import json

from psml import course


def test_committed_release_matches_a_fresh_build(root):
    drift = course.check_release_is_fresh(root)
    assert not drift, ("exercises/ differs from a fresh build of solutions/; run `make build` "
                       "and commit the result:\n" + "\n".join(drift))


def test_release_leaks_no_solution_or_hidden_test(root):
    problems = course.release_problems(root)
    assert not problems, "\n".join(problems)


def test_every_assignment_is_released(root):
    assert course.assignments(root), "no assignments in solutions/"
    for a in course.assignments(root):
        assert (root / "exercises" / a).is_dir(), f"{a} has no exercises/{a}: run `make build`"


def _nb(tmp_path, name, *sources):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_leak_checker_finds_solution_lines(tmp_path):
    src = _nb(tmp_path, "src.ipynb",
              "def f(x):\n    ### BEGIN SOLUTION\n    return np.sqrt(x) * 2.5\n    ### END SOLUTION",
              "assert f(4) == 5\n### BEGIN HIDDEN TESTS\nassert f(0.0) == 0.0, 'zero'\n"
              "### END HIDDEN TESTS")
    leaky = _nb(tmp_path, "rel.ipynb", "def f(x):\n    return np.sqrt(x) * 2.5",
                "assert f(4) == 5\nassert f(0.0) == 0.0, 'zero'")
    problems = course.find_leaks(src, leaky)
    assert any("np.sqrt(x) * 2.5" in p for p in problems), problems
    assert any("f(0.0) == 0.0" in p for p in problems), problems
    clean = _nb(tmp_path, "ok.ipynb", "def f(x):\n    raise NotImplementedError()",
                "assert f(4) == 5")
    assert course.find_leaks(src, clean) == []


def test_leak_checker_finds_markers(tmp_path):
    src = _nb(tmp_path, "src.ipynb", "x = 1")
    rel = _nb(tmp_path, "rel.ipynb", "### BEGIN SOLUTION\nx = 1")
    assert course.find_leaks(src, rel), "a released marker went unnoticed"


def test_drift_detection(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "01-x").mkdir(parents=True)
    (a / "01-x" / "n.ipynb").write_text(json.dumps({"cells": [1]}))
    (b / "01-x" / "n.ipynb").write_text(json.dumps({"cells": [2]}))
    (b / "01-x" / "extra.txt").write_text("x")
    drift = course.diff_trees(a, b)
    assert "differs: 01-x/n.ipynb" in drift and any("extra.txt" in d for d in drift)


def _graded(source, **nbgrader):
    import nbformat

    md = {"grade": False, "solution": False, "locked": False, "schema_version": 3,
          "task": False, "points": 0}
    md.update(nbgrader)
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": md})


def test_standalone_check_finds_tests_reading_editable_cells(tmp_path):
    import nbformat

    cells = [
        nbformat.v4.new_code_cell("import numpy as np\nX = np.ones(3)"),     # editable setup
        _graded("from psml.checks import speedup\nY = 2 * np.ones(3)", grade_id="setup",
                locked=True),
        _graded("def f(x):\n    return x\nresult = f(3)", grade_id="f", solution=True),
        _graded("assert f(Y).shape == (3,)\nassert result == 3\nassert X.sum() == 3\n"
                "t = speedup(lambda: 1, lambda: 2)", grade_id="test_f", grade=True,
                locked=True, points=1),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    problems = course.standalone_problems(path)
    text = "\n".join(problems)
    assert any("'result'" in p and "editable cell 'f'" in p for p in problems), text
    assert any("'X'" in p and "#1 (no grade_id)" in p for p in problems), text
    for fine in ("'f'", "'Y'", "'speedup'"):  # a solution's function, locked names
        assert not any(f"reads {fine}" in p for p in problems), f"{fine} flagged:\n{text}"
    assert all("nb.ipynb: test cell 'test_f'" in p and "lock that cell" in p
               for p in problems), text


def test_leak_checker_finds_rubrics(tmp_path):
    import nbformat

    answer = ("### BEGIN SOLUTION\nA model answer that is long enough.\n\n**Rubric**\n"
              "- 1 pt: says why\n### END SOLUTION")
    src = tmp_path / "src.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(answer)]), src)
    leaky = tmp_path / "rel.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "YOUR ANSWER HERE\n**Rubric**\n- 1 pt: says why")]), leaky)
    assert any("**Rubric**" in p for p in course.find_leaks(src, leaky))
    clean = tmp_path / "ok.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "YOUR ANSWER HERE")]), clean)
    assert course.find_leaks(src, clean) == []
