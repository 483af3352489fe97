"""Time to grade a class: ``psml grade`` with 1 and 2 workers, and with 2 workers while a CPU
hog keeps every core busy, vs plain ``nbgrader autograde``.

30 submissions of one assignment (PSML_GRADING_N to change), a mix of good and bad ones from
tests/grading_corpus.py (good, untouched, exceptions, restructured cells, noise, pasted cells,
monkeypatching, ...; the slow cases -- fork bomb, memory hog -- are left out so the runs
compare like with like). The three ``psml grade`` runs must give every submission the same
score: neither parallelism nor a loaded machine may change a grade (01's loop-vs-NumPy
cells time code, but no grade depends on a time). Plain nbgrader gets the same notebooks in
one ``nbgrader autograde`` call. Peak memory: the largest resident set of one grading worker
(nbgrader + kernel, sampled every 0.2 s).
Writes results/grading.json; exits 1 if the scores differ.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ["PSML_QUICK"] = "1"
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])

from grading_corpus import make_corpus  # noqa: E402

from psml import grading  # noqa: E402
from psml.course import assignments, tool_env  # noqa: E402

N = int(os.environ.get("PSML_GRADING_N", "30"))
MIX = ["good", "untouched", "solution_exception", "restructured", "noisy", "wrong_kernelspec",
       "edited_tests", "corrupt_json", "pasted_cells", "monkeypatch"]


def _course(tmp: Path, assignment: str) -> Path:
    course = tmp / "course"
    for d in ("solutions", "exercises"):
        shutil.copytree(ROOT / d / assignment, course / d / assignment)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    return course


def _class(course: Path, assignment: str, inbox: Path) -> None:
    corpus = inbox.parent / "corpus"
    make_corpus(course, assignment, corpus, only=MIX)
    for i in range(N):
        kind = MIX[i % len(MIX)]
        shutil.copytree(corpus / kind, inbox / f"s{i:03d}-{kind}")


class PeakRSS:
    """Largest summed RSS of any one process tree rooted at a child of this process."""

    def __init__(self):
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _tree_rss(self):
        procs = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    st = (d / "stat").read_text().rsplit(")", 1)[1].split()
                    procs[int(d.name)] = (int(st[1]), int(st[21]) * os.sysconf("SC_PAGE_SIZE"))
                except (OSError, IndexError, ValueError):
                    pass
        kids = {p: [] for p in procs}
        for p, (pp, _) in procs.items():
            kids.setdefault(pp, []).append(p)

        def total(p):
            return procs.get(p, (0, 0))[1] + sum(total(c) for c in kids.get(p, []))

        return [total(c) for c in kids.get(os.getpid(), [])]

    def _run(self):
        while not self._stop.wait(0.2):
            for rss in self._tree_rss():
                self.peak_mb = max(self.peak_mb, rss / 2**20)

    def __enter__(self):
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def _spin() -> None:
    while True:
        pass


class CpuHog:
    """One busy process per core for the duration of a ``with`` block."""

    def __enter__(self):
        self.procs = [multiprocessing.Process(target=_spin, daemon=True)
                      for _ in range(os.cpu_count() or 1)]
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.join()


def main() -> int:
    names = assignments(ROOT)
    assignment = "01-numpy-vectorization" if "01-numpy-vectorization" in names else names[0]
    out = {"assignment": assignment, "submissions": N, "mix": MIX, "cpus": os.cpu_count(),
           "isolated": grading.can_isolate(), "runs": {},
           "load_average_at_start": round(os.getloadavg()[0], 2),
           "note": "seconds depend on what else runs (see the load average); the scores are "
                   "what must not change"}
    limits = grading.Limits(cell_timeout=60, notebook_timeout=300)
    scores = {}
    for name, workers, hog in (("psml_grade_1_workers", 1, False),
                               ("psml_grade_2_workers", 2, False),
                               ("psml_grade_2_workers_cpu_hog", 2, True)):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            course = grading.Course.load(_course(tmp, assignment))
            _class(course.root, assignment, tmp / "inbox")
            subs = grading.collect(course, assignment, tmp / "inbox")
            t0 = time.perf_counter()
            with PeakRSS() as mem, (CpuHog() if hog else contextlib.nullcontext()):
                res = grading.grade_batch(course, assignment, subs, limits, workers=workers,
                                          progress=False)
            scores[name] = {r.student: r.score for r in res}
            out["runs"][name] = {
                "seconds": round(time.perf_counter() - t0, 1),
                "peak_rss_per_worker_mb": round(mem.peak_mb, 1),
                "graded": sum(r.status == "graded" for r in res),
                "flagged": sum(r.status == "flagged" for r in res),
                "failed": sum(r.status == "failed" for r in res),
                "total_score": sum(scores[name].values())}
            if hog:
                out["runs"][name]["note"] = f"{os.cpu_count()} busy processes (one per core)"
            print(name, out["runs"][name], flush=True)
    first = next(iter(scores.values()))
    out["same_scores"] = all(s == first for s in scores.values())
    out["score_differences"] = sorted({st for s in scores.values() for st in s
                                       if s[st] != first.get(st)})
    with tempfile.TemporaryDirectory() as tmp:  # plain nbgrader, same class
        tmp = Path(tmp)
        course = _course(tmp, assignment)
        _class(course, assignment, tmp / "inbox")
        shutil.copytree(tmp / "inbox", course / "submitted_raw")
        for d in sorted((course / "submitted_raw").iterdir()):
            shutil.copytree(d / assignment, course / "submitted" / d.name / assignment)
        env = tool_env()
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment,
                        "--force", f"--CourseDirectory.release_directory={tmp / 'rel'}"],
                       cwd=course, env=env, capture_output=True, check=True)
        t0 = time.perf_counter()
        with PeakRSS() as mem:
            r = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", assignment,
                                "--create", "--force"], cwd=course, env=env,
                               capture_output=True, text=True)
        autograde_s = time.perf_counter() - t0
        graded = len(list((course / "autograded").glob(f"*/{assignment}")))
        t1 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", assignment,
                        "--force"], cwd=course, env=env, capture_output=True)
        out["runs"]["plain_nbgrader_autograde"] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "autograde_seconds": round(autograde_s, 1),
            "feedback_seconds": round(time.perf_counter() - t1, 1),
            "peak_rss_mb": round(mem.peak_mb, 1), "exit_code": r.returncode,
            "graded": graded, "note": "one `nbgrader autograde` + one `generate_feedback`: "
                                      "one submission at a time, no isolation or limits; "
                                      "submissions it cannot process stay ungraded"}
        print(out["runs"]["plain_nbgrader_autograde"], flush=True)
        # the usual workaround: one nbgrader call per student, so one failure stops only one
        shutil.rmtree(course / "autograded")
        students = sorted(d.name for d in (course / "submitted").iterdir())
        t0 = time.perf_counter()
        ok = 0
        for s in students:
            r = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", assignment,
                                "--create", "--force", f"--student={s}"], cwd=course, env=env,
                               capture_output=True)
            ok += r.returncode == 0
        out["runs"]["plain_nbgrader_per_student_loop"] = {
            "seconds": round(time.perf_counter() - t0, 1), "graded": ok,
            "note": "`nbgrader autograde --student S` for each student in turn, no feedback, "
                    "no isolation or limits"}
        print(out["runs"]["plain_nbgrader_per_student_loop"], flush=True)
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "grading.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0 if out["same_scores"] else 1



if __name__ == "__main__":
    raise SystemExit(main())
