"""A workshop hub that spawns JupyterLab through a real Slurm: for tests and the benchmark.

    with SlurmHub(slurm, ["psmlslurm-a", "psmlslurm-b"]) as hub:   # slurm: SlurmCluster
        hub.spawn("psmlslurm-a", {"cores": 2})       # REST API, as the hub's admin service
        hub.wait_ready("psmlslurm-a")
        out = hub.run_code("psmlslurm-a", "import os; print(os.environ['SLURM_JOB_ID'])")

Sets up what a site has (tests/test_kernels.py's fake-module idea, one level up): a fake site
module ``Stages/2026``, the course kernels and the ``psml`` modulefile installed into a prefix
(``psml kernels install --prefix``), a reservation for the participants, system users (from
psml.hub.roster, removed again), a site profile with ``spawner = "slurm"`` and a hub started by
psml.hub.server (loopback only). Everything is stopped and removed on exit, also after a
failure: servers, jobs, reservation, users, folders.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from psml import kernels
from psml.hub import exchange, roster, server
from psml.hub.config import load_settings

from hub_session import free_port_base

SITE_MODULE = "Stages/2026"
RESERVATION = "psml-test-ws"
ACCOUNT = "psml-course"
KERNEL = "psml-mpi"


class SlurmHub:
    def __init__(self, slurm, users: list[str], queue_timeout: int = 10, runtime: int = 30):
        self.slurm, self.users = slurm, list(users)
        self.queue_timeout, self.runtime = queue_timeout, runtime
        self.dir: Path | None = None
        self.settings = None

    # --- set-up and tear-down ------------------------------------------------------------

    def __enter__(self) -> "SlurmHub":
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _setup(self) -> None:
        # Not pytest's tmp_path: the participants' uids must reach the modules and kernels.
        self.dir = Path(tempfile.mkdtemp(prefix="psml-hub-slurm-"))
        self.dir.chmod(0o755)
        site_mods = self.dir / "site-modules"
        (site_mods / "Stages").mkdir(parents=True)
        (site_mods / "Stages" / "2026.lua").write_text('setenv("PSML_TEST_STAGE", "2026")\n')
        prefix = self.dir / "prefix"
        profile = self.dir / "testsite.toml"
        profile.write_text(self._profile_toml(site_mods, prefix))
        kernels.install(kernels.load_profile(profile), prefix=prefix)
        for d in [self.dir, *self.dir.rglob("*")]:
            d.chmod(0o755 if d.is_dir() else 0o644)
        for k in (prefix / "share" / "jupyter" / "kernels").glob("*/kernel.sh"):
            k.chmod(0o755)
        roster.create_users([roster.Member(u, f"Slurm Tester {u}", "student")
                             for u in self.users], "psml-instructors")
        self.slurm.run("scontrol", "create", "reservation", f"ReservationName={RESERVATION}",
                       "StartTime=now", "Duration=120", f"Users={','.join(self.users)},root",
                       "Nodes=ALL", "Flags=IGNORE_JOBS")
        self.settings = s = load_settings(str(profile), state_dir=str(self.dir / "state"),
                                          port=free_port_base(25000, 28000),
                                          environment=sys.prefix)
        s.state.mkdir()
        s.state.chmod(0o755)
        for role in ("student", "instructor"):
            exchange.write_jupyter_config(s, role)
        # The hub (and the sbatch/squeue it runs) talk to this test's cluster.
        old = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(self.slurm.conf)
        try:
            server.start(s, [], self.users)
        finally:
            if old is None:
                os.environ.pop("SLURM_CONF")
            else:
                os.environ["SLURM_CONF"] = old
        self.password = server.load_secrets(s)["user_password"]
        self.token = server.load_secrets(s)["api_token"]

    def _profile_toml(self, site_mods: Path, prefix: Path) -> str:
        return f"""
description = "psml test site: minislurm + Lmod"
environment = "{sys.prefix}"
modules = ["{SITE_MODULE}"]
[variants.mpi]
display_name = "psml (MPI)"
env = {{ OMPI_MCA_mpi_warn_on_fork = "0", OMPI_MCA_rmaps_base_oversubscribe = "1" }}

[hub]
spawner = "slurm"
mem_limit = "1G"

[hub.slurm]
accounts = ["{ACCOUNT}"]
reservation = "{RESERVATION}"
runtime = {self.runtime}
cores = 1
modulepath = ["{site_mods}", "{prefix / 'modulefiles'}"]
modules = ["psml"]
kernel = "{KERNEL}"
queue_timeout = {self.queue_timeout}

