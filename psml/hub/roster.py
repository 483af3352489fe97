"""A class roster (CSV ``id,name,role``) → system users → nbgrader gradebook students.

``id`` is the login and system user name (lowercase letters, digits, ``_``, ``-``; at most
32 characters, starting with a letter); ``role`` is ``student`` or ``instructor``. Users
created here carry the comment ``psml-hub NAME`` and only those are ever deleted again, so
a site's existing accounts can be on the roster without being touched.
"""

from __future__ import annotations

import csv
import os
import pwd
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from psml.errors import PsmlError

ID_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
ROLES = ("student", "instructor")
MARK = "psml-hub "


class RosterError(PsmlError, ValueError):
    """A roster that cannot be used; the message names the line and the fix."""


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    role: str

    @property
    def first_last(self) -> tuple[str, str]:
        first, _, last = self.name.partition(" ")
        return first, last


def parse(text: str, source: str = "roster") -> list[Member]:
    """Every problem at once (line numbers as in the file), or the members."""
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0]] != ["id", "name", "role"]:
        raise RosterError(f"{source}: the first line must be the header 'id,name,role'")
    members, problems, seen = [], [], {}
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != 3:
            problems.append(f"line {n}: expected 3 fields (id,name,role), found {len(row)}")
            continue
        uid, name, role = (c.strip() for c in row)
        if not ID_RE.match(uid):
            problems.append(f"line {n}: id {uid!r} is not a valid login: lowercase letters, "
                            "digits, '_' or '-', starting with a letter, at most 32 characters")
        elif uid in seen:
            problems.append(f"line {n}: id {uid!r} is already on line {seen[uid]}")
        if role.lower() not in ROLES:
            problems.append(f"line {n}: role {role!r} must be one of {', '.join(ROLES)}")
        if problems and problems[-1].startswith(f"line {n}:"):
            continue
        seen[uid] = n
        members.append(Member(uid, name or uid, role.lower()))
    if problems:
        raise RosterError(f"{source}: nothing was changed, fix these lines first:\n  "
                          + "\n  ".join(problems))
    if not members:
        raise RosterError(f"{source}: no members; add lines 'id,name,role'")
    return members


def load(path: Path) -> list[Member]:
    try:
        return parse(Path(path).read_text(), str(path))
    except FileNotFoundError:
        raise RosterError(f"{path}: no such roster file") from None


def instructors(members: list[Member]) -> list[str]:
    return [m.id for m in members if m.role == "instructor"]


def students(members: list[Member]) -> list[str]:
    return [m.id for m in members if m.role == "student"]


# --------------------------------------------------------------------------------------------
# system users


def _user(name: str):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def ours(name: str) -> bool:
    u = _user(name)
    return u is not None and u.pw_gecos.startswith(MARK)


def create_users(members: list[Member], instructors_group: str) -> list[str]:
    """System users for the roster (existing accounts are used as they are). Homes are
    private (0700). Returns the names created."""
    if os.geteuid() != 0:
        raise RosterError("creating system users needs root: run `sudo psml hub ...`")
    subprocess.run(["groupadd", "-f", instructors_group], check=True)
    created = []
    for m in members:
        if _user(m.id) is None:
            comment = MARK + re.sub(r"[:,\n]", " ", m.name)
            r = subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-c", comment, m.id],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RosterError(f"useradd {m.id} failed: {r.stderr.strip()}")
            created.append(m.id)
            os.chmod(_user(m.id).pw_dir, 0o700)
        if m.role == "instructor":
            subprocess.run(["usermod", "-aG", instructors_group, m.id], check=True)
    return created


def kill_processes_of(name: str) -> list[int]:
    """SIGKILL every process running as ``name`` (a user this module created), by pid."""
    import psutil

    uid = _user(name).pw_uid
    pids = [p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"]
            and p.info["uids"].real == uid]
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    return pids


def remove_users(names: list[str]) -> list[str]:
    """Delete users this module created (and their homes); others are left alone."""
    removed = []
    for name in names:
        if ours(name):
            # A killed process (or a Slurm job step) can outlive the kill by a moment, and
            # userdel refuses a user who still runs something: kill again and retry briefly.
            for attempt in range(20):
                kill_processes_of(name)
                r = subprocess.run(["userdel", "-r", name], capture_output=True, text=True)
                if r.returncode != 8 or attempt == 19:  # 8: user currently logged in / busy
                    break
                time.sleep(0.5)
            if r.returncode not in (0, 12):  # 12: home already gone
                raise RosterError(f"userdel {name} failed: {r.stderr.strip()}")
            removed.append(name)
    return removed


# --------------------------------------------------------------------------------------------
# the gradebook


def sync_gradebook(course_dir: Path, members: list[Member], remove: bool = False) -> None:
    """Add (or with ``remove``, delete) the roster's students in the course gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    from psml.course import tool_env

    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = tool_env()["PATH"]  # a new gradebook runs `alembic` by name
    try:
        with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
            for m in members:
                if m.role != "student":
                    continue
                if remove:
                    try:
                        gb.remove_student(m.id)
                    except MissingEntry:
                        pass
                else:
                    first, last = m.first_last
                    gb.update_or_create_student(m.id, first_name=first, last_name=last)
    finally:
        os.environ["PATH"] = old_path
