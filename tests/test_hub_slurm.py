"""The hub through Slurm, end to end: JupyterLab as a Slurm job of the participant, in a real
browser, against the real single-node Slurm (fixture ``slurm``) and Lmod.

One hub for the module (tests/slurm_hub.py): participants psmlslurm-a and psmlslurm-b, the
workshop reservation, the course module ``psml`` over a fake site module ``Stages/2026``.
The tests run in file order and share it: b spawns through the form and stops; a holds a
2-task server for the MPI cells of unit 08, the "partition full" and "Slurm down" cases,
then its job is cancelled behind the hub's back; stopping the hub leaves no job behind.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from psml.hub.slurm import POLL_INTERVAL

from browser import LAB_READY, browser_session, new_page, shot
from slurm_hub import ACCOUNT, RESERVATION, SITE_MODULE, SlurmHub

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
A, B = "psmlslurm-a", "psmlslurm-b"


@pytest.fixture(scope="module")
def hub(slurm):
    with SlurmHub(slurm, [A, B], queue_timeout=10) as h:
        yield h


@pytest.fixture(scope="module")
def browser():
    with browser_session() as b:
        yield b


@pytest.fixture(scope="module")
def a_job(hub) -> str:
    """a's server: 2 tasks (MPI ranks), through the REST API. Its Slurm job id."""
    code, body = hub.spawn(A, {"cores": 2})
    assert code in (201, 202), f"spawn: {code} {body}"
    hub.wait_ready(A)
    jobs = hub.jobs(A)
    assert len(jobs) == 1, jobs
    return jobs[0]["id"]


def login_to_form(page, hub, user: str):
    """Log in; with no server running the hub shows the workshop form."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.password)
    page.click("#login_submit")
    page.wait_for_selector("#psml-partition")
    return page


def server_answers(hub, user: str) -> int:
    return requests.get(f"{hub.url}/user/{user}/api/status", timeout=30,
                        headers={"Authorization": f"token {hub.token}"}).status_code


def test_rest_spawn_refuses_invalid_choices(hub):
    """The REST API gets the form's checks: HTTP 400 saying what is allowed, no job."""
    cases = {"cores": ({"cores": 99}, f"cores: 99 is not allowed; partition 'debug' allows 1 "
                                      f"to {hub.slurm.cpus}"),
             "partition": ({"partition": "gpu"}, "partition: 'gpu' is not offered; choose "
                                                 "'debug'"),
             "reservation": ({"reservation": "someone-elses"}, "choose 'psml-test-ws', none")}
    for what, (options, says) in cases.items():
        code, body = hub.spawn(B, options)
        assert code == 400 and says in body["message"], f"{what}: {code} {body}"
    assert hub.jobs(B) == [], "a refused spawn must not submit a job"


def test_participant_spawns_through_the_form_in_the_browser(hub, browser):
    """b: the form (reservation preselected, a bad choice refused), the job in squeue under
    b, JupyterLab, the "psml (MPI)" kernel prints the job id and the modules, the home page
    shows the remaining time, "Stop My Server" ends the job."""
    page = login_to_form(new_page(browser), hub, B)
    assert page.input_value("#psml-reservation") == RESERVATION, "reservation not preselected"
    assert page.input_value("#psml-account") == ACCOUNT
    shot(page, "slurm-form", doc=True)
    # The browser keeps cores within the partition's limit; the hub checks again.
    page.eval_on_selector("#psml-cores", "el => { el.removeAttribute('max'); el.value = 64; }")
    page.click("button[type=submit]")
    page.wait_for_selector(".spawn-error-msg")
    error = page.inner_text(".spawn-error-msg")
    assert f"cores: 64 is not allowed; partition 'debug' allows 1 to {hub.slurm.cpus}" in \
        error, error
    assert hub.jobs(B) == []

    page.fill("#psml-cores", "1")
    page.click("button[type=submit]")
    page.wait_for_url(f"**/user/{B}/lab**", timeout=240_000)
    page.wait_for_selector(LAB_READY, timeout=120_000)
    jobs = hub.jobs(B)
    assert len(jobs) == 1 and jobs[0]["user"] == B and jobs[0]["state"] == "RUNNING", jobs
    job = jobs[0]
    assert (job["reservation"], job["account"], job["partition"]) == \
        (RESERVATION, ACCOUNT, "debug"), job
    log = Path(f"/home/{B}/.psml-jupyter-{job['id']}.log").read_text()
    assert f"modules: {SITE_MODULE}:psml/0.1.0" in log, f"the job should start JupyterLab " \
        f"through the course module; its log:\n{log[:2000]}"

    page.click('.jp-LauncherCard[title="psml (MPI)"]')
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content")
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
    page.click(".jp-Notebook .jp-Cell .cm-content")
    page.keyboard.insert_text(
        "import os, subprocess\nprint('JOB', os.environ['SLURM_JOB_ID'])\n"
        "lmod = 'source /usr/share/lmod/lmod/init/bash; module list'\n"
        "print(subprocess.run(['bash', '-c', lmod], capture_output=True,\n"
        "                     text=True).stderr)")
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output").first
    output.wait_for(timeout=120_000)
    page.wait_for_function("s => document.querySelector('.jp-OutputArea-output')"
                           ".innerText.includes(s)", arg=SITE_MODULE, timeout=60_000)
    text = output.inner_text()
    assert f"JOB {job['id']}" in text and SITE_MODULE in text, text
    shot(page, "slurm-lab-kernel", doc=True)

    page.goto(f"{hub.url}/hub/home")
    note = page.inner_text(".announcement")
    assert f"runs as Slurm job {job['id']} until" in note and "min left" in note, note
    shot(page, "slurm-home-remaining-time", doc=True)
    page.click("#stop")
    page.wait_for_selector("#start >> text=Start My Server", timeout=90_000)
    assert hub.jobs(B) == [], "stopping the server must end its Slurm job"
    page.context.close()


