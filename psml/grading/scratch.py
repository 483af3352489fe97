"""The scratch course of one submission: the only place its grading reads and writes.

``S/course/`` is an nbgrader course holding a copy of the template gradebook (the assignment,
no student), the student's notebooks rebuilt on the release (:mod:`.notebooks`) and the
source's data files. ``S/run/`` belongs to the kernel's uid: ``work/`` is the kernel's working
folder (data files and the student's own files, no notebook), ``home/`` its HOME, and the
connection file and Unix sockets. ``S/spec.json`` tells the launcher (:mod:`.sandbox`) what to
allow; ``S/jupyter/`` holds the ``psml-sandbox`` kernelspec that starts it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from psml.grading import sandbox
from psml.grading.submissions import Submission
from psml.grading.limits import Limits
from psml.grading.nbconfig import write_config
from psml.grading.notebooks import normalise, read_notebook, shares_cells

MAX_EXTRA_FILES_MB = 20  # non-notebook files a student submits (data they made, ...)


@dataclass
class Scratch:
    folder: Path
    reasons: list[str]
    graded: list[str]  # release notebooks found and written for grading

    @property
    def course(self) -> Path:
        return self.folder / "course"

    @property
    def run(self) -> Path:
        return self.folder / "run"


def _find(sub: Submission, release: dict, reasons: list[str]) -> dict[str, Path]:
    """Release notebook name -> the submitted file to grade for it."""
    present = {p.name: p for p in sorted(sub.folder.rglob("*.ipynb"))
               if ".ipynb_checkpoints" not in p.parts}
    top = {p.stem: p for p in sub.folder.glob("*.ipynb")}
    found = {}
    for name, rel in release.items():
        path = top.get(name)
        if path is None:  # moved into a subfolder, renamed or pasted: find it by its cells
            for p in present.values():
                if p.stem in release and p.parent == sub.folder:
                    continue
                nb, _ = read_notebook(p)
                if nb is not None and shares_cells(nb, rel):
                    path = p
                    reasons.append(f"{name}.ipynb was missing; graded "
                                   f"{p.relative_to(sub.folder)} in its place")
                    break
        if path is None:
            reasons.append(f"{name}.ipynb is missing: 0 points for it")
        else:
            found[name] = path
    used = {p.resolve() for p in found.values()}
    for p in present.values():
        if p.resolve() not in used and p.stem not in release:
            reasons.append(f"extra notebook {p.relative_to(sub.folder)} was ignored")
    return found


def _copy_own_files(src: Path, dests: list[Path], reasons: list[str]) -> None:
    """The student's own files (data, images), at most MAX_EXTRA_FILES_MB in all."""
    size = 0
    for p in sorted(src.rglob("*")):
        if p.is_file() and p.suffix != ".ipynb" and ".ipynb_checkpoints" not in p.parts \
                and p.name != "timestamp.txt":
            size += p.stat().st_size
            if size > MAX_EXTRA_FILES_MB * 2**20:
                reasons.append(f"files beyond {MAX_EXTRA_FILES_MB} MB were not copied")
                return
            for d in dests:
                target = d / p.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, target)


def kernel_env(home: Path, quick: bool, isolated: bool) -> dict:
    """What the student's kernel sees: nothing of the grader's environment but the basics."""
    env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin",
                                    "/usr/bin", "/bin"]),
           "HOME": str(home), "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(home / ".mpl"),
           "IPYTHONDIR": str(home / ".ipython"), "TMPDIR": "/tmp", "PYTHONNOUSERSITE": "1",
           "PSML_DATA": str(home / "psml-data")}
    for k, v in os.environ.items():
        if (k.startswith(("OMPI_", "TF_", "LC_", "PSML_")) or k in ("LANG", "TZ")) \
                and k != "PSML_DATA":
            env[k] = v
    data = os.environ.get("PSML_DATA")
    if data and os.path.isdir(data) and (not isolated or os.stat(data).st_mode & 0o005 == 5):
        env["PSML_DATA"] = data  # a data cache everyone may read (else the offline subset)
    env.pop("PSML_GRADE_EVENTS", None)
    if quick:
        env["PSML_QUICK"] = "1"
    return env


def build_scratch(folder: Path, sub: Submission, prep, course, limits: Limits, uid: int,
                  isolated: bool, quick: bool) -> Scratch:
    """Everything the grading of ``sub`` needs, in ``folder`` (see the module docstring)."""
    a = prep.assignment
    s = Scratch(folder, [], [])
    dest = s.course / "submitted" / sub.student / a
    dest.mkdir(parents=True)
    (s.course / "autograded").mkdir()
    shutil.copy(prep.template_db, s.course / "gradebook.db")
    shutil.copytree(prep.data_dir, s.course / "source" / a)
    work, home = s.run / "work", s.run / "home"
    home.mkdir(parents=True)
    shutil.copytree(prep.data_dir, work)
    for name, path in _find(sub, prep.release, s.reasons).items():
        nb, problem = read_notebook(path)
        if problem:
            s.reasons.append(problem + ": 0 points for it")
            continue
        fixed, repairs = normalise(nb, prep.release[name])
        s.reasons += [f"{name}: {r}" for r in repairs]
        nbformat.write(fixed, dest / f"{name}.ipynb")
        s.graded.append(name)
    _copy_own_files(sub.folder, [dest, work], s.reasons)
    ts = sub.folder / "timestamp.txt"
    if ts.is_file():
        shutil.copy(ts, dest / "timestamp.txt")
    (s.folder / "runtime").mkdir()
    (s.folder / "root").mkdir()
    kdir = s.folder / "jupyter" / "kernels" / "psml-sandbox"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "psml.grading.sandbox", str(s.folder / "spec.json"),
                 "-f", "{connection_file}"],
        "display_name": "psml (grading sandbox)", "language": "python"}))
    ro = list(sandbox.SYSTEM_PATHS) + sandbox.runtime_paths()
    env = kernel_env(home, quick, isolated)
    if env["PSML_DATA"] != str(home / "psml-data"):
        ro.append(env["PSML_DATA"])
    spec = {"uid": uid, "isolate": isolated, "python": sys.executable, "run_dir": str(s.run),
            "cwd": str(work), "root": str(s.folder / "root"), "limits": limits.__dict__,
            "env": env, "ro": ro, "rw": [str(s.run)]}
    (s.folder / "spec.json").write_text(json.dumps(spec))
    write_config(s.course, course, s.course / "gradebook.db", limits, s.run / "ipc")
    if isolated:
        # root-only, except the way to the kernel's own folder (owned by its uid)
        os.chmod(s.folder, 0o711)
        for p in (s.course, s.folder / "runtime", s.folder / "jupyter", s.folder / "root"):
            os.chmod(p, 0o700)
        for p in (s.course / "gradebook.db", s.folder / "spec.json",
                  s.course / "nbgrader_config.py"):
            os.chmod(p, 0o600)
        for p in [s.run, *s.run.rglob("*")]:
            os.chown(p, uid, uid)
        os.chmod(s.run, 0o700)
    return s


