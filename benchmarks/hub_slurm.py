"""The hub through Slurm: how long participants wait, and how fast the hub notices a job's end.

Its own single-node Slurm (tools/minislurm.sh, PSML_BENCH_CPUS CPUs, default 12: a workshop
node shared by many 1-core jobs) and the test hub of tests/slurm_hub.py (the course module via
Lmod, a reservation, 10 participants). Three figures, written under the "slurm" key of
results/hub.json (other keys are the hub benchmark's and are kept):

- login -> JupyterLab ready through Slurm, in the real browser (login form, workshop form,
  job, JupyterLab rendered): median and worst of 5 (one participant, stopped in between);
- 10 participants spawning at once through the REST API: every server ready? time until the
  last one is, median and worst per participant;
- the hub noticing a cancelled job: all 10 jobs ``scancel``-ed at once, seconds until each
  server is gone from the hub (bounded by the poll interval).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser import LAB_READY, browser_session, new_page  # noqa: E402
from slurm_cluster import SlurmCluster, _minislurm  # noqa: E402
from slurm_hub import SlurmHub  # noqa: E402

from psml.hub.slurm import POLL_INTERVAL  # noqa: E402

CPUS = int(os.environ.get("PSML_BENCH_CPUS", "12"))
N_AT_ONCE = 10
N_LOGINS = 5
USERS = [f"psmlbench-{i:02d}" for i in range(N_AT_ONCE)]
OUT = ROOT / "results" / "hub.json"


def summary(values: list[float]) -> dict:
    return {"median_s": round(statistics.median(values), 1), "worst_s": round(max(values), 1),
            "all_s": [round(v, 1) for v in values]}


def browser_logins(hub: SlurmHub, user: str) -> list[float]:
    times = []
    with browser_session() as browser:
        for i in range(N_LOGINS):
            page = new_page(browser)
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", user)
            page.fill("#password_input", hub.password)
            t0 = time.monotonic()
            page.click("#login_submit")
            page.wait_for_selector("#psml-partition")
            page.click("button[type=submit]")
            page.wait_for_url(f"**/user/{user}/lab**", timeout=300_000)
            page.wait_for_selector(LAB_READY, timeout=300_000)
            times.append(time.monotonic() - t0)
            print(f"  login {i + 1}: JupyterLab ready after {times[-1]:.1f} s")
            page.context.close()
            hub.stop(user)
    return times


def spawn_at_once(hub: SlurmHub) -> dict:
    ready: dict[str, float] = {}
    errors: dict[str, str] = {}
    t0 = time.monotonic()

    def one(u):
        try:
            code, body = hub.spawn(u)
            assert code in (201, 202), f"{code} {body}"
            hub.wait_ready(u, timeout=600)
            ready[u] = time.monotonic() - t0
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors[u] = str(exc)[:300]

    threads = [threading.Thread(target=one, args=(u,)) for u in USERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"  {len(ready)}/{N_AT_ONCE} ready, last after {max(ready.values(), default=0):.1f} s")
    return {"participants": N_AT_ONCE, "ready": len(ready), "errors": errors,
            "all_ready_after_s": round(max(ready.values()), 1) if ready else None,
            **summary(list(ready.values()) or [0.0])}


def notice_cancelled(hub: SlurmHub) -> dict:
    jobs = {j["user"]: j["id"] for j in hub.jobs() if j["user"] in USERS}
    t0 = time.monotonic()
    hub.slurm.run("scancel", *jobs.values())
    gone: dict[str, float] = {}
    while len(gone) < len(jobs) and time.monotonic() - t0 < 10 * POLL_INTERVAL:
        for u in jobs:
            if u not in gone and hub.server_model(u) is None:
                gone[u] = time.monotonic() - t0
        time.sleep(0.2)
    print(f"  {len(gone)}/{len(jobs)} cancelled jobs noticed, last after "
          f"{max(gone.values(), default=0):.1f} s")
    return {"cancelled": len(jobs), "noticed": len(gone), "poll_interval_s": POLL_INTERVAL,
            **summary(list(gone.values()) or [0.0])}


def main() -> int:
    directory = Path(tempfile.mkdtemp(prefix="psml-bench-slurm-"))
    _minislurm("start", directory, str(CPUS), timeout=120)
    try:
        cluster = SlurmCluster(directory, CPUS)
        with SlurmHub(cluster, USERS, queue_timeout=300) as hub:
            print(f"login -> JupyterLab ready through Slurm, {N_LOGINS} times (browser)")
            logins = summary(browser_logins(hub, USERS[0]))
            print(f"{N_AT_ONCE} participants spawning at once (REST API)")
            at_once = spawn_at_once(hub)
            print("the hub noticing cancelled jobs")
            noticed = notice_cancelled(hub)
    finally:
        _minislurm("stop", directory)
        shutil.rmtree(directory, ignore_errors=True)
    result = json.loads(OUT.read_text()) if OUT.is_file() else {}
    result["slurm"] = {
        "machine": {"cpus": os.cpu_count(), "slurm_cpus": CPUS,
                    "load_average_1min": round(os.getloadavg()[0], 1)},
        "login_to_jupyterlab_ready": logins,
        "spawn_at_once": at_once,
        "notice_cancelled_job": noticed,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT} (key 'slurm')")
    return 0 if at_once["ready"] == N_AT_ONCE and noticed["noticed"] == noticed["cancelled"] \
        else 1


if __name__ == "__main__":
    sys.exit(main())