def test_mpi_cells_of_unit_08_in_a_two_task_server(hub, a_job):
    """A server with 2 tasks runs unit 08's MPI cells: 2 ranks from SLURM_NTASKS, the
    engines inside the server's own job."""
    assert hub.slurm.job_info(a_job)["NumTasks"] == "2"
    nb = json.loads((ROOT / "solutions" / "08-mpi" / "08-mpi.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    ids = [c["metadata"].get("nbgrader", {}).get("grade_id", "") for c in code]
    first_task = next(i for i, c in enumerate(code)
                      if c["metadata"].get("nbgrader", {}).get("solution"))
    cells = ["".join(c["source"]) for c in code[ids.index("setup"):first_task]]
    cells.append("print('engine jobs', sorted(set(dview.apply_sync(lambda: "
                 "__import__('os').environ.get('SLURM_JOB_ID')))))")
    cells.append("".join(code[-1]["source"]))  # stop the cluster
    assert any(c.startswith("%%px") for c in cells), "unit 08's MPI cells not found"
    out = "\n".join(hub.run_code(A, cells))
    assert "2 MPI ranks" in out and "2 MPI engines ready" in out, out
    assert "rank 0 of 2" in out and "rank 1 of 2" in out, out
    assert f"engine jobs ['{a_job}']" in out, out
    assert "cluster stopped" in out, out


def test_full_partition_is_reported_on_the_spawn_page(hub, a_job, browser):
    """a holds every core: b's job waits, the spawn page says why and gives up after the
    queue timeout (job cancelled), while a's server keeps answering."""
    filler = None
    if hub.slurm.cpus > 2:  # a machine with more cores: fill the rest of the partition
        filler = hub.slurm.sbatch("#!/bin/bash\nsleep 600\n", f"--reservation={RESERVATION}",
                                  f"--ntasks={hub.slurm.cpus - 2}", "--output=/dev/null")
    page = login_to_form(new_page(browser), hub, B)
    t0 = time.monotonic()
    page.click("button[type=submit]")
    # The first lines may come before the scheduler gave a reason: wait for the reason.
    page.wait_for_selector("#progress-message >> text=all cores", timeout=60_000)
    assert "(Resources: all cores" in page.inner_text("#progress-message"), \
        page.inner_text("#progress-message")
    assert server_answers(hub, A) == 200, "a's server should keep working"
    page.wait_for_selector("#progress-message >> text=Spawn failed",
                           timeout=(hub.queue_timeout + 60) * 1000)
    waited = time.monotonic() - t0
    message = page.inner_text("#progress-message")
    shot(page, "slurm-partition-full", doc=True)
    assert "waited" in message and "cancelled (Resources: all cores" in message, message
    assert waited < hub.queue_timeout + 60, f"the spawn page took {waited:.0f} s to say so"
    assert hub.jobs(B) == [], "the waiting job must be cancelled"
    assert server_answers(hub, A) == 200
    page.context.close()
    if filler:
        hub.slurm.run("scancel", filler)


def test_slurm_down_fails_the_spawn_clearly_and_running_servers_survive(hub, a_job):
    """With the controller down, a spawn fails saying so within the spawn timeout; a's
    running server keeps working and the hub's polls (squeue fails) do not drop it."""
    hub.slurm.run("scontrol", "shutdown", "slurmctld")
    down = time.monotonic()
    try:
        code, body = hub.spawn(B)
        message = body["message"] if code >= 400 else hub.failure(B)
        took = time.monotonic() - down
        assert "Slurm) is not answering" in message and "try again" in message, message
        assert took < hub.queue_timeout + 120, f"took {took:.0f} s to fail"
        time.sleep(max(0.0, 1.5 * POLL_INTERVAL - (time.monotonic() - down)))  # >= 1 poll
        assert hub.server_model(A)["ready"], "a's server was dropped while Slurm was down"
        assert server_answers(hub, A) == 200
    finally:
        # Back up, recovering jobs and reservation from its state directory (no -c). The
        # daemon forks away: no pipes for it to hold open.
        subprocess.run(["slurmctld", "-i"], env=hub.slurm.env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        end = time.monotonic() + 90
        while hub.slurm.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip() not in \
                ("idle", "mixed", "allocated"):
            assert time.monotonic() < end, "Slurm did not come back:\n" + \
                hub.slurm.run("sinfo", check=False).stdout
            time.sleep(0.5)
    assert [j["id"] for j in hub.jobs(A)] == [a_job], "a's job should survive the restart"


def test_cancelled_job_is_noticed_and_a_restart_offered(hub, a_job, browser):
    """scancel behind the hub's back: the hub drops the server within a poll or two, and the
    participant gets the form again; the restart works."""
    hub.slurm.run("scancel", a_job)
    t0 = time.monotonic()
    while hub.server_model(A) is not None:
        assert time.monotonic() - t0 < 3 * POLL_INTERVAL + 30, "the hub did not notice"
        time.sleep(0.5)
    page = login_to_form(new_page(browser), hub, A)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/user/{A}/lab**", timeout=240_000)
    page.wait_for_selector(LAB_READY, timeout=120_000)
    jobs = hub.jobs(A)
    assert len(jobs) == 1 and jobs[0]["id"] != a_job, jobs
    page.context.close()


def test_stopping_the_hub_leaves_no_job(hub):
    from psml.hub import server

    assert hub.jobs(A), "a's restarted server should be running"
    server.stop(hub.settings)
    assert hub.jobs() == [], f"orphan jobs after the hub stopped: {hub.jobs()}"
