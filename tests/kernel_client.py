"""A student's kernel driven over the Jupyter server's websocket, as JupyterLab drives it:
start (or reuse) a kernel through the REST API, send an execute_request, collect the
output. Used by the hub tests and benchmarks/hub.py."""

from __future__ import annotations

import json
import time
import uuid

import requests
import websocket


def run_code(url: str, user: str, token: str, code: str, kernel_id: str | None = None,
             timeout: float = 300, retries: int = 0, reconnects: list | None = None
             ) -> tuple[str, str]:
    """Start (or reuse) a psml kernel and run ``code`` over its websocket; (kernel, output).

    ``retries``: when the server drops the websocket, connect again and run the cell again,
    as a student in JupyterLab would (it reconnects by itself; output sent meanwhile is
    lost); each reconnect is appended to ``reconnects`` as ``{"user", "error"}``."""
    h = {"Authorization": f"token {token}"}
    base = f"{url}/user/{user}"
    if kernel_id is None:
        r = requests.post(f"{base}/api/kernels", json={"name": "psml"}, headers=h, timeout=120)
        r.raise_for_status()
        kernel_id = r.json()["id"]
    deadline = time.monotonic() + timeout
    for _ in range(retries):
        try:
            return kernel_id, _execute(base, user, token, kernel_id, code, deadline)
        except websocket.WebSocketConnectionClosedException as e:
            if reconnects is not None:
                reconnects.append({"user": user, "error": str(e)})
    return kernel_id, _execute(base, user, token, kernel_id, code, deadline)  # last try


def _execute(base: str, user: str, token: str, kernel_id: str, code: str,
             deadline: float) -> str:
    ws = websocket.create_connection(
        f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {token}"], timeout=max(1, deadline - time.monotonic()))
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": "execute_request",
                                   "username": user, "session": uuid.uuid4().hex,
                                   "version": "5.3"},
                        "parent_header": {}, "metadata": {}, "channel": "shell",
                        "content": {"code": code, "silent": False, "store_history": True,
                                    "user_expressions": {}, "allow_stdin": False}}))
    out, replied, idle = [], False, False
    try:
        while time.monotonic() < deadline:
            m = json.loads(ws.recv())
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                out.append(m["content"]["text"])
            if m["msg_type"] == "error":
                raise RuntimeError(f"{user}: {m['content']['ename']}: {m['content']['evalue']}")
            replied |= m["msg_type"] == "execute_reply"
            idle |= m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
            if replied and idle:  # the reply (shell) and all output (iopub, then idle)
                return "".join(out)
    finally:
        ws.close()
    raise TimeoutError(f"{user}: no execute_reply within the time left")
