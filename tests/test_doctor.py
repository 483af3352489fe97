"""psml doctor: passes in the course environment, fails with a fix when a package is broken."""

import subprocess
import sys


def doctor(env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "psml", "doctor"], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def test_doctor_passes_here():
    r = doctor()
    assert r.returncode == 0, r.stdout + r.stderr
    for item in ("python", "tensorflow-cpu", "kernel", "CPUs", "GPUs", "MPI", "data"):
        assert item in r.stdout, f"doctor does not report {item}:\n{r.stdout}"
    assert "All required checks passed" in r.stdout


def test_doctor_fails_with_fix_when_a_package_is_missing(tmp_path):
    import os

    shadow = tmp_path / "mlxtend"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('mlxtend is not installed')")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = doctor(env)
    assert r.returncode == 1, r.stdout
    assert "✗ mlxtend" in r.stdout and "fix:" in r.stdout
    assert "1 problem(s): mlxtend" in r.stdout
