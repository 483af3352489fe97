"""A real workshop hub for the tests: ``psml hub start`` on loopback ports, test users.

The fixture ``hub`` (one per test session) creates system users ``psmltest-*`` from a
roster, builds the non-editable course environment with ``tools/course-env.sh`` (kept in
``/var/tmp/psml-hub-env`` between runs; ``PSML_HUB_ENV`` names another), starts the hub with
``python -m psml hub start`` and releases 01. Teardown, also after a failure: ``psml hub
stop``, every process still running as a test user killed by pid, the users and their homes
deleted, the state folder removed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from course_env import course_env

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "01-numpy-vectorization"
INSTRUCTOR = "psmltest-i1"
STUDENTS = ("psmltest-s1", "psmltest-s2", "psmltest-s3")
ROSTER = "id,name,role\n" + f"{INSTRUCTOR},Ina Structor,instructor\n" + "".join(
    f"{s},Student {s[-2:].upper()},student\n" for s in STUDENTS)


def psml(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "psml", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    if check and r.returncode != 0:
        raise AssertionError(f"psml {' '.join(args)} failed ({r.returncode}):\n"
                             f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def free_port_base(low: int = 20000, high: int = 25000) -> int:
    """A port p with p, p+1, p+2 free on 127.0.0.1 (the hub, its API, the proxy's API);
    the Slurm hub tests and benchmarks/hub.py draw from other ranges, so they can run at once;
    all below Linux's ephemeral ports (32768+), where kernels and clients bind."""
    for _ in range(200):
        p = random.randrange(low, high)
        ok = True
        for q in (p, p + 1, p + 2):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
        if ok:
            return p
    raise RuntimeError("no three consecutive free ports")


@dataclass
class Hub:
    url: str
    state: Path
    env_link: Path          # the course env the hub was given (a link, so a test can break it)
    password: str
    admin_password: str
    settings: object = None
    tokens: dict = field(default_factory=dict)

    @property
    def course(self) -> Path:
        return self.state / "course"

    def api(self, method: str, path: str, body=None):
        from psml.hub import server

        return server.api(self.settings, method, path, body)

    def token(self, user: str) -> str:
        if user not in self.tokens:
            code, tok = self.api("POST", f"/users/{user}/tokens",
                                 {"note": "psml tests", "expires_in": 3600})
            assert code == 201, (code, tok)
            self.tokens[user] = tok["token"]
        return self.tokens[user]

    def session(self, user: str) -> requests.Session:
        """Requests as ``user`` through the proxy, with that user's own API token."""
        s = requests.Session()
        s.headers["Authorization"] = f"token {self.token(user)}"
        return s

    def spawn(self, user: str, timeout: float = 240) -> requests.Session:
        """Start ``user``'s server through the hub API and wait until it answers."""
        s = self.session(user)
        r = s.post(f"{self.url}/hub/api/users/{user}/server")
        assert r.status_code in (201, 202, 400), (r.status_code, r.text)  # 400: running
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = s.get(f"{self.url}/hub/api/users/{user}").json()
            server = info.get("servers", {}).get("", {})
            if server.get("ready"):
                return s
            assert info.get("pending") or server, f"{user}'s server stopped: {info}"
            time.sleep(0.5)
        raise AssertionError(f"{user}'s server not ready after {timeout} s")

    def user_api(self, user: str, path: str, method: str = "GET", **kw):
        s = self.session(user)
        return s.request(method, f"{self.url}/user/{user}{path}", timeout=300, **kw)


def as_user(user: str, *cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True, text=True,
                       **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} as {user} failed: {r.stderr}")
    return r


def cleanup_users() -> None:
    from psml.hub import roster

    roster.remove_users([INSTRUCTOR, *STUDENTS])


@pytest.fixture(scope="session")
def hub():
    if not shutil.which("runuser") or os.geteuid() != 0:
        pytest.fail("the hub tests run as root (they create system users)")
    cleanup_users()  # leftovers of an interrupted run
    env = course_env()
    state = Path(tempfile.mkdtemp(prefix="psml-hub-test-", dir="/var/tmp"))
    state.chmod(0o755)
    link = state / "course-env"
    link.symlink_to(env)
    roster_file = state / "roster.csv"
    roster_file.write_text(ROSTER)
    port = free_port_base()
    secrets = {"PSML_HUB_PASSWORD": "student-pw-" + os.urandom(4).hex(),
               "PSML_HUB_ADMIN_PASSWORD": "instructor-pw-" + os.urandom(16).hex()}
    old = {k: os.environ.get(k) for k in secrets}
    os.environ.update(secrets)
    try:
        psml("hub", "start", "--state", str(state / "srv"), "--roster", str(roster_file),
             "--port", str(port), "--environment", str(link), "--release", ASSIGNMENT)
        from psml.hub import server

        h = Hub(f"http://127.0.0.1:{port}", state / "srv", link,
                secrets["PSML_HUB_PASSWORD"], secrets["PSML_HUB_ADMIN_PASSWORD"],
                server.saved_settings(state / "srv"))
        yield h
    finally:
        psml("hub", "stop", "--state", str(state / "srv"), check=False, timeout=300)
        from psml.hub import roster

        for u in (INSTRUCTOR, *STUDENTS):
            if roster.ours(u):
                roster.kill_processes_of(u)
        cleanup_users()
        shutil.rmtree(state, ignore_errors=True)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def read_json(path: Path):
    return json.loads(Path(path).read_text())
