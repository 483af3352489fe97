"""``psml hub ...``: run a class on a JupyterHub (see docs/workshop.md).

    psml hub start --roster class.csv    users, course, exchange, config, then the hub
    psml hub config                      print the jupyterhub_config.py (for a real server)
    psml hub roster class.csv [--remove] add (remove) users and gradebook students
    psml hub release ASSIGNMENT          nbgrader release_assignment from exercises/
    psml hub collect ASSIGNMENT          nbgrader collect (psml grade --exchange does it too)
    psml hub feedback ASSIGNMENT         nbgrader release_feedback
    psml hub status | stop
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from psml.hub import exchange, roster, server
from psml.hub.config import HubError, HubSettings, load_settings

DEFAULT_STATE = "/srv/psml-hub"


def _roster_path(s: HubSettings) -> Path:
    return s.hub_dir / "roster.csv"


def members(s: HubSettings) -> list[roster.Member]:
    path = _roster_path(s)
    return roster.load(path) if path.is_file() else []


def owner(s: HubSettings) -> str:
    """The course owner: the roster's first instructor, else root."""
    return next(iter(roster.instructors(members(s))), "root")


def save_roster(s: HubSettings, new: list[roster.Member], remove: bool = False) -> list:
    """Merge ``new`` into the saved roster (or drop it with ``remove``)."""
    old = {m.id: m for m in members(s)}
    for m in new:
        if remove:
            old.pop(m.id, None)
        else:
            old[m.id] = m
    s.hub_dir.mkdir(parents=True, exist_ok=True)
    lines = ["id,name,role"] + [f"{m.id},{m.name},{m.role}" for m in old.values()]
    _roster_path(s).write_text("\n".join(lines) + "\n")
    return list(old.values())


def apply_roster(s: HubSettings, new: list[roster.Member]) -> list[str]:
    """Users, gradebook, instructors' ~/course; a running hub learns the users at once."""
    created = roster.create_users(new, s.instructors_group)
    everyone = save_roster(s, new)
    exchange.prepare_state(s, owner(s))
    roster.sync_gradebook(s.course_dir, everyone)
    exchange.fix_permissions(s, owner(s))
    for m in new:
        if m.role == "instructor":
            exchange.link_course_for(s, m.id)
    if server.pid(s):
        server.api(s, "POST", "/users", {"usernames": [m.id for m in new]})
        for m in new:
            if m.role == "instructor":
                server.api(s, "PATCH", f"/users/{m.id}", {"admin": True})
    return created


def setup(s: HubSettings, roster_file: str | None, protect: bool) -> None:
    """Everything before the hub process: checks, checkout, state, users, config."""
    if os.geteuid() != 0:
        raise HubError("the hub starts each student's server as their own user, which needs "
                       "root: run `sudo make hub` (or sudo psml hub start)")
    exchange.check_environment(s)
    exposed = exchange.checkout_exposed(s)
    if exposed and not protect:
        raise HubError(f"students could read {', '.join(exposed)} in {s.repo} (solutions, "
                       "hidden tests, git history): rerun without --no-protect-checkout, or "
                       "serve the course from a checkout they cannot read")
    if exposed:
        exchange.protect_checkout(s)
        print(f"checkout {s.repo}: made {', '.join(exposed)} unreadable for students")
    exchange.prepare_state(s, owner(s))
    if roster_file:
        created = apply_roster(s, roster.load(Path(roster_file)))
        if created:
            print(f"created users: {', '.join(created)}")
    if not members(s):
        raise HubError("no roster yet: pass --roster FILE (CSV id,name,role)")


def _settings(args) -> HubSettings:
    if getattr(args, "site", None) is None and Path(args.state, "hub", "settings.json").is_file():
        s = server.saved_settings(args.state)
        for k in ("port", "environment"):
            if getattr(args, k, None) is not None:
                setattr(s, k, getattr(args, k))
        return s
    return load_settings(args.site or "local", state_dir=args.state,
                         port=getattr(args, "port", None),
                         environment=getattr(args, "environment", None))


def _start(args) -> int:
    s = _settings(args)
    setup(s, args.roster, not args.no_protect_checkout)
    everyone = members(s)
    pid = server.start(s, roster.instructors(everyone), roster.students(everyone))
    for a in args.release or []:
        exchange.release(s, owner(s), a, force=True)
    print(f"hub running (pid {pid}): {s.url}\n"
          f"  passwords: {s.hub_dir / 'secrets.json'} (user_password for students, "
          "admin_password for instructors)\n"
          f"  log: {s.hub_dir / 'jupyterhub.log'}\n  stop: psml hub stop --state {s.state}")
    return 0


