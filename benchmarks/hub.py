"""The workshop hub under a class: how long students wait, what it costs, what survives.

Runs as root against a hub started by ``psml hub start`` (loopback only, test users
``psmlhubb-*`` created and deleted again). Writes the top-level keys below into
``results/hub.json``, keeping keys others wrote (the Slurm spawner's "slurm"):

- ``login_to_first_cell``: 5 students one after another in Debian's chromium: log in →
  JupyterLab rendered → a new "Python 3 (psml)" notebook ran its first cell (median, worst);
- ``class_of_30``: 30 students at once through the REST API: every server spawned, every
  student ran the first code cell of 01 over a kernel websocket (bounded in time); peak
  memory of the machine and per student (server + kernel); hub API latency p50/p95;
- ``hub_restart``: the hub restarted while 5 students hold a kernel with unsaved state:
  servers and kernels survive, the state is still there, time until the API answers again;
- ``bad_input``: what wrong passwords, unknown users, a bad roster, a failed spawn, a double
  submit and an unreleased fetch answer.

    .venv/bin/python benchmarks/hub.py [--students 30] [--env PREFIX]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser import browser_session, login, new_page  # noqa: E402
from course_env import course_env  # noqa: E402
from hub_session import free_port_base  # noqa: E402
from kernel_client import run_code  # noqa: E402

from psml.hub import roster, server  # noqa: E402

RESULTS = ROOT / "results" / "hub.json"
PREFIX = "psmlhubb-"
ASSIGNMENT = "01-numpy-vectorization"


def psml(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "psml", *args], capture_output=True, text=True,
                       cwd=ROOT)
    if check and r.returncode:
        raise RuntimeError(f"psml {' '.join(args)}: {r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r


class Timed:
    """Every hub API call's latency (the p95 figure)."""

    def __init__(self):
        self.lat, self.lock = [], threading.Lock()

    def __call__(self, sess, method, url, **kw):
        t = time.perf_counter()
        r = sess.request(method, url, timeout=120, **kw)
        if "/hub/api/" in url:
            with self.lock:
                self.lat.append(time.perf_counter() - t)
        return r


def first_code_cell() -> str:
    nb = nbformat.read(ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


def rss_of(uid: int) -> int:
    total = 0
    for p in psutil.process_iter(["uids", "memory_info"]):
        if p.info["uids"] and p.info["uids"].real == uid and p.info["memory_info"]:
            total += p.info["memory_info"].rss
    return total


class MemorySampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.base, self.stop_ = 0, psutil.virtual_memory().used, False

    def run(self):
        while not self.stop_:
            self.peak = max(self.peak, psutil.virtual_memory().used)
            time.sleep(0.5)


def pct(xs, q):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3) if xs else None


# --------------------------------------------------------------------------------------------


def login_to_first_cell(url: str, users: list[str], password: str, tokens: dict) -> dict:
    """In chromium: log in, wait until JupyterLab has rendered; then the student's first cell
    (a new psml kernel running ``6 * 7``) through their server's kernel API, as the lab does."""
    times = []
    with browser_session(timeout_ms=300_000) as browser:
        for u in users:
            page = new_page(browser)
            t0 = time.perf_counter()
            login(page, url, u, password, spawn_timeout_ms=300_000)
            t_lab = time.perf_counter() - t0
            _, out = run_code(url, u, tokens[u], "print(6 * 7)")
            assert out.strip() == "42", out
            times.append((round(t_lab, 2), round(time.perf_counter() - t0, 2)))
            page.context.close()
    total = [t for _, t in times]
    return {"students": len(users), "lab_ready_s": [a for a, _ in times],
            "first_cell_s": total, "median_s": round(statistics.median(total), 2),
            "worst_s": max(total),
            "how": "chromium login until JupyterLab rendered, then a new psml kernel runs "
                   "print(6 * 7) over the server's websocket"}


