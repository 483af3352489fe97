"""``psml student-bundle DIR``: the course for a student who studies alone, without the
instructor's repository: lectures, released exercises, the psml wheel and the environment
files, plus a README saying how to start. No solutions, hidden tests or rubrics: the bundle
is checked with :func:`tree_leaks` before the command reports success.

:func:`tree_leaks` is also how the tests check the wheel and the course site: it looks in
every text file (notebooks by cell source, HTML as text, archives member by member) for
nbgrader's markers and for any substantial line written inside a solution or hidden-test
region of ``solutions/``.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

from psml import course
from psml.errors import PsmlError

PUBLISHED = ("lectures", "exercises")     # what students get of the repository
ENV_FILES = ("requirements.lock", "environment.yml")
MIN_LINE = 12                             # shorter lines (`return x`, `pass`) prove nothing
TEXT_SUFFIXES = {".ipynb", ".py", ".md", ".txt", ".html", ".json", ".toml", ".yml", ".yaml",
                 ".sh", ".sbatch", ".cfg", ".js", ".tex", ".rst", ""}
TAG = re.compile(r"<[^>]+>")


class BundleError(PsmlError):
    """The student bundle could not be written, or would have held instructor material."""


def published_files(root: Path, folder: str) -> list[Path]:
    """The files of ``folder`` a student gets: what git tracks or would track (so run
    outputs that .gitignore names stay out), or every file when there is no git."""
    r = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", folder],
                       cwd=root, capture_output=True, text=True)
    if r.returncode == 0:
        files = [root / line for line in r.stdout.splitlines() if (root / line).is_file()]
    else:
        files = [p for p in (root / folder).rglob("*") if p.is_file()]
    skip = {".ipynb_checkpoints", "__pycache__"}
    return sorted(p for p in files if not skip & set(p.relative_to(root).parts))


# --- looking for instructor material ---------------------------------------------------

def secret_lines(root: Path) -> set[str]:
    """Stripped lines (>= MIN_LINE characters) found only inside solution or hidden-test
    regions of the solutions/ notebooks: not outside such a region in the same notebook,
    not in any lecture and not in the psml package (all three are published on purpose)."""
    public: set[str] = set()
    for lec in (root / "lectures").glob("*.ipynb"):
        public |= {s.strip() for s in _notebook_text(lec.read_text()).splitlines()}
    for src in (root / "psml").rglob("*.py"):
        public |= {s.strip() for s in src.read_text().splitlines()}
    secret: set[str] = set()
    for nb in sorted((root / course.SOURCE).glob("*/*.ipynb")):
        inside = False
        for line in _notebook_text(nb.read_text()).splitlines():
            s = line.strip()
            if any(m in line for m in course.MARKERS):
                inside = "BEGIN" in line
            elif inside and len(s) >= MIN_LINE:
                secret.add(s)
            elif not inside:
                public.add(s)
    return secret - public


def _notebook_text(raw: str) -> str:
    try:
        return "\n".join("".join(c.get("source", "")) for c in json.loads(raw)["cells"])
    except (ValueError, KeyError, TypeError):
        return raw


def _texts(path: Path):
    """(name, text) of a file, or of each member of a .whl/.zip/.tar.gz."""
    if path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if Path(name).suffix in TEXT_SUFFIXES:
                    yield f"{path.name}:{name}", z.read(name).decode("utf-8", "replace")
    elif path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as t:
            for m in t.getmembers():
                if m.isfile() and Path(m.name).suffix in TEXT_SUFFIXES:
                    data = t.extractfile(m).read().decode("utf-8", "replace")
                    yield f"{path.name}:{m.name}", data
    elif path.suffix in TEXT_SUFFIXES:
        yield str(path), path.read_text(errors="replace")


def _package_source(name: str, text: str, root: Path) -> bool:
    """True for a copy of one of psml's own modules (a wheel member ``psml/x.py``): course
    tooling names the markers on purpose."""
    rel = name.split(":", 1)[-1]
    src = root / rel
    return rel.startswith("psml/") and src.suffix == ".py" and src.is_file() \
        and src.read_text() == text


def _comparable(name: str, text: str) -> str:
    if name.endswith(".ipynb"):
        return _notebook_text(text)
    if name.endswith((".html", ".htm")):   # highlighted code is split into <span>s
        return html.unescape(TAG.sub("", text))
    return text


def tree_leaks(folder: Path, root: Path | None = None) -> list[str]:
    """Where ``folder`` (a bundle, a built site, an installed package) shows a solution or a
    hidden test of the course at ``root``: one line per finding, empty when clean."""
    root = root or course.course_root()
    secret = secret_lines(root)
    problems = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        for name, raw in _texts(path):
            if _package_source(name, raw, root):
                continue
            text = _comparable(name, raw)
            problems += [f"{name}: contains '{m}'" for m in course.MARKERS if m in text]
            for line in sorted(secret & {s.strip() for s in text.splitlines()}):
                problems.append(f"{name}: solution/hidden-test line {line!r}")
    return problems


# --- the bundle --------------------------------------------------------------------------

STUDENT_README = """\
# {title}: the course for self-study

