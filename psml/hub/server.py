"""Start, stop and ask the hub process; secrets and the REST API.

The hub runs detached (its own session) with its log in ``state/hub/jupyterhub.log``; the
proxy and the idle culler are its children. Students' servers outlive a hub restart
(``cleanup_servers = False``), so :func:`stop` stops them through the API first.
"""

from __future__ import annotations

import json
import os
import secrets as _secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from psml.course import tool_env
from psml.hub.config import PROXY_BIN, HubError, HubSettings, build_config, render


def load_secrets(s: HubSettings) -> dict:
    """Passwords and tokens, made once per state folder (0600, root only). The shared
    passwords can be chosen with PSML_HUB_PASSWORD / PSML_HUB_ADMIN_PASSWORD."""
    path = s.hub_dir / "secrets.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    fresh = {"user_password": _secrets.token_urlsafe(9),
             "admin_password": _secrets.token_urlsafe(32),
             "api_token": _secrets.token_hex(32), "proxy_token": _secrets.token_hex(32)}
    for key, var in (("user_password", "PSML_HUB_PASSWORD"),
                     ("admin_password", "PSML_HUB_ADMIN_PASSWORD")):
        if os.environ.get(var):  # an explicit choice wins
            data[key] = os.environ[var]
    for key, value in fresh.items():
        data.setdefault(key, value)
    if len(data["user_password"]) < 8 or len(data["admin_password"]) < 32:
        raise HubError("the student password needs >= 8 characters and the instructors' "
                       ">= 32 (JupyterHub's shared-password rules): change PSML_HUB_PASSWORD"
                       " / PSML_HUB_ADMIN_PASSWORD")
    s.hub_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    path.chmod(0o600)
    return data


def write_config(s: HubSettings, admins: list[str], students: list[str]) -> Path:
    path = s.hub_dir / "jupyterhub_config.py"
    path.write_text(render(build_config(s, admins, students), s))
    path.chmod(0o600)
    (s.hub_dir / "settings.json").write_text(s.to_json())
    return path


def saved_settings(state: str | Path) -> HubSettings:
    path = Path(state) / "hub" / "settings.json"
    if not path.is_file():
        raise HubError(f"no hub set up in {state}: run `psml hub start` (or pass --state)")
    return HubSettings.from_json(path.read_text())


# --------------------------------------------------------------------------------------------
# the process


def pid(s: HubSettings) -> int | None:
    """The running hub's pid, or None."""
    try:
        p = int((s.hub_dir / "jupyterhub.pid").read_text())
        os.kill(p, 0)
        return p
    except (OSError, ValueError):
        return None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start(s: HubSettings, admins: list[str], students: list[str],
          timeout: float = 180) -> int:
    """Start the hub in the background and wait until its API answers; returns its pid."""
    if pid(s):
        raise HubError(f"a hub already runs from {s.state} (pid {pid(s)}, {s.url}): "
                       "`psml hub stop` first")
    if not PROXY_BIN.exists():
        raise HubError(f"configurable-http-proxy is missing ({PROXY_BIN}): run "
                       "`PSML_SETUP_HUB=1 tools/setup.sh` (what `make hub` does)")
    busy = [p for p in (s.port, s.port + 1, s.port + 2) if not _port_free(p)]
    if busy:
        raise HubError(f"port(s) {busy} on 127.0.0.1 are in use: choose another --port "
                       "(the hub uses port, port+1 and port+2)")
    load_secrets(s)
    config = write_config(s, admins, students)
    log = open(s.hub_dir / "jupyterhub.log", "ab")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyterhub"), "-f", str(config)],
                            cwd=s.hub_dir, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=tool_env(), start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HubError(f"the hub exited at start (code {proc.returncode}); its log "
                           f"ends:\n{log_tail(s)}")
        try:
            if api(s, "GET", "/")[0] == 200:
                return proc.pid
        except OSError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise HubError(f"the hub did not answer within {timeout:.0f} s; its log ends:\n"
                   f"{log_tail(s)}")


def log_tail(s: HubSettings, n: int = 30) -> str:
    try:
        return "\n".join((s.hub_dir / "jupyterhub.log").read_text(errors="replace")
                         .splitlines()[-n:])
    except OSError:
        return "(no log)"


def api(s: HubSettings, method: str, path: str, body=None, token: str | None = None,
        timeout: float = 30) -> tuple[int, object]:
    """One call to the hub's REST API (``/hub/api`` + path) as the psml service."""
    token = token or load_secrets(s)["api_token"]
    req = urllib.request.Request(f"{s.url}/hub/api{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def stop_servers(s: HubSettings, timeout: float = 60) -> list[str]:
    """Stop every user's server through the API and wait until none is running."""
    code, users = api(s, "GET", "/users")
    if code != 200:
        raise HubError(f"the hub API answered {code}: {users}")
    names = [u["name"] for u in users if u.get("servers")]
    for n in names:
        api(s, "DELETE", f"/users/{n}/server")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, users = api(s, "GET", "/users")
        if not any(u.get("servers") for u in users):
            break
        time.sleep(0.5)
    return names


def _terminate(p: int, timeout: float = 20) -> None:
    try:
        os.kill(p, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(p, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(p, signal.SIGKILL)


def stop(s: HubSettings, keep_servers: bool = False) -> None:
    """Stop the students' servers (unless ``keep_servers``: a restart), the hub and the
    proxy."""
    hub = pid(s)
    if hub and not keep_servers:
        try:
            stop_servers(s)
        except OSError:
            pass  # a hub that does not answer is stopped all the same
    if hub:
        _terminate(hub)
    try:
        proxy = int((s.hub_dir / "proxy.pid").read_text())
        if not keep_servers:
            _terminate(proxy)
    except (OSError, ValueError):
        pass