def class_of_n(url: str, users: list[str], tokens: dict, timed: Timed,
               bound_s: float = 1200) -> dict:
    code = first_code_cell()
    mem = MemorySampler()
    mem.start()
    t0 = time.perf_counter()
    results, reconnects = {}, []

    def one(u):
        s = requests.Session()
        s.headers["Authorization"] = f"token {tokens[u]}"
        ts = time.perf_counter()
        timed(s, "POST", f"{url}/hub/api/users/{u}/server")
        while time.perf_counter() - t0 < bound_s:
            info = timed(s, "GET", f"{url}/hub/api/users/{u}").json()
            if info.get("servers", {}).get("", {}).get("ready"):
                break
            time.sleep(1)
        else:
            return u, {"error": "not ready in time"}
        spawned = time.perf_counter() - ts
        try:
            run_code(url, u, tokens[u], code, retries=2, reconnects=reconnects,
                     timeout=max(30, bound_s - (time.perf_counter() - t0)))
        except Exception as e:  # noqa: BLE001 - recorded, not fatal: the figure says how many
            return u, {"spawn_s": round(spawned, 1), "error": str(e)[:200]}
        return u, {"spawn_s": round(spawned, 1),
                   "first_cell_s": round(time.perf_counter() - ts, 1)}

    with ThreadPoolExecutor(len(users)) as ex:
        for u, r in ex.map(one, users):
            results[u] = r
    wall = time.perf_counter() - t0
    import pwd

    per = [rss_of(pwd.getpwnam(u).pw_uid) for u in users]
    mem.stop_ = True
    ok = [r for r in results.values() if "first_cell_s" in r]
    return {"students": len(users), "spawned": sum("spawn_s" in r for r in results.values()),
            "ran_cell_of_01": len(ok), "wall_s": round(wall, 1),
            "spawn_s_median": pct([r["spawn_s"] for r in ok], 0.5),
            "first_cell_s_median": pct([r["first_cell_s"] for r in ok], 0.5),
            "first_cell_s_worst": max((r["first_cell_s"] for r in ok), default=None),
            "errors": {u: r["error"] for u, r in results.items() if "error" in r},
            "websocket_reconnects": reconnects,
            "machine_peak_used_gb": round(mem.peak / 2**30, 2),
            "machine_used_before_gb": round(mem.base / 2**30, 2),
            "per_student_rss_mb_median": round(statistics.median(per) / 2**20),
            "per_student_rss_mb_max": round(max(per) / 2**20),
            "hub_api_calls": len(timed.lat), "hub_api_p50_s": pct(timed.lat, 0.5),
            "hub_api_p95_s": pct(timed.lat, 0.95)}


def hub_restart(s, url, users, tokens) -> dict:
    kernels = {}
    for u in users:
        kernels[u], _ = run_code(url, u, tokens[u], "unsaved = 6 * 7")
    t0 = time.perf_counter()
    psml("hub", "stop", "--keep-servers", "--state", str(s.state))
    t_stop = time.perf_counter() - t0
    psml("hub", "start", "--state", str(s.state))
    t_back = time.perf_counter() - t0
    survived = {}
    for u in users:
        try:
            _, out = run_code(url, u, tokens[u], "print(unsaved)", kernel_id=kernels[u])
            survived[u] = out.strip() == "42"
        except Exception as e:  # noqa: BLE001
            survived[u] = f"lost: {e}"[:120]
    return {"students": len(users), "stop_s": round(t_stop, 1),
            "api_back_after_s": round(t_back, 1),
            "kernels_kept_state": sum(v is True for v in survived.values()),
            "details": survived}


