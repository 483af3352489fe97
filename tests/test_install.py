"""The student-safe install: the psml wheel carries its data files and nothing of the
instructor's, works from anywhere without the repository, the course environment is
non-editable and readable by every user, and the student bundle holds no solution."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from course_env import course_env, run_course_env

import psml
from psml import course
from psml.bundle import secret_lines, tree_leaks, write_bundle
from psml.distribution import build_wheel

ROOT = Path(__file__).resolve().parents[1]
SOLUTION_FILES = {p.name for p in (ROOT / "solutions").rglob("*") if p.is_file()} - \
    {p.name for p in (ROOT / "exercises").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_holds_the_data_files_and_no_solutions(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    # Every job script and site profile of the repository, also ones added after this test.
    for folder, pattern in (("jobs", "*.sbatch"), ("kernels/sites", "*.toml"),
                            ("kernels", "logo-*.png")):
        files = sorted((ROOT / folder).glob(pattern))
        assert files, f"no {folder}/{pattern} in the repository"
        missing = [f.name for f in files if f"psml/_data/{folder}/{f.name}" not in names]
        assert not missing, f"{folder}/ files missing from the wheel: {missing}"
    assert "psml/_data/pyproject.toml" in names
    instructor = [n for n in names if n.endswith(".ipynb") or "solutions" in n.split("/")
                  or Path(n).name in SOLUTION_FILES]
    assert not instructor, f"the wheel holds instructor files: {instructor}"
    assert tree_leaks(wheel.parent, ROOT) == []


def test_wheel_works_without_the_repository(wheel, tmp_path):
    """Installed with --target (the real files, no link to the checkout), run from elsewhere:
    psml imports from there and finds site profiles, job scripts, logos and the pins."""
    target = tmp_path / "site-packages"
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True)
    probe = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import psml, psml.kernels as k, psml.resources as r
from psml.cluster import job_script
from psml.hvdrun import pinned_version
k.main(["kernels", "install", "--site", "local", "--var", "PSML_VENV=/opt/venv",
        "--prefix", sys.argv[2]])
kdir = k.kernels_dir(prefix=sys.argv[2]) / "psml-cpu"
print(json.dumps({"file": psml.__file__, "sites": k.available_sites(),
                  "jobs": sorted(p.name for p in r.JOBS.glob("*.sbatch")),
                  "mpi": str(job_script("mpi")), "horovod": pinned_version(),
                  "kernel": sorted(p.name for p in kdir.iterdir())}))
"""
    r = subprocess.run([sys.executable, "-c", probe, str(target), str(tmp_path / "k")],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(str(target)), f"psml imported from {got['file']}"
    assert got["sites"] == sorted(p.stem for p in (ROOT / "kernels/sites").glob("*.toml"))
    assert got["jobs"] == sorted(p.name for p in (ROOT / "jobs").glob("*.sbatch"))
    assert got["mpi"].startswith(str(target)) and Path(got["mpi"]).read_text() == \
        (ROOT / "jobs/mpi.sbatch").read_text()
    assert got["horovod"] == course_horovod_pin()
    assert {"kernel.json", "kernel.sh", "logo-64x64.png"} <= set(got["kernel"]), got["kernel"]


def course_horovod_pin() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["psml"]["horovod"]


def test_student_bundle_holds_no_solution_or_hidden_test(tmp_path):
    out = write_bundle(tmp_path / "bundle", ROOT, archive=True)
    bundle = tmp_path / "bundle"
    assert out == tmp_path / "bundle.tar.gz" and out.is_file()
    for a in course.assignments(ROOT):
        assert (bundle / "exercises" / a / f"{a}.ipynb").is_file(), a
    assert sorted(p.name for p in (bundle / "lectures").glob("*.ipynb")) == \
        sorted(p.name for p in (ROOT / "lectures").glob("*.ipynb"))
    assert [p.name for p in (bundle / "wheels").iterdir()] == \
        [f"psml-{psml.__version__}-py3-none-any.whl"]        # the wheel, no build leftovers
    assert "-e ." not in (bundle / "environment.yml").read_text()
    assert "wheels/psml-" in (bundle / "environment.yml").read_text()
    assert (bundle / "requirements.lock").read_text() == (ROOT / "requirements.lock").read_text()
    assert "make lab" not in (bundle / "README.md").read_text()   # no repository there
    files = [p for p in bundle.rglob("*") if p.is_file()]
    assert not [p for p in files if "solutions" in p.parts or p.name in SOLUTION_FILES]
    assert tree_leaks(bundle, ROOT) == []
    with tarfile.open(out) as t:     # the archive holds exactly the checked folder
        packed = {m.name for m in t.getmembers() if m.isfile()}
    assert packed == {f"bundle/{p.relative_to(bundle).as_posix()}" for p in files}


def test_leak_scan_finds_a_planted_solution(tmp_path):
    """The scanner is not vacuous: a solution line or a marker in any file is reported."""
    line = min(secret_lines(ROOT))
    (tmp_path / "notes.md").write_text(f"some text\n    {line}\n")
    (tmp_path / "x.html").write_text("<pre><span>### BEGIN HIDDEN TESTS</span></pre>")
    found = tree_leaks(tmp_path, ROOT)
    assert any(line in f for f in found) and any("BEGIN HIDDEN TESTS" in f for f in found), found


def test_hpc_runbook_installs_non_editable():
    text = (ROOT / "docs" / "hpc-deployment.md").read_text()
    assert "pip install -e" not in text and "install -e " not in text
    assert "psml wheel" in text and "tools/course-env.sh" in text


@pytest.mark.slow
def test_course_env_is_non_editable_and_readable_by_students():
    prefix = course_env()
    again = run_course_env(prefix)                # idempotent: a second run changes nothing
    assert "creating" not in again and "installing the pinned" not in again, again
    spec = json.loads((prefix / "share/jupyter/kernels/psml/kernel.json").read_text())
    assert spec["argv"][0] == str(prefix / "bin" / "python")
    bad = [str(p) for p in prefix.rglob("*") if not p.is_symlink()
           and (p.stat().st_mode & 0o004 == 0 or p.stat().st_mode & 0o022)]
    assert not bad, f"not readable by all, or writable by others: {bad[:5]}"
    probe = ("import psml, horovod, psml.resources as r; from psml.cluster import job_script;"
             "print(psml.__file__, horovod.__version__, job_script('mpi'))")
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"     # util-linux
    r = subprocess.run([runuser, "-u", "nobody", "--", str(prefix / "bin/python"), "-c", probe],
                       cwd="/", capture_output=True, text=True, env={"PATH": os.defpath})
    assert r.returncode == 0, r.stderr
    file, hvd, mpi = r.stdout.split()
    assert file.startswith(str(prefix)) and mpi.startswith(str(prefix)), r.stdout
    assert hvd == course_horovod_pin()