def _stop(args) -> int:
    s = server.saved_settings(args.state)
    server.stop(s, keep_servers=args.keep_servers)
    print("hub stopped" + (" (students' servers kept)" if args.keep_servers else ""))
    return 0


def _status(args) -> int:
    s = server.saved_settings(args.state)
    p = server.pid(s)
    if not p:
        print(f"no hub running from {s.state}")
        return 1
    _, users = server.api(s, "GET", "/users")
    running = [u["name"] for u in users if u.get("servers")]
    print(f"hub pid {p} at {s.url}: {len(users)} users, {len(running)} servers running"
          + (f" ({', '.join(running)})" if running else ""))
    return 0


def _config(args) -> int:
    s = _settings(args)
    everyone = members(s)
    from psml.hub.config import build_config, render

    sys.stdout.write(render(build_config(s, roster.instructors(everyone),
                                         roster.students(everyone)), s))
    return 0


def _roster(args) -> int:
    s = _settings(args)
    new = roster.load(Path(args.file))
    if args.remove:
        save_roster(s, new, remove=True)
        if s.course_dir.is_dir():
            roster.sync_gradebook(s.course_dir, new, remove=True)
        print(f"removed users: {', '.join(roster.remove_users([m.id for m in new])) or 'none'}")
    else:
        created = apply_roster(s, new)
        print(f"roster: {len(new)} members, created users: {', '.join(created) or 'none'}")
    return 0


def _nbgrader_step(step: str):
    def run(args) -> int:
        s = server.saved_settings(args.state)
        if step == "release":
            out = exchange.release(s, owner(s), args.assignment, force=args.force)
        elif step == "release_feedback":
            out = exchange.release_feedback(s, owner(s), args.assignment)
        else:  # collect: as root, like `psml grade --exchange`
            out = exchange.course_nbgrader(s, owner(s), step, args.assignment, as_owner=False)
        print(out.strip()[-2000:])
        return 0
    return run


def add_parser(sub) -> None:
    hub = sub.add_parser("hub", help="run a class on a JupyterHub (docs/workshop.md)")
    hs = hub.add_subparsers(dest="hub_cmd", required=True)

    def cmd(name, func, help):
        p = hs.add_parser(name, help=help)
        p.add_argument("--state", default=DEFAULT_STATE,
                       help=f"the hub's state folder (default {DEFAULT_STATE})")
        p.set_defaults(func=func)
        return p

    p = cmd("start", _start, "set up users, course and exchange, then start the hub")
    p.add_argument("--site", help="site profile with a [hub] table (default: local)")
    p.add_argument("--roster", help="CSV id,name,role (students and instructors)")
    p.add_argument("--port", type=int, help="public port (default 8000)")
    p.add_argument("--environment", help="the course env servers run from (default: this venv)")
    p.add_argument("--release", action="append", metavar="ASSIGNMENT",
                   help="release this assignment right away (repeatable)")
    p.add_argument("--no-protect-checkout", action="store_true",
                   help="refuse instead of making the checkout unreadable for students")
    p = cmd("stop", _stop, "stop the students' servers, the hub and its proxy")
    p.add_argument("--keep-servers", action="store_true",
                   help="leave students' servers running (restart the hub with start)")
    cmd("status", _status, "is the hub running, how many servers")
    p = cmd("config", _config, "print the generated jupyterhub_config.py")
    p.add_argument("--site", help="site profile (default: local)")
    p.add_argument("--port", type=int)
    p.add_argument("--environment")
    p = cmd("roster", _roster, "add (or --remove) the users of a roster CSV")
    p.add_argument("file")
    p.add_argument("--site")
    p.add_argument("--remove", action="store_true", help="delete the roster's users")
    for step, help in (("release", "release an assignment to the exchange"),
                       ("collect", "collect submissions from the exchange"),
                       ("release_feedback", "release graded feedback to students")):
        p = cmd(step.replace("release_feedback", "feedback"), _nbgrader_step(step), help)
        p.add_argument("assignment")
        if step == "release":
            p.add_argument("--force", action="store_true", help="release again")
