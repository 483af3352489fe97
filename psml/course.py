"""Where the course lives, and how its releases are built from ``solutions/``.

``solutions/`` holds the nbgrader *source* of each assignment, ``exercises/`` the committed
*release* that ``psml build`` (``make build``) generates from it with nbgrader. The release
must never carry solutions, rubrics or hidden tests: :func:`find_leaks` proves that, and
:func:`standalone_problems` that every graded test gets what it checks from locked cells.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

SOURCE, RELEASE = "solutions", "exercises"
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
RUBRIC = "**Rubric**"  # starts the grading rubric of a manually graded answer (CONTRIBUTING)
ASSIGNMENT_RE = re.compile(r"^\d\d-[a-z0-9-]+$")


def course_root(start: Path | None = None) -> Path:
    """The folder holding ``nbgrader_config.py`` and ``solutions/``: searched upwards from
    ``start`` (default: the working directory), then beside this package."""
    candidates = [Path(start or Path.cwd()).resolve()]
    candidates += list(candidates[0].parents) + [Path(__file__).resolve().parent.parent]
    for d in candidates:
        if (d / "nbgrader_config.py").is_file() and (d / SOURCE).is_dir():
            return d
    raise FileNotFoundError("no course folder (with nbgrader_config.py and solutions/) "
                            f"at or above {candidates[0]}: run this from the course repository")


def assignments(root: Path | None = None) -> list[str]:
    """Assignment ids (``NN-topic``) found in ``solutions/``, in course order."""
    src = (root or course_root()) / SOURCE
    return sorted(p.name for p in src.iterdir() if p.is_dir() and ASSIGNMENT_RE.match(p.name))


def tool_env() -> dict[str, str]:
    """The environment for nbgrader subprocesses: this venv's bin/ first on PATH (nbgrader
    runs ``alembic`` by name when it creates a gradebook)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _source_files(folder: Path):
    skip = {".ipynb_checkpoints", "__pycache__"}
    return sorted(p for p in folder.rglob("*") if p.is_file() and not skip & set(p.parts))


def source_hash(root: Path, assignment: str) -> str:
    """Hash of everything in one assignment's source folder (names and contents)."""
    h = hashlib.sha256()
    folder = root / SOURCE / assignment
    for p in _source_files(folder):
        h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes() + b"\0")
    header = root / SOURCE / "header.ipynb"  # prepended to every release (nbgrader_config.py)
    if header.is_file():
        h.update(b"header\0" + header.read_bytes())
    return h.hexdigest()


def build(names: list[str] | None = None, root: Path | None = None,
          release: Path | None = None) -> list[str]:
    """Generate the student release of each assignment with nbgrader (no gradebook).

    ``release`` defaults to the course's ``exercises/``; tests pass a temp dir to compare.
    """
    root = root or course_root()
    release = (release or root / RELEASE).resolve()
    names = names or assignments(root)
    for a in names:
        cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", a, "--force", "--no-db",
               f"--CourseDirectory.root={root}",
               f"--CourseDirectory.release_directory={release}", "--log-level=WARN"]
        r = subprocess.run(cmd, cwd=root, env=tool_env(), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"nbgrader could not build {a}:\n{r.stdout}\n{r.stderr}")
        for nb in (release / a).rglob("*.ipynb"):
            _normalise(nb)
    return names


def _normalise(path: Path) -> None:
    """Write a release notebook the same way every time (stable diffs, drift test)."""
    nb = nbformat.read(path, as_version=4)
    nbformat.write(nb, path)


def _stamp_file(root: Path) -> Path:
    return root / ".cache" / "build-hashes.json"


def build_if_stale(root: Path | None = None) -> list[str]:
    """Rebuild only assignments whose source changed since the last build here."""
    root = root or course_root()
    stamp = _stamp_file(root)
    seen = json.loads(stamp.read_text()) if stamp.exists() else {}
    now = {a: source_hash(root, a) for a in assignments(root)}
    stale = [a for a in now if seen.get(a) != now[a] or not (root / RELEASE / a).is_dir()]
    if stale:
        build(stale, root)
    stamp.parent.mkdir(exist_ok=True)
    stamp.write_text(json.dumps(now, indent=1))
    return stale


def _blocks(text: str, begin: str, end: str) -> list[str]:
    """Lines strictly between ``### BEGIN X`` and ``### END X`` markers."""
    out, inside = [], False
    for line in text.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            out.append(line)
    return out


