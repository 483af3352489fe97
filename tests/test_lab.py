"""`make lab`'s server starts, lists the course kernel over its REST API, and stops;
nbgrader's JupyterLab extension is enabled and compatible."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_lab_server_lists_the_psml_kernel(tmp_path):
    port, token = _free_port(), "psml-test-token"
    env = dict(os.environ, PSML_VENV=str(Path(sys.executable).parents[1]),
               JUPYTER_RUNTIME_DIR=str(tmp_path))
    proc = subprocess.Popen([str(ROOT / "tools" / "lab.sh"), "--no-browser", f"--port={port}",
                             f"--IdentityProvider.token={token}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        specs = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}",
                                            timeout=2) as r:
                    specs = json.load(r)
                break
            except OSError:
                assert proc.poll() is None, f"server exited:\n{proc.stdout.read()}"
                time.sleep(0.5)
        assert specs, "the server did not answer within 60 s"
        assert "psml" in specs["kernelspecs"], sorted(specs["kernelspecs"])
        assert specs["kernelspecs"]["psml"]["spec"]["display_name"] == "Python 3 (psml)"
        with urllib.request.urlopen(f"{base}/api/contents/exercises?token={token}") as r:
            assert json.load(r)["type"] == "directory"  # the server's root is the course
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert f"127.0.0.1:{port}" in out, "the URL to open was not printed"


def test_nbgrader_labextension_enabled_and_compatible():
    r = subprocess.run([str(Path(sys.executable).parent / "jupyter"), "labextension", "list"],
                       capture_output=True, text=True, timeout=120)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + r.stderr)
    line = next((ln for ln in plain.splitlines() if "@jupyter/nbgrader" in ln), "")
    assert "enabled" in line and "OK" in line, f"nbgrader's extension is not usable:\n{plain}"
    assert "incompatible" not in plain.lower(), plain
