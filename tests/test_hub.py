"""The workshop hub that `psml hub start` runs: logins, the nbgrader exchange between real
users, what a student can and cannot read, and failures that must say what happened.

Through the hub's REST API and each user's own token (the browser round trip is in
test_hub_browser.py). One hub for the session (tests/hub_session.py).
"""

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
import requests
from hub_session import ASSIGNMENT, INSTRUCTOR, ROOT, STUDENTS, as_user, psml

pytestmark = pytest.mark.slow
S1, S2, S3 = STUDENTS


def _login(hub, user, password):
    s = requests.Session()
    s.get(f"{hub.url}/hub/login")
    return s.post(f"{hub.url}/hub/login", allow_redirects=False,
                  data={"username": user, "password": password,
                        "_xsrf": s.cookies.get("_xsrf", path="/hub/")})


def test_login_refuses_wrong_password_and_unknown_user(hub):
    for user, password in ((S1, "not-the-password"), ("psmltest-nobody", hub.password),
                           (INSTRUCTOR, hub.password)):  # instructors need their own
        r = _login(hub, user, password)
        assert r.status_code == 403, (user, r.status_code)
        assert "Invalid username or password" in r.text, r.text[-500:]
    r = _login(hub, S1, hub.password)
    assert r.status_code == 302, r.status_code  # logged in: on to the spawn page
    assert r.headers["location"].endswith(("/hub/spawn", f"/user/{S1}/")), r.headers


def test_students_lab_has_no_instructor_tools_and_preselects_the_course_kernel(hub):
    hub.spawn(S2)
    page = hub.user_api(S2, "/lab").text
    disabled = json.loads(re.search(r'"disabledExtensions": (\[[^\]]*\])', page).group(1))
    for plugin in ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                   "@jupyterlab/apputils-extension:announcements"):
        assert plugin in disabled, (plugin, disabled)
    assert hub.user_api(S2, "/api/kernelspecs").json()["default"] == "psml"
    assert hub.user_api(S2, "/formgrader").status_code == 404  # server side off too
    # the server runs as the student, from the course environment (not the checkout)
    pid_user = subprocess.run(["ps", "-o", "user=", "-C", "jupyterhub-singleuser"],
                              capture_output=True, text=True).stdout.split()
    assert S2 in pid_user, pid_user


def _action(hub, user, action, assignment):
    r = hub.user_api(user, f"/assignments/{action}", method="POST",
                     data={"course_id": "psml", "assignment_id": assignment})
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()


def test_exchange_fetch_submit_twice_and_unreleased(hub):
    """Fetch and submit through the same handlers the Assignments tab uses."""
    hub.spawn(S2)
    listed = hub.user_api(S2, "/assignments?course_id=psml").json()["value"]
    assert ASSIGNMENT in {a["assignment_id"] for a in listed}, listed
    res = _action(hub, S2, "fetch", ASSIGNMENT)
    assert res["success"], res
    nb = hub.user_api(S2, f"/api/contents/{ASSIGNMENT}/{ASSIGNMENT}.ipynb").json()
    assert nb["type"] == "notebook"
    # not released: the Assignments tab does not offer it, and a fetch creates nothing ...
    assert "02-perceptron" not in {a["assignment_id"] for a in listed}
    _action(hub, S2, "fetch", "02-perceptron")
    assert hub.user_api(S2, "/api/contents/02-perceptron").status_code == 404
    # ... while nbgrader in the student's terminal says what is missing
    env = hub.env_link
    r = as_user(S2, "env", f"HOME=/home/{S2}",
                f"JUPYTER_CONFIG_PATH={hub.state / 'jupyter' / 'student'}",
                str(env / "bin" / "nbgrader"), "fetch_assignment", "02-perceptron",
                check=False, cwd=f"/home/{S2}")
    assert r.returncode != 0 and "Assignment not found" in r.stderr \
        and "02-perceptron" in r.stderr, r.stderr[-500:]
    # submitting twice keeps both in the exchange; collect takes the newest
    for _ in range(2):
        res = _action(hub, S2, "submit", ASSIGNMENT)
        assert res["success"], res
        time.sleep(1.1)  # nbgrader's timestamps have a 1 s resolution in the folder name
    inbound = hub.state / "exchange" / "psml" / "inbound"
    mine = sorted(p.name for p in inbound.iterdir() if p.name.startswith(S2 + "+"))
    assert len(mine) == 2, mine
    listed = hub.user_api(S2, "/assignments?course_id=psml").json()["value"]
    submitted = [a for a in listed if a["status"] == "submitted"]
    assert submitted and len(submitted[0]["submissions"]) == 2, submitted
    psml("hub", "collect", ASSIGNMENT, "--state", str(hub.state))
    newest = max(name.split("+")[2] for name in mine)  # student+assignment+timestamp+random
    kept = hub.course / "submitted" / S2 / ASSIGNMENT
    assert (kept / "timestamp.txt").read_text().strip() == newest, \
        f"collect kept {(kept / 'timestamp.txt').read_text()!r}, not the newest {newest!r}"
    assert (kept / f"{ASSIGNMENT}.ipynb").is_file()


