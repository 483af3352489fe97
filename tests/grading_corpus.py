"""Bad submissions, generated from an assignment's solution and release, for ``psml grade``.

``make_corpus(course, assignment, dest)`` writes ``dest/<student>/<assignment>/...`` for every
case in :data:`CASES` and returns what each should come out as. Every case is a real way a
student's notebook goes wrong (or is made to go wrong); the bad code goes into a notebook built
from the assignment itself, so the corpus works for any assignment with solution cells.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

FIXTURE = "99-grading-fixture"


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


def build_cases(solution: nbformat.NotebookNode, release: nbformat.NotebookNode, course: Path,
                assignment: str, port: int | None = None) -> dict[str, tuple[object, Expect]]:
    """student -> (notebook, raw text or a dict of files, expected outcome)."""
    S, R = solution, release
    name = f"{assignment}.ipynb"
    sol_file = course / "solutions" / assignment / name
    cases: dict[str, tuple[object, Expect]] = {}

    cases["good"] = (S, Expect("graded", "max"))
    cases["untouched"] = (R, Expect("graded", "zero"))
    cases["infinite_loop"] = (_append(S, "while True:\n    pass"),
                              Expect("graded", "max", "time limit per cell"))
    cases["memory_hog"] = (_append(S, "hog = bytearray(64 * 2**30)  # 64 GB"),
                           Expect("graded", "max"))
    cases["fork_bomb"] = (_append(S, "import os\nwhile True:\n    try:\n        os.fork()\n"
                                     "    except OSError:\n        pass"),
                          Expect("graded", "max", "time limit per cell"))
    cases["huge_output"] = (_append(S, "for i in range(40):\n    print('x' * 2_000_000)"),
                            Expect("graded", "max", "output cut"))
    noisy = copy.deepcopy(S)
    noisy.cells.insert(0, _code("import sys, warnings\nfor i in range(500):\n"
                                "    warnings.warn(f'noise {i}')\n"
                                "    print('E' * 200, file=sys.stderr)"))
    cases["stderr_noise"] = (noisy, Expect("graded", "max"))
    exc = copy.deepcopy(S)
    _solution_cells(exc)[0].source = "raise ValueError('my code is broken')"
    cases["solution_exception"] = (exc, Expect("graded", "less"))
    deleted = copy.deepcopy(S)
    first_sol = _solution_cells(deleted)[0]
    first_test = _test_cells(deleted)[0]
    deleted.cells = [c for c in deleted.cells if c is not first_sol and c is not first_test]
    cases["deleted_cells"] = (deleted, Expect("graded", "less", "deleted"))
    dup = copy.deepcopy(S)
    sol = _solution_cells(dup)[0]
    stub = copy.deepcopy(sol)
    stub.source = "raise NotImplementedError()"
    dup.cells.insert(dup.cells.index(sol), stub)  # the last copy (the real solution) counts
    cases["duplicated_cells"] = (dup, Expect("graded", "max", "appears 2 times"))
    moved = copy.deepcopy(S)
    t = _test_cells(moved)[-1]
    moved.cells.remove(t)
    moved.cells.insert(0, t)
    cases["moved_cells"] = (moved, Expect("graded", "max", "moved"))
    retyped = copy.deepcopy(S)
    cell = _solution_cells(retyped)[0]
    cell.cell_type = "markdown"
    cell.pop("outputs", None)
    cell.pop("execution_count", None)
    cases["retyped_cells"] = (retyped, Expect("graded", "max", "changed from code to markdown"))
    edited = copy.deepcopy(R)
    for c in _test_cells(edited):
        c.source = "assert True  # all good"
    cases["edited_tests"] = (edited, Expect("graded", "zero", "edited"))
    emptied = copy.deepcopy(R)
    for c in _test_cells(emptied):
        c.source = ""
    cases["emptied_tests"] = (emptied, Expect("graded", "zero", "edited"))
    tb = copy.deepcopy(R)
    tb.cells.insert(0, _code("ip = get_ipython()\nip.showtraceback = lambda *a, **k: None\n"
                             "ip._showtraceback = lambda *a, **k: None"))
    cases["showtraceback"] = (tb, Expect("flagged", "zero", "TAMPERING"))
    wk = copy.deepcopy(S)
    wk.metadata["kernelspec"] = {"name": "python2", "display_name": "Python 2",
                                 "language": "python"}
    cases["wrong_kernelspec"] = (wk, Expect("graded", "max", "replaced by the course kernel"))
    text = nbformat.writes(S)
    cases["corrupt_json"] = ({name: text[: len(text) // 2]},
                             Expect("failed", "zero", "not valid notebook JSON"))
    cases["missing_notebook"] = ({"notes.txt": "I forgot to upload it\n"},
                                 Expect("failed", "zero", "missing"))
    cases["extra_notebook"] = ({name: nbformat.writes(S), "scratch.ipynb": nbformat.writes(R)},
                               Expect("graded", "max", "extra notebook"))
    cases["renamed_notebook"] = ({f"{assignment} (1).ipynb": nbformat.writes(S)},
                                 Expect("graded", "max", "in its place"))
    # Writes outside its folder: into the course, into another student's submission, the
    # scratch course around it and /tmp. Each attempt must fail or vanish; the grade stands.
    targets = [course / "HACKED", course / "submitted" / "good" / assignment / name,
               course / "solutions" / assignment / name, Path("/tmp/psml-hacked"),
               "../../../gradebook.db", "../../good/HACKED"]
    cases["write_outside"] = (_append(S, "for target in %r:\n    try:\n"
                                         "        open(target, 'w').write('hacked')\n"
                                         "    except OSError:\n        pass"
                                      % [str(t) for t in targets]),
                              Expect("graded", "max"))
    # Reads the solutions (or a gradebook) and, if it can, uses them: full marks would prove
    # a leak, 0 proves there was none.
    reader = copy.deepcopy(R)
    for c in _solution_cells(reader):
        c.source = ("import json, glob\n"
                    f"_src = json.load(open({str(sol_file)!r}))\n"
                    f"_code = [''.join(x['source']) for x in _src['cells'] "
                    f"if x.get('metadata', {{}}).get('nbgrader', {{}}).get('grade_id') "
                    f"== {_gid(c)!r}][0]\n"
                    "exec(_code)")
    cases["read_solutions"] = (reader, Expect("graded", "zero"))
    gbreader = copy.deepcopy(R)
    for c, good in zip(_solution_cells(gbreader), _solution_cells(S)):
        c.source = ("import sqlite3, os\n"
                    "_dbs = [p for p in (%r, '../../../gradebook.db') if os.path.getsize(p)]\n"
                    "sqlite3.connect(_dbs[0]).execute('select * from assignment').fetchall()\n"
                    % str(course / "gradebook.db")) + good.source
    cases["read_gradebook"] = (gbreader, Expect("graded", "zero"))
    if port:  # a server the grading machine listens on: reachable only without isolation
        net = copy.deepcopy(R)
        for c, good in zip(_solution_cells(net), _solution_cells(S)):
            c.source = ("import socket\n"
                        f"socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
                        + good.source)
        cases["network"] = (net, Expect("graded", "zero"))
    return cases


def make_corpus(course: Path, assignment: str, dest: Path, only: list[str] | None = None,
                port: int | None = None) -> dict[str, Expect]:
    """Write the corpus as ``dest/<student>/<assignment>/`` folders; return the expectations."""
    solution = nbformat.read(course / "solutions" / assignment / f"{assignment}.ipynb", 4)
    release = _release(course, assignment)
    out = {}
    for student, (nb, expect) in build_cases(solution, release, course, assignment, port).items():
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
    """A course with one tiny assignment (two functions, 5 points) for fast grading tests."""
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
    ]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3 (psml)", "language": "python", "name": "psml"},
        "language_info": {"name": "python"}})
    nbformat.write(nb, folder / f"{FIXTURE}.ipynb")
    return course