Lectures (`lectures/`, ungraded, with runnable demos) and exercises (`exercises/`, with
visible tests you can run yourself). Work through them in order: the course map is in
`COURSE.md`.

## Set up (once)

With Python 3.11 on Linux/WSL (`apt-get install python3.11-venv openmpi-bin libopenmpi-dev`):

```bash
python3.11 -m venv .venv
.venv/bin/pip install -r requirements.lock {wheel}
.venv/bin/python -m ipykernel install --user --name psml --display-name "Python 3 (psml)" \\
    --env TF_CPP_MIN_LOG_LEVEL 2
.venv/bin/jupyter lab
```

or with conda: `conda env create -f environment.yml && conda activate psml`, then the
`ipykernel install` line above with `python` instead of `.venv/bin/python`.

Unit 09 (Horovod) needs Horovod {horovod}, compiled against the installed TensorFlow:

```bash
HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_PYTORCH=1 \\
  HOROVOD_WITHOUT_MXNET=1 .venv/bin/pip install --no-build-isolation --no-deps horovod=={horovod}
```

Check your environment any time with `.venv/bin/psml doctor`.

## How the exercises work

Write your code between `# YOUR CODE HERE` markers, run the test cell below it: the message
says what was expected and what your code gave. Your instructor grades with further tests,
so test edge cases yourself. Quick mode (`PSML_QUICK=1`) makes every notebook run on small
data in seconds.
"""


def _course_map(root: Path) -> str:
    """The README's course map, with links that stay inside the bundle."""
    text = (root / "README.md").read_text()
    m = re.search(r"^## Course map\n.*?(?=^## )", text, re.S | re.M)
    return m.group(0) if m else "## Course map\n\nSee `lectures/` and `exercises/`.\n"


def write_bundle(dest: Path, root: Path | None = None, archive: bool = False) -> Path:
    """Write the student bundle into ``dest`` (created; must not exist or be empty) and
    return it, or the ``.tar.gz`` next to it when ``archive``."""
    from psml.distribution import build_wheel
    from psml.hvdrun import pinned_version

    root = root or course.course_root()
    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        raise BundleError(f"{dest} exists and is not empty: choose a new folder or remove it")
    if root.resolve() in (dest, *dest.parents):
        raise BundleError(f"{dest} is inside the course repository: write the bundle elsewhere")
    dest.mkdir(parents=True, exist_ok=True)
    for folder in PUBLISHED:
        for f in published_files(root, folder):
            target = dest / f.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
    wheel = build_wheel(root=root)                 # the repository's cached wheel, if fresh
    (dest / "wheels").mkdir()
    shutil.copy2(wheel, dest / "wheels" / wheel.name)
    rel_wheel = f"wheels/{wheel.name}"
    shutil.copy2(root / "requirements.lock", dest / "requirements.lock")
    env = (root / "environment.yml").read_text()   # the repo installs psml editable
    (dest / "environment.yml").write_text(re.sub(r"^(\s*-\s*)-e \.(\s)", rf"\g<1>./{rel_wheel}\2",
                                                 env, flags=re.M))
    (dest / "README.md").write_text(STUDENT_README.format(
        title="Parallel & Scalable Machine and Deep Learning on HPC", wheel=rel_wheel,
        horovod=pinned_version()))
    (dest / "COURSE.md").write_text("# Course map\n" + _course_map(root).split("\n", 1)[1])
    problems = tree_leaks(dest, root)
    if problems:
        shutil.rmtree(dest)
        raise BundleError("the bundle would hold instructor material, so it was removed:\n  "
                          + "\n  ".join(problems[:20]) + "\nRun `make build` and check "
                          "exercises/ (`psml build` lists leaks).")
    if not archive:
        return dest
    out = dest.with_name(dest.name + ".tar.gz")
    with tarfile.open(out, "w:gz") as t:
        t.add(dest, arcname=dest.name)
    return out


def _student_bundle(args) -> int:
    out = write_bundle(Path(args.dir), archive=args.archive)
    print(f"student bundle: {out}  (no solutions, no hidden tests; start with its README.md)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("student-bundle", help="write the course for self-study (lectures, "
                       "exercises, psml wheel, environment files; no solutions) into DIR")
    p.add_argument("dir", help="new folder for the bundle")
    p.add_argument("--archive", action="store_true", help="also pack it into DIR.tar.gz")
    p.set_defaults(func=_student_bundle)