def test_student_cannot_read_course_other_homes_or_inbound_copies(hub):
    """Through the student's own Jupyter server (the contents API), not only `ls`."""
    inbound = hub.state / "exchange" / "psml" / "inbound"
    if not any(p.name.startswith(S2 + "+") for p in inbound.iterdir()):  # run alone
        hub.spawn(S2)
        _action(hub, S2, "fetch", ASSIGNMENT)
        _action(hub, S2, "submit", ASSIGNMENT)
    hub.spawn(S1)
    other_copy = next(p for p in inbound.iterdir() if p.name.startswith(S2 + "+"))
    probes = {"probe-course": hub.course, "probe-solutions": hub.course / "solutions",
              "probe-home": Path(f"/home/{S2}"), "probe-inbound": inbound,
              "probe-copy": other_copy, "probe-checkout": ROOT / "solutions",
              "probe-git": ROOT / ".git", "probe-outbound": inbound.parent / "outbound"}
    for name, target in probes.items():  # the student makes the links themself
        as_user(S1, "ln", "-sfn", str(target), f"/home/{S1}/{name}")
    denied = {}
    for name in probes:
        r = hub.user_api(S1, f"/api/contents/{name}")
        denied[name] = r.status_code
    assert denied.pop("probe-outbound") == 200, "released assignments must stay readable"
    readable = {k: v for k, v in denied.items() if v == 200}
    assert not readable, f"{S1} can read these through the contents API: {readable}"
    # 403/404, or 500 where the server cannot even stat the path: never the content
    assert all(v in (403, 404, 500) for v in denied.values()), denied
    # and the copy itself by its path inside the other's submission
    r = hub.user_api(S1, f"/api/contents/probe-copy/{ASSIGNMENT}.ipynb")
    assert r.status_code in (403, 404, 500), r.status_code
    # positive control: the student's own files are fine
    assert hub.user_api(S1, "/api/contents/").status_code == 200


