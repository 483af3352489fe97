"""Bad submissions, generated from an assignment's solution and release, for ``psml grade``.

``make_corpus(course, assignment, dest)`` writes ``dest/<student>/<assignment>/...`` for every
case in :data:`CASES` and returns what each should come out as. Every case is a real way a
student's notebook goes wrong (or is made to go wrong); the bad code goes into a notebook built
from the assignment itself, so the corpus works for any assignment with solution cells.
"""

from __future__ import annotations

import copy
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

FIXTURE = "99-grading-fixture"
RUBRIC_LINE = "**Rubric** (2 points, fixture-rubric-marker)"


@dataclass
class Expect:
    status: str          # graded / failed / flagged
    score: str           # "max", "zero" or "less" (more than nothing is not promised)
    reason: str = ""     # a word that must appear in the reason ("" = no reason at all)


def _gid(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _solution_cells(nb):
    return [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")
            and c.cell_type == "code"]


def _test_cells(nb):
    return [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")
            and c.cell_type == "code"]


def _code(src: str):
    return nbformat.v4.new_code_cell(src)


def _append(nb, src):
    nb = copy.deepcopy(nb)
    nb.cells.append(_code(src))
    return nb


def _defs(nb):
    """(solution cell, function name) of each solution cell that defines a function."""
    out = []
    for c in _solution_cells(nb):
        m = re.search(r"^def (\w+)\(", c.source, re.M)
        if m:
            out.append((c, m.group(1)))
    return out


def _wrap(name: str, correct: bool) -> str:
    """Code that replaces ``name`` by a version that warns and writes to stderr when called
    (inside the test cells) -- and, unless ``correct``, returns a wrong result."""
    result = "_r" if correct else "_r * 0 + 7"
    return (f"\n\nimport functools as _ft, sys as _sys, warnings as _w\n"
            f"_w.simplefilter('always')\n_orig_{name} = {name}\n\n\n"
            f"@_ft.wraps(_orig_{name})\ndef {name}(*args, **kwargs):\n"
            f"    _w.warn('{name}: this call is deprecated', DeprecationWarning)\n"
            f"    print('debug: {name} was called', file=_sys.stderr)\n"
            f"    _r = _orig_{name}(*args, **kwargs)\n    return {result}\n")


def _wrong_answers(nb):
    """Every solution region replaced by ``return 0.5`` (a wrong answer of the right kind
    for some tests: a float)."""
    nb = copy.deepcopy(nb)
    for c in _solution_cells(nb):
        c.source = re.sub(r"( *)### BEGIN SOLUTION.*?### END SOLUTION",
                          lambda m: f"{m.group(1)}return 0.5", c.source, flags=re.S)
    return nb


MONKEYPATCH = """\
import numpy as np, numpy.testing as npt, builtins, psml.checks
_yes = lambda *a, **k: True
np.allclose = np.isclose = np.array_equal = np.all = np.any = _yes
npt.assert_allclose = npt.assert_array_equal = npt.assert_equal = lambda *a, **k: None
psml.checks.assert_no_python_loops = lambda *a, **k: None
psml.checks.speedup = lambda *a, **k: 1e9
builtins.round = lambda *a, **k: 0"""

SCRIPT = """\
from IPython.display import HTML, Javascript, display
display(HTML("<script>document.title = 'PWNED-SCRIPT'</script>"
             "<img src=x onerror=\\"document.title = 'PWNED-ONERROR'\\">"))
display(Javascript("document.title = 'PWNED-JS'"))"""
SCRIPT_MD = ("My notes <script>document.title = 'PWNED-MD'</script> "
             "<img src=x onerror=\"document.title = 'PWNED-MD-IMG'\"> "
             "[a link](javascript:alert('PWNED-LINK'))")


def build_cases(solution: nbformat.NotebookNode, release: nbformat.NotebookNode, course: Path,
                assignment: str, port: int | None = None, other_checkout: Path | None = None
                ) -> dict[str, tuple[object, Expect]]:
    """student -> (notebook, raw text or a dict of files, expected outcome)."""
    S, R = solution, release
    name = f"{assignment}.ipynb"
    sol_file = course / "solutions" / assignment / name
    cases: dict[str, tuple[object, Expect]] = {}

    cases["good"] = (S, Expect("graded", "max"))
    cases["untouched"] = (R, Expect("graded", "zero"))
    cases["memory_hog"] = (_append(S, "hog = bytearray(64 * 2**30)  # 64 GB"),
                           Expect("graded", "max"))
    cases["fork_bomb"] = (_append(S, "import os\nwhile True:\n    try:\n        os.fork()\n"
                                     "    except OSError:\n        pass"),
                          Expect("graded", "max", "time limit per cell"))
    cases["huge_output"] = (_append(S, "for i in range(40):\n    print('x' * 2_000_000)"),
                            Expect("graded", "max", "output cut"))
    # Issue 16: warnings on, stderr written inside the test cells by the student's functions.
    # The first functions are correct (full marks for their tests), the last one is wrong
    # (its test scores 0 although it also warns).
    noisy = copy.deepcopy(S)
    noisy.cells.insert(0, _code("import sys, warnings\nwarnings.simplefilter('always')\n"
                                "for i in range(300):\n    warnings.warn(f'noise {i}')\n"
                                "    print('E' * 200, file=sys.stderr)"))
    defs = _defs(noisy)
    for k, (cell, fn) in enumerate(defs):
        if k < 2 or k == len(defs) - 1:
            cell.source += _wrap(fn, correct=k < len(defs) - 1)
    cases["noisy"] = (noisy, Expect("graded", "less"))
    exc = copy.deepcopy(S)
    _solution_cells(exc)[0].source = "raise ValueError('my code is broken')"
    cases["solution_exception"] = (exc, Expect("graded", "less"))
    # deleted, duplicated, moved and retyped cells in one notebook
    mixed = copy.deepcopy(S)
    sols, tests = _solution_cells(mixed), _test_cells(mixed)
    mixed.cells = [c for c in mixed.cells if c is not sols[0] and c is not tests[0]]  # deleted
    stub = copy.deepcopy(sols[1])
    stub.source = "raise NotImplementedError()"
    stub["id"] = "copy-" + stub.get("id", "x")  # Edit > Copy gives the copy a new id
    mixed.cells.insert(mixed.cells.index(sols[1]), stub)  # duplicated: the last copy counts
    mixed.cells.remove(tests[-1])
    mixed.cells.insert(0, tests[-1])                       # moved
    sols[-1].cell_type = "markdown"                         # retyped
    sols[-1].pop("outputs", None)
    sols[-1].pop("execution_count", None)
    cases["restructured"] = (mixed, Expect("graded", "less", "deleted"))
    edited = copy.deepcopy(R)
    for c in _test_cells(edited):
        c.source = "assert True  # all good"
    cases["edited_tests"] = (edited, Expect("graded", "zero", "edited"))
    tb = copy.deepcopy(R)
    tb.cells.insert(0, _code("ip = get_ipython()\nip.showtraceback = lambda *a, **k: None\n"
                             "ip._showtraceback = lambda *a, **k: None"))
    cases["showtraceback"] = (tb, Expect("flagged", "zero", "TAMPERING"))
    # Issue 12: every answer wrong, plus NumPy's comparisons, psml's checks and a builtin
    # replaced. The grader puts them back before the tests: no points, flagged.
    hostile = _wrong_answers(S)
    hostile.cells.insert(1, _code(MONKEYPATCH))
    cases["monkeypatch"] = (hostile, Expect("flagged", "zero", "TAMPERING"))
    # A locked setup cell edited (nbgrader restores it) and a later own cell rebinding a
    # helper the tests use: the helper is put back, so a loop in the last function fails.
    setup = copy.deepcopy(S)
    first = next(c for c in setup.cells if c.cell_type == "code")
    first.source += "\nassert_no_python_loops = speedup = lambda *a, **k: 1e9"
    last_cell, last_fn = _defs(setup)[-1]
    last_cell.source += (f"\n\n_vec_{last_fn} = {last_fn}\n\n\ndef {last_fn}(*args, **kwargs):\n"
                         "    for _ in range(1):  # a Python loop the tests must see\n"
                         "        pass\n"
                         f"    return _vec_{last_fn}(*args, **kwargs)\n")
    setup.cells.insert(setup.cells.index(first) + 1, _code(
        "assert_no_python_loops = speedup = lambda *a, **k: 1e9"))
    cases["edited_setup"] = (setup, Expect("graded", "less"))
    wk = copy.deepcopy(S)
    wk.metadata["kernelspec"] = {"name": "python2", "display_name": "Python 2",
                                 "language": "python"}
    cases["wrong_kernelspec"] = (wk, Expect("graded", "max", "replaced by the course kernel"))
    # Student HTML/JS in outputs and in an own markdown cell: inert in the feedback.
    html = _append(S, SCRIPT)
    html.cells.append(nbformat.v4.new_markdown_cell(SCRIPT_MD))
    cases["script_output"] = (html, Expect("graded", "max"))
    # Cells pasted into a fresh notebook: no nbgrader metadata at all.
    pasted = copy.deepcopy(S)
    for c in pasted.cells:
        c.metadata.pop("nbgrader", None)
    cases["pasted_cells"] = (pasted, Expect("graded", "max", "matched to the release by content"))
    text = nbformat.writes(S)
    cases["corrupt_json"] = ({name: text[: len(text) // 2]},
                             Expect("failed", "zero", "not valid notebook JSON"))
    cases["missing_notebook"] = ({"notes.txt": "I forgot to upload it\n"},
                                 Expect("failed", "zero", "missing"))
    cases["renamed_notebook"] = ({f"{assignment} (1).ipynb": nbformat.writes(S),
                                  "scratch.ipynb": nbformat.writes(R)},
                                 Expect("graded", "max", "in its place"))
    # Writes outside its folder: into the course, into another student's submission, the
    # scratch course around it and /tmp; and a big file in its own folder (kept out of
    # autograded/ and feedback/). Each outside write must fail or vanish; the grade stands.
    targets = [course / "HACKED", course / "submitted" / "good" / assignment / name,
               course / "solutions" / assignment / name, Path("/tmp/psml-hacked"),
               "../../../gradebook.db", "../../good/HACKED"]
    cases["write_outside"] = (_append(S, "for target in %r:\n    try:\n"
                                         "        open(target, 'w').write('hacked')\n"
                                         "    except OSError:\n        pass\n"
                                         "with open('big-output.bin', 'wb') as f:\n"
                                         "    f.write(b'x' * 50 * 2**20)"
                                      % [str(t) for t in targets]),
                              Expect("graded", "max"))
    # Reads what no kernel should see and, if it can, uses it: the course's solutions, another
    # checkout of the course on the machine, the gradebook, its own notebook on disk with the
    # hidden tests restored. Full marks would prove a leak, 0 proves there was none.
    sources = [str(sol_file), "../../../gradebook.db", name, f"../{name}"]
    if other_checkout:
        sources.insert(1, str(other_checkout / "solutions" / assignment / name))
    reader = copy.deepcopy(R)
    for c in _solution_cells(reader):
        c.source = ("import json, os\n_code = None\n"
                    f"for _p in {sources!r}:\n"
                    "    try:\n        _src = json.load(open(_p))\n    except Exception:\n"
                    "        continue\n"
                    "    _code = [''.join(x['source']) for x in _src['cells'] if x.get("
                    f"'metadata', {{}}).get('nbgrader', {{}}).get('grade_id') == {_gid(c)!r}]"
                    "[0]\n    break\n"
                    "exec(_code)")
    cases["read_outside"] = (reader, Expect("graded", "zero"))
    if port:  # a server the grading machine listens on: reachable only without isolation
        net = copy.deepcopy(R)
        for c, good in zip(_solution_cells(net), _solution_cells(S)):
            c.source = ("import socket\n"
                        f"socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
                        + good.source)
        cases["network"] = (net, Expect("graded", "zero"))
    return cases


def make_corpus(course: Path, assignment: str, dest: Path, only: list[str] | None = None,
                port: int | None = None, other_checkout: Path | None = None
                ) -> dict[str, Expect]:
    """Write the corpus as ``dest/<student>/<assignment>/`` folders; return the expectations."""
    solution = nbformat.read(course / "solutions" / assignment / f"{assignment}.ipynb", 4)
    release = _release(course, assignment)
    out = {}
    for student, (nb, expect) in build_cases(solution, release, course, assignment, port,
                                               other_checkout).items():
        if only and student not in only:
            continue
        folder = dest / student / assignment
        folder.mkdir(parents=True)
        files = ({f"{assignment}.ipynb": nbformat.writes(nb)}
                 if isinstance(nb, nbformat.NotebookNode) else nb)
        for fname, text in files.items():
            (folder / fname).write_text(text)
        (folder / "timestamp.txt").write_text("2026-01-01 12:00:00.000000 UTC")
        out[student] = expect
    return out


def _release(course: Path, assignment: str) -> nbformat.NotebookNode:
    rel = course / "exercises" / assignment / f"{assignment}.ipynb"
    if not rel.is_file():
        from psml.course import build

        build([assignment], course)
    return nbformat.read(rel, 4)


def fixture_course(tmp: Path, root: Path) -> Path:
    """A course with one tiny assignment for fast grading tests: two functions (5 points,
    auto-graded) and one written answer (2 points, graded by hand, with a rubric)."""
    course = tmp / "course"
    folder = course / "solutions" / FIXTURE
    folder.mkdir(parents=True)
    shutil.copy(root / "nbgrader_config.py", course)

    def md(gid, **kw):
        base = {"grade": False, "grade_id": gid, "locked": False, "schema_version": 3,
                "solution": False, "task": False}
        base.update(kw)
        return {"nbgrader": base}

    cells = [
        nbformat.v4.new_markdown_cell("# Grading fixture\nTwo tiny exercises.",
                                      metadata=md("intro", locked=True)),
        nbformat.v4.new_code_cell("import numpy as np\nfrom psml.config import QUICK, pick"),
        nbformat.v4.new_code_cell(
            'def add(a, b):\n    """a + b for arrays of one shape."""\n'
            "    ### BEGIN SOLUTION\n    return np.add(a, b)\n    ### END SOLUTION",
            metadata=md("add", solution=True)),
        nbformat.v4.new_code_cell(
            '"""add: small integers and arrays."""\n'
            "assert add(1, 2) == 3, f'expected 3, got {add(1, 2)}'\n"
            "### BEGIN HIDDEN TESTS\nassert np.all(add(np.ones(3), 1) == 2), 'arrays'\n"
            "### END HIDDEN TESTS", metadata=md("test_add", grade=True, locked=True, points=2)),
        nbformat.v4.new_code_cell(
            'def square(x):\n    """x squared, elementwise."""\n'
            "    ### BEGIN SOLUTION\n    return np.asarray(x) ** 2\n    ### END SOLUTION",
            metadata=md("square", solution=True)),
        nbformat.v4.new_code_cell(
            '"""square: 3 -> 9."""\nassert square(3) == 9, f"expected 9, got {square(3)}"',
            metadata=md("test_square", grade=True, locked=True, points=3)),
        nbformat.v4.new_markdown_cell("**Question.** Why is `np.add` faster than a loop?",
                                      metadata=md("why_question", locked=True)),
        nbformat.v4.new_markdown_cell(
            "### BEGIN SOLUTION\nOne call runs the loop in compiled code.\n\n"
            f"{RUBRIC_LINE}\n- 1 pt: compiled loop\n- 1 pt: no per-element interpreter work\n"
            "### END SOLUTION", metadata=md("why_answer", grade=True, solution=True, points=2)),
    ]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3 (psml)", "language": "python", "name": "psml"},
        "language_info": {"name": "python"}})
    nbformat.write(nb, folder / f"{FIXTURE}.ipynb")
    return course