[hub.slurm.partitions.debug]
max_cores = {self.slurm.cpus}
max_runtime = 60
"""

    def close(self) -> None:
        """Stop servers and hub, cancel what is left, remove reservation, users, folders."""
        s = self.settings
        if s is not None and server.pid(s):
            try:
                server.stop(s)
            except Exception as exc:  # noqa: BLE001 - go on cleaning up
                print(f"stopping the hub: {exc}")
        for u in self.users:
            self.slurm.run("scancel", "--user", u, check=False)
        self.slurm.run("scontrol", "delete", f"ReservationName={RESERVATION}", check=False)
        roster.remove_users(self.users)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- the hub's REST API ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.settings.url

    def api(self, method: str, path: str, body=None, timeout: float = 60):
        return server.api(self.settings, method, path, body, token=self.token, timeout=timeout)

    def server_model(self, user: str) -> dict | None:
        code, model = self.api("GET", f"/users/{user}")
        assert code == 200, f"GET /users/{user}: {code} {model}"
        return model["servers"].get("")

    def spawn(self, user: str, options: dict | None = None) -> tuple[int, object]:
        """Ask for ``user``'s server (``options``: the form's fields as JSON)."""
        self.api("POST", f"/users/{user}")  # 201 the first time, 409 afterwards
        return self.api("POST", f"/users/{user}/server", options or {})

    def wait_ready(self, user: str, timeout: float = 240) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            model = self.server_model(user)
            if model and model["ready"]:
                return model
            if model is None:
                raise RuntimeError(f"{user}'s spawn failed: {self.failure(user)}\n"
                                   f"{server.log_tail(self.settings)}")
            time.sleep(0.5)
        raise TimeoutError(f"{user}'s server not ready after {timeout:.0f} s:\n"
                           f"{server.log_tail(self.settings)}")

    def failure(self, user: str, timeout: float = 120) -> str:
        """The message of the last spawn event (the spawn page shows the same)."""
        r = requests.get(f"{self.url}/hub/api/users/{user}/server/progress", stream=True,
                         headers={"Authorization": f"token {self.token}"}, timeout=timeout)
        last = ""
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                event = json.loads(line[5:])
                last = event.get("message", last)
                if event.get("failed") or event.get("ready"):
                    break
        return last

    def stop(self, user: str, timeout: float = 60) -> None:
        self.api("DELETE", f"/users/{user}/server")
        end = time.monotonic() + timeout
        while self.server_model(user) is not None:
            if time.monotonic() > end:
                raise TimeoutError(f"{user}'s server did not stop within {timeout:.0f} s")
            time.sleep(0.5)

    # --- Slurm -------------------------------------------------------------------------------

    def jobs(self, user: str | None = None) -> list[dict]:
        """squeue's jobs (of ``user``): id, user, state, cpus, partition, reservation,
        account, and tasks (from scontrol)."""
        keys = ("id", "user", "state", "cpus", "partition", "reservation", "account")
        args = ["squeue", "-h", "-o", "%i|%u|%T|%C|%P|%v|%a"]
        args += ["-u", user] if user else []
        r = self.slurm.run(*args)
        jobs = [dict(zip(keys, ln.split("|"))) for ln in r.stdout.splitlines() if ln.strip()]
        for j in jobs:
            j["tasks"] = self.slurm.job_info(j["id"]).get("NumTasks", "")
        return jobs

    # --- code in a user's kernel ---------------------------------------------------------------

    def run_code(self, user: str, cells: list[str] | str, kernel: str = KERNEL,
                 timeout: float = 300) -> list[str]:
        """Run cells in a new ``kernel`` of ``user``'s server (through the hub's proxy and
        the kernel's websocket, as JupyterLab does); returns each cell's text output.
        An error in a cell raises with its traceback."""
        import websocket

        cells = [cells] if isinstance(cells, str) else cells
        base = f"{self.url}/user/{user}/api"
        auth = {"Authorization": f"token {self.token}"}
        r = requests.post(f"{base}/kernels", json={"name": kernel}, headers=auth, timeout=60)
        assert r.status_code == 201, f"starting kernel {kernel}: {r.status_code} {r.text}"
        kid = r.json()["id"]
        ws = websocket.create_connection(
            f"{base.replace('http', 'ws', 1)}/kernels/{kid}/channels", header=auth,
            timeout=timeout)
        try:
            return [self._execute(ws, code, timeout) for code in cells]
        finally:
            ws.close()
            requests.delete(f"{base}/kernels/{kid}", headers=auth, timeout=60)

    @staticmethod
    def _execute(ws, code: str, timeout: float) -> str:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                       "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False,
                        "stop_on_error": True}}))
        out, end = [], time.monotonic() + timeout
        while time.monotonic() < end:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                out.append(content["data"].get("text/plain", "") + "\n")
            elif kind == "error":
                raise AssertionError(f"cell failed:\n{code}\n---\n" + "\n".join(
                    content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)
        raise TimeoutError(f"cell still running after {timeout:.0f} s:\n{code}")
