"""Typed outcome events: what the grader saw while one submission ran.

The execute preprocessor (in the nbgrader process) appends one JSON line per event to
``$PSML_GRADE_EVENTS``; the runner reads them back. Decisions (flag, distrust, whose fault)
are made on the event's *kind*, never on the wording of a reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

#: grader-side events (JSON lines) of one submission
EVENTS_ENV = "PSML_GRADE_EVENTS"


class Kind(str, Enum):
    CELL_TIMEOUT = "cell_timeout"
    NOTEBOOK_TIMEOUT = "notebook_timeout"
    KERNEL_DIED = "kernel_died"
    OUTPUT_TRUNCATED = "output_truncated"
    HIDDEN_TRACEBACKS = "hidden_tracebacks"   # showtraceback replaced: errors still seen
    FAKED_SUCCESS = "faked_success"           # a failing statement reported as passing
    RESTORED = "restored"                     # numpy/psml/builtins replaced: restored
    SUSPICIOUS = "suspicious"                 # solution code touches error reporting


TEXT = {Kind.CELL_TIMEOUT: "time limit per cell", Kind.NOTEBOOK_TIMEOUT: "time limit per "
        "notebook", Kind.KERNEL_DIED: "kernel died", Kind.OUTPUT_TRUNCATED: "output cut",
        Kind.HIDDEN_TRACEBACKS: "TAMPERING", Kind.FAKED_SUCCESS: "TAMPERING",
        Kind.RESTORED: "TAMPERING", Kind.SUSPICIOUS: "note"}
#: kinds that mark the submission *flagged* for the instructor
FLAGGING = {Kind.HIDDEN_TRACEBACKS, Kind.FAKED_SUCCESS, Kind.RESTORED}
#: kinds after which the scores cannot be trusted (0, needs manual grade)
UNTRUSTED = {Kind.FAKED_SUCCESS}


@dataclass(frozen=True)
class Event:
    kind: Kind
    detail: str

    @property
    def text(self) -> str:
        return f"{TEXT[self.kind]}: {self.detail}"


def write_event(path: str | None, kind: Kind, detail: str) -> None:
    if path:
        with open(path, "a") as f:  # one write per line: appends of < 4 kB are atomic
            f.write(json.dumps({"kind": kind.value, "detail": detail}) + "\n")


def read_events(path: Path) -> tuple[list[Event], int]:
    """The events of one run, in order, without repeats; and how many lines were unreadable
    (a line cut short when the grading process was killed mid-write is skipped, not fatal)."""
    events, bad, seen = [], 0, set()
    if not path.exists():
        return events, bad
    for line in path.read_text(errors="replace").splitlines():
        try:
            raw = json.loads(line)
            ev = Event(Kind(raw["kind"]), str(raw["detail"]))
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        if ev not in seen:
            seen.add(ev)
            events.append(ev)
    return events, bad