def find_leaks(source_nb: Path, release_nb: Path) -> list[str]:
    """What of the solution or the hidden tests shows through in a released notebook.

    Checks for markers, and for every substantial line (>= 12 characters) written between
    solution or hidden-test markers in the source that appears in the release, unless the
    source also has that line outside any such block (e.g. a provided example).
    """
    src = nbformat.read(source_nb, as_version=4)
    rel = nbformat.read(release_nb, as_version=4)
    src_text = "\n".join(c.source for c in src.cells)
    rel_text = "\n".join(c.source for c in rel.cells)
    problems = [f"{release_nb.name}: contains '{m}'" for m in MARKERS + (RUBRIC,)
                if m in rel_text]
    secret = set()
    for begin, end in (("BEGIN SOLUTION", "END SOLUTION"),
                       ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")):
        secret |= {s.strip() for s in _blocks(src_text, begin, end) if len(s.strip()) >= 12}
    public = set()
    inside = False
    for line in src_text.splitlines():
        if any(m.startswith("BEGIN") and m in line for m in MARKERS):
            inside = True
        elif any(m.startswith("END") and m in line for m in MARKERS):
            inside = False
        elif not inside:
            public.add(line.strip())
    rel_lines = {s.strip() for s in rel_text.splitlines()}
    for line in sorted((secret - public) & rel_lines):
        problems.append(f"{release_nb.name}: solution/hidden line released: {line!r}")
    return problems


def _parse(source: str) -> ast.Module | None:
    """A code cell as Python (IPython magics and shell lines blanked), or None."""
    lines = ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def defined_names(source: str) -> dict[str, str]:
    """Names a cell binds at top level -> how: 'def' (function/class) or 'value'."""
    tree, out = _parse(source), {}
    for node in (tree.body if tree else []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = "def"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                if a.name != "*":
                    out[(a.asname or a.name).split(".")[0]] = "value"
        else:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    out.setdefault(sub.id, "value")
    return out


def read_names(source: str) -> set[str]:
    """Names a cell reads that it does not bind itself (nor are builtins)."""
    tree = _parse(source)
    if tree is None:
        return set()
    loads, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return loads - bound - set(dir(builtins))


def standalone_problems(source_nb: Path) -> list[str]:
    """Graded test cells that read a name defined only in cells a student may edit.

    Allowed: functions/classes a solution cell defines (that is what is tested) and anything
    a locked cell defines (locked setup, data and reference cells; test cells are locked).
    Anything else -- data or results from an editable cell -- lets a student change what the
    test checks, and the test fails for a student who restarts and runs only the tests.
    """
    nb = nbformat.read(source_nb, as_version=4)
    defs: dict[str, list[tuple[str, bool, bool]]] = {}  # name -> (where, locked, sol. def)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        md = cell.metadata.get("nbgrader", {})
        where = f"'{md['grade_id']}'" if md.get("grade_id") else f"#{i + 1} (no grade_id)"
        is_test = md.get("grade") and not md.get("solution")
        if is_test:
            for name in sorted(read_names(cell.source)):
                seen = defs.get(name)
                if not seen or any(locked or sol_def for _, locked, sol_def in seen):
                    continue
                cells = ", ".join(dict.fromkeys(w for w, _, _ in seen))
                problems.append(
                    f"{source_nb.name}: test cell {where} reads '{name}', defined only in "
                    f"editable cell {cells}: lock that cell (nbgrader 'locked': true, e.g. "
                    f"a read-only setup cell) or compute '{name}' in the test cell")
        locked = bool(md.get("locked") or is_test)
        for name, how in defined_names(cell.source).items():
            defs.setdefault(name, []).append(
                (where, locked, bool(md.get("solution")) and how == "def"))
    return problems


def release_problems(root: Path | None = None, release: Path | None = None) -> list[str]:
    """Leaks in every released notebook, assignments without a release, and graded tests
    that depend on editable cells (:func:`standalone_problems`)."""
    root = root or course_root()
    release = release or root / RELEASE
    problems = []
    for a in assignments(root):
        for src in sorted((root / SOURCE / a).glob("*.ipynb")):
            rel = release / a / src.name
            if not rel.exists():
                problems.append(f"{a}: {src.name} has no release (run `make build`)")
            else:
                problems += [f"{a}/{p}" for p in find_leaks(src, rel)]
            problems += [f"{a}/{p}" for p in standalone_problems(src)]
    return problems


def diff_trees(a: Path, b: Path) -> list[str]:
    """Files that differ between two release trees (notebooks compared as JSON)."""
    fa = {p.relative_to(a) for p in _source_files(a)}
    fb = {p.relative_to(b) for p in _source_files(b)}
    out = [f"only in {a.name}: {p}" for p in sorted(fa - fb)]
    out += [f"only in {b.name}: {p}" for p in sorted(fb - fa)]
    for p in sorted(fa & fb):
        if p.suffix == ".ipynb":
            same = json.loads((a / p).read_text()) == json.loads((b / p).read_text())
        else:
            same = (a / p).read_bytes() == (b / p).read_bytes()
        if not same:
            out.append(f"differs: {p}")
    return out


def check_release_is_fresh(root: Path | None = None) -> list[str]:
    """Build every assignment into a temp dir and list how committed ``exercises/`` differs."""
    root = root or course_root()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / RELEASE
        build(None, root, fresh)
        return diff_trees(fresh, root / RELEASE)


def clean_release(root: Path) -> None:
    """Remove release folders whose source is gone."""
    keep = set(assignments(root))
    for d in (root / RELEASE).iterdir():
        if d.is_dir() and ASSIGNMENT_RE.match(d.name) and d.name not in keep:
            shutil.rmtree(d)