def bad_input(s, url, password, users, tokens, env_link) -> dict:
    out = {}
    for case, (u, pw) in {"wrong_password": (users[0], "wrong-password"),
                          "unknown_user": ("nobody-here", password)}.items():
        sess = requests.Session()
        sess.get(f"{url}/hub/login")
        r = sess.post(f"{url}/hub/login", data={"username": u, "password": pw,
                                                "_xsrf": sess.cookies.get("_xsrf", path="/hub/")},
                      allow_redirects=False)
        out[case] = {"status": r.status_code,
                     "message": "Invalid username or password" if
                     "Invalid username or password" in r.text else r.text[-200:]}
    try:
        roster.parse("id,name,role\nx1,A,student\nx1,B,student\nBad Id,C,student\n")
    except roster.RosterError as e:
        out["bad_roster"] = str(e)
    u = users[0]
    h = {"Authorization": f"token {tokens[u]}"}
    act = lambda a, asg: requests.post(f"{url}/user/{u}/assignments/{a}", headers=h,  # noqa
                                       data={"course_id": "psml", "assignment_id": asg},
                                       timeout=300).json()
    act("fetch", ASSIGNMENT)
    out["fetch_unreleased"] = act("fetch", "02-perceptron")
    out["submit_twice"] = [act("submit", ASSIGNMENT)["success"] for _ in range(2)]
    target = env_link.readlink()
    env_link.unlink()
    env_link.symlink_to("/nonexistent/course-env")
    victim = users[-1]
    try:
        server.api(s, "DELETE", f"/users/{victim}/server")
        time.sleep(3)
        t0 = time.perf_counter()
        code, msg = server.api(s, "POST", f"/users/{victim}/server")
        while time.perf_counter() - t0 < 120:
            _, info = server.api(s, "GET", f"/users/{victim}")
            if not info["pending"]:
                break
            time.sleep(0.5)
        log = server.log_tail(s, 400)
        reason = [ln for ln in log.splitlines() if "Failed to start" in ln or "No such file"
                  in ln][-2:]
        out["spawn_failure"] = {"api": [code, msg], "noticed_after_s":
                                round(time.perf_counter() - t0, 1), "log": reason,
                                "server_running": bool(info["servers"])}
    finally:
        env_link.unlink()
        env_link.symlink_to(target)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--env", help="course env (default: tools/course-env.sh's test prefix)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/hub.py creates system users: run it as root", file=sys.stderr)
        return 1
    users = [f"{PREFIX}s{i:02d}" for i in range(1, a.students + 1)]
    tmp = Path(tempfile.mkdtemp(prefix="psml-hub-bench-", dir="/tmp"))
    tmp.chmod(0o755)
    link = tmp / "course-env"
    link.symlink_to(Path(a.env) if a.env else course_env())
    (tmp / "roster.csv").write_text("id,name,role\n" + f"{PREFIX}i1,Bench Teacher,instructor\n"
                                    + "".join(f"{u},Student {u[-2:]},student\n" for u in users))
    pw = "bench-" + uuid.uuid4().hex[:10]
    os.environ["PSML_HUB_PASSWORD"] = pw
    os.environ["PSML_HUB_ADMIN_PASSWORD"] = uuid.uuid4().hex
    port = free_port_base(28000, 32000)
    state = tmp / "srv"
    out = {"machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} "
                      f"GB (load average {os.getloadavg()[0]:.1f} at the start)",
           "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        t0 = time.perf_counter()
        psml("hub", "start", "--state", str(state), "--roster", str(tmp / "roster.csv"),
             "--port", str(port), "--environment", str(link), "--release", ASSIGNMENT)
        out["hub_start_with_roster_s"] = round(time.perf_counter() - t0, 1)
        s = server.saved_settings(state)
        url = s.url
        tokens = {u: server.api(s, "POST", f"/users/{u}/tokens", {"expires_in": 7200})[1]
                  ["token"] for u in users}
        print("login → lab → first cell, 5 students ...", flush=True)
        out["login_to_first_cell"] = login_to_first_cell(url, users[:5], pw, tokens)
        print(out["login_to_first_cell"], flush=True)
        server.stop_servers(s)
        print(f"{len(users)} students at once ...", flush=True)
        out["class_of_30" if a.students == 30 else f"class_of_{a.students}"] = c = \
            class_of_n(url, users, tokens, Timed())
        print(c, flush=True)
        trouble = set(c["errors"]) | {r["user"] for r in c["websocket_reconnects"]}
        if trouble:  # the warnings the hub and the servers logged (the state folder goes)
            c["log_warnings"] = [ln[-300:] for ln in (state / "hub" / "jupyterhub.log").read_text(
                errors="replace").splitlines() if ln.startswith(("[W ", "[E "))
                or any(u in ln for u in trouble)][-30:]
        print("hub restart ...", flush=True)
        out["hub_restart"] = hub_restart(s, url, users[:5], tokens)
        print(out["hub_restart"], flush=True)
        out["bad_input"] = bad_input(s, url, pw, users, tokens, link)
        print(out["bad_input"], flush=True)
    finally:
        psml("hub", "stop", "--state", str(state), check=False)
        names = users + [f"{PREFIX}i1"]
        for u in names:
            if roster.ours(u):
                roster.kill_processes_of(u)
        roster.remove_users(names)
        subprocess.run(["rm", "-rf", str(tmp)])
        results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        results.update(out)  # top-level keys: the Slurm spawner's "slurm" stays
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