def _secret_lines() -> list[str]:
    """Lines of every solution region and hidden test that appear nowhere else in the
    repository (not in releases, lectures, docs, psml or tests: what is taught openly or is
    ordinary Python is no secret), at least 30 characters long."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split("\0")
    public = "\n".join((ROOT / f).read_text(errors="replace") for f in tracked
                       if f and not f.startswith("solutions/") and (ROOT / f).is_file()
                       and (ROOT / f).stat().st_size < 5_000_000)
    lines = set()
    for src in (ROOT / "solutions").rglob("*.ipynb"):
        if ".ipynb_checkpoints" in src.parts:
            continue
        for cell in nbformat.read(src, 4).cells:
            inside = False
            for ln in cell.source.splitlines():
                s = ln.strip()
                if re.search(r"BEGIN (SOLUTION|HIDDEN TESTS)", s):
                    inside = True
                elif re.search(r"END (SOLUTION|HIDDEN TESTS)", s):
                    inside = False
                elif inside and len(s) >= 30 and s not in public \
                        and json.dumps(s)[1:-1] not in public:
                    lines.add(s)
    return sorted(lines)


# The Filesystem Hierarchy Standard's top-level folders: what any hub machine has.
SYSTEM_ROOTS = ("bin", "boot", "etc", "home", "lib", "lib32", "lib64", "libx32", "media",
                "mnt", "opt", "root", "sbin", "srv", "tmp", "var")


def _walk_roots(hub) -> list[Path]:
    """The system folders plus the checkout and the course environment, each once."""
    roots = [Path("/", n) for n in SYSTEM_ROOTS if Path("/", n).is_dir()
             and not Path("/", n).is_symlink()]
    for extra in (ROOT, hub.env_link.resolve(), hub.state):
        if not any(extra.is_relative_to(r) for r in roots):
            roots.append(extra)
    return roots


def test_walk_covers_the_system_folders_and_the_course(hub):
    roots = _walk_roots(hub)
    for must in ("/tmp", "/var", "/home", "/etc", "/srv", "/opt", "/root"):
        assert Path(must) in roots or not Path(must).is_dir(), (must, roots)
    for course in (ROOT, hub.env_link.resolve(), hub.state):
        assert any(course.is_relative_to(r) for r in roots), (course, roots)


def test_no_file_readable_by_a_student_holds_a_solution(hub, tmp_path):
    """Walk the filesystem as a student's uid and grep every readable file for solution
    and hidden-test lines, as written in the notebooks (JSON-escaped) and as plain text.

    Walked: every standard top-level folder (/etc, /home, /opt, /root, /srv, /tmp, /var, ...:
    where a hub, its users and their scratch live) and, wherever they are, the checkout and
    the course environment. Not walked: /proc, /sys, /dev, /run, Debian's /usr, third-party
    site-packages, and other top-level mounts (a CI runner's or a site's own workspace, which
    the course does not write to). PSML_HUB_WALK_SKIP=/a:/b leaves out more paths (e.g. /tmp
    on a shared development machine, where other people's scratch copies of the course lie);
    CI sets nothing."""
    patterns = _secret_lines()
    assert len(patterns) > 100, len(patterns)  # enough to recognise any solution
    pat = Path("/tmp") / f"psml-hub-patterns-{tmp_path.name}.txt"
    pat.write_text("\n".join(patterns + [json.dumps(p)[1:-1] for p in patterns]) + "\n")
    pat.chmod(0o644)
    try:
        # Third-party packages (PyPI wheels in any venv) are skipped, psml's own are not.
        skip = "".join(f" -o -path {p}" for p in os.environ.get("PSML_HUB_WALK_SKIP",
                                                                "").split(":") if p)
        roots = " ".join(shlex.quote(str(r)) for r in _walk_roots(hub))
        walk = (f"find {roots} \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /usr"
                f" -o -path {pat}{skip} -o \\( -path '*/site-packages/*' ! -path '*/site-packages/psml*'"
                f" \\) \\) -prune -o -type f -readable -size -5M -print0 2>/dev/null"
                f" | xargs -0 -r grep -l -F -f {pat} -- 2>/dev/null; true")
        r = as_user(S3, "bash", "-c", walk, timeout=600)
    finally:
        pat.unlink()
    found = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert not found, f"{S3} can read files holding solutions or hidden tests: {found[:20]}"


def test_spawn_failure_says_why_and_others_keep_working(hub):
    hub.spawn(S1)
    target = hub.env_link.readlink()
    hub.env_link.unlink()
    hub.env_link.symlink_to("/nonexistent/psml-course-env")
    try:
        s = hub.session(S3)
        s.post(f"{hub.url}/hub/api/users/{S3}/server")
        deadline, info = time.monotonic() + 120, {}
        while time.monotonic() < deadline:
            info = s.get(f"{hub.url}/hub/api/users/{S3}").json()
            if not info.get("pending") and not info.get("servers"):
                break
            time.sleep(0.5)
        assert not info.get("servers"), info
        events = s.get(f"{hub.url}/hub/api/users/{S3}/server/progress", stream=True,
                       timeout=30)
        text = events.text if events.status_code == 200 else ""
        log = (hub.state / "hub" / "jupyterhub.log").read_text()
        assert "jupyterhub-singleuser" in log and "No such file" in log, log[-2000:]
        assert "failed" in (text + log).lower()
    finally:
        hub.env_link.unlink()
        hub.env_link.symlink_to(target)
    # the others' servers were not disturbed, and the hub keeps serving
    assert hub.user_api(S1, "/api/status").status_code == 200
    assert hub.api("GET", "/")[0] == 200


def test_roster_with_duplicate_or_malformed_ids_changes_nothing(hub, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,role\npsmltest-new,New,student\npsmltest-new,Again,student\n"
                   "Bad Id!,Someone,student\npsmltest-x,X,teacher\n")
    r = subprocess.run([__import__("sys").executable, "-m", "psml", "hub", "roster", str(bad),
                        "--state", str(hub.state)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1, r
    for needle in ("line 3", "already on line 2", "line 4", "'Bad Id!'", "line 5", "teacher"):
        assert needle in r.stderr, (needle, r.stderr)
    assert subprocess.run(["id", "psmltest-new"], capture_output=True).returncode != 0


def test_late_submission_is_flagged_not_lost_and_collected_from_the_formgrader(hub):
    """The instructor sets a due date and collects through the Formgrader's own API (what its
    buttons call, as the instructor's uid); a submission after the due date is kept, graded,
    and flagged with how late it was."""
    fg = "/formgrader/api/assignment/" + ASSIGNMENT
    hub.spawn(INSTRUCTOR)

    def due(date):  # what the Formgrader's "edit assignment" sends; None: no due date
        body = {"duedate_notimezone": date, "duedate_timezone": "UTC"} if date else {}
        r = hub.user_api(INSTRUCTOR, fg, method="PUT", json=body)
        assert r.status_code == 200, (r.status_code, r.text[:500])
        return r.json()["duedate"]

    assert due("2020-01-01 09:00:00").startswith("2020-01-01")
    try:
        hub.spawn(S3)
        assert _action(hub, S3, "fetch", ASSIGNMENT)["success"]
        assert _action(hub, S3, "submit", ASSIGNMENT)["success"]
        r = hub.user_api(INSTRUCTOR, fg + "/collect", method="POST")
        assert r.status_code == 200, (r.status_code, r.text[:500])
        res = r.json()
        assert res["success"], res.get("error") or res.get("log")
        kept = hub.course / "submitted" / S3 / ASSIGNMENT
        assert (kept / f"{ASSIGNMENT}.ipynb").is_file(), f"nothing collected: {res.get('log')}"
        assert (kept / "timestamp.txt").read_text().startswith("20")
        subs = hub.user_api(INSTRUCTOR, fg.replace("/assignment/", "/submissions/")).json()
        assert any(s["student"] == S3 and s["timestamp"] for s in subs), subs
        # graded like any other, with how late it was
        out = psml("grade", ASSIGNMENT, "--student", S3, "--course", str(hub.course),
                   timeout=900).stdout
        assert "after the due date" in out, out[-2000:]
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{hub.course / 'gradebook.db'}", "psml") as gb:
            late = gb.find_submission(ASSIGNMENT, S3).total_seconds_late
        assert late > 3600 * 24 * 365, late  # years after the 2020 due date
    finally:
        assert due(None) is None  # no due date again, for the other tests of this hub


def test_hub_restart_keeps_students_servers_and_kernels(hub):
    """`psml hub stop --keep-servers && psml hub start` (a config change mid-class): a
    student's server, kernel and the kernel's unsaved state survive; the hub's API answers
    again and knows the server."""
    from kernel_client import run_code

    from psml.hub import server

    hub.spawn(S2)
    started = hub.api("GET", f"/users/{S2}")[1]["servers"][""]["started"]
    kernel, _ = run_code(hub.url, S2, hub.token(S2), "unsaved = 6 * 7")
    try:
        psml("hub", "stop", "--keep-servers", "--state", str(hub.state))
        assert server.pid(hub.settings) is None, "the hub should be down"
    finally:  # up again whatever happened, for the tests after this one
        if server.pid(hub.settings) is None:
            psml("hub", "start", "--state", str(hub.state))
    hub.settings = server.saved_settings(hub.state)
    code, user = hub.api("GET", f"/users/{S2}")
    assert code == 200 and user["servers"].get("", {}).get("started") == started, \
        f"the hub lost (or restarted) {S2}'s server: {user}"
    _, out = run_code(hub.url, S2, hub.token(S2), "print(unsaved)", kernel_id=kernel)
    assert out.strip() == "42", f"the kernel lost its state across the restart: {out!r}"
