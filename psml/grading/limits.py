"""Per-submission limits and the ``c.PsmlGrader.*`` settings of ``nbgrader_config.py``."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields

from traitlets import Bool, Integer
from traitlets.config import Configurable


@dataclass
class Limits:
    """Per-submission limits. ``0`` switches a limit off."""

    cell_timeout: int = 120       # s of wall time per cell (nbgrader's Execute.timeout)
    notebook_timeout: int = 600   # s of wall time per notebook (cells after that are skipped)
    memory_mb: int = 4096         # address space of each kernel process (RLIMIT_AS)
    cpu_s: int = 900              # CPU seconds of each kernel process (RLIMIT_CPU)
    max_procs: int = 256          # processes+threads of the submission (RLIMIT_NPROC, own uid)
    output_kb: int = 1024         # output kept per notebook; the rest is dropped with a note
    file_mb: int = 256            # largest file the kernel may write (RLIMIT_FSIZE)
    network: bool = False         # False: own network namespace with loopback only (root)

    def for_nbgrader_process(self) -> float:
        """Hard wall limit for a whole ``nbgrader autograde`` run of one notebook."""
        return (self.notebook_timeout or 3600) + 2 * (self.cell_timeout or 60) + 60


class PsmlGrader(Configurable):
    """``psml grade`` settings read from the course's nbgrader_config.py (``c.PsmlGrader.*``)."""

    workers = Integer(2, help="submissions graded at the same time").tag(config=True)
    cell_timeout = Integer(Limits.cell_timeout, help="s per cell").tag(config=True)
    notebook_timeout = Integer(Limits.notebook_timeout, help="s per notebook").tag(config=True)
    memory_mb = Integer(Limits.memory_mb, help="address space per kernel (MB)").tag(config=True)
    cpu_s = Integer(Limits.cpu_s, help="CPU seconds per kernel process").tag(config=True)
    max_procs = Integer(Limits.max_procs, help="processes/threads per submission").tag(
        config=True)
    output_kb = Integer(Limits.output_kb, help="output kept per notebook (kB)").tag(config=True)
    file_mb = Integer(Limits.file_mb, help="largest file a kernel may write (MB)").tag(
        config=True)
    network = Bool(Limits.network, help="allow network access from student code").tag(
        config=True)
    sandbox = Bool(True, help="isolate kernels (namespaces + own uid) when running as root").tag(
        config=True)
    uid_base = Integer(3_100_000, help="first of the uids kernels run as (unused by anyone)").tag(
        config=True)
    quick = Bool(True, help="set PSML_QUICK=1 for graded kernels").tag(config=True)
    canary = Bool(True, help="grade the instructor's solution first; stop the batch unless it "
                             "gets every auto-graded point").tag(config=True)

    def limits(self, **override) -> Limits:
        values = {f.name: getattr(self, f.name) for f in fields(Limits)}
        values.update({k: v for k, v in override.items() if v is not None})
        return Limits(**values)


def grader_settings(config=None, **override) -> PsmlGrader:
    """``c.PsmlGrader`` from an already loaded config, with command-line overrides on top."""
    grader = PsmlGrader(config=config)
    for k, v in override.items():
        if v is not None:
            setattr(grader, k, v)
    return grader


def can_isolate() -> bool:
    """Namespaces and a foreign uid need root (CAP_SYS_ADMIN, CAP_SETUID) on Linux."""
    return sys.platform.startswith("linux") and os.geteuid() == 0
