"""Isolation and limits for running one student's notebook (used by :mod:`psml.grading`).

Three pieces, each small:

* :class:`Limits` and :class:`PsmlGrader` -- the limits, configurable in ``nbgrader_config.py``
  (``c.PsmlGrader.memory_mb = 4096``) and on the ``psml grade`` command line.
* ``python -m psml.sandbox SPEC -f CONNECTION_FILE`` -- the kernel launcher. nbgrader starts it
  as the kernel (a kernelspec ``psml-sandbox`` written into each scratch course). As root it
  puts the kernel into its own mount and network namespaces (only loopback), covers the course's
  secrets (``solutions/``, ``gradebook.db``, other submissions) and ``/tmp`` with empty
  file systems, sets resource limits, and drops to a uid used by nobody else. Without root it
  applies the resource limits only (see docs/grading.md for what applies where).
* :mod:`psml.grading_execute` -- the grader-side half (notebook deadline, output cap, ...).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

from traitlets import Bool, Integer
from traitlets.config import Configurable

# --------------------------------------------------------------------------------------------
# limits


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

    def limits(self, **override) -> Limits:
        values = {f.name: getattr(self, f.name) for f in fields(Limits)}
        values.update({k: v for k, v in override.items() if v is not None})
        return Limits(**values)


def load_grader_config(course: Path, **override) -> PsmlGrader:
    """The course's ``c.PsmlGrader`` settings, with command-line overrides on top."""
    from traitlets.config.loader import PyFileConfigLoader

    cfg_file = course / "nbgrader_config.py"
    config = PyFileConfigLoader(cfg_file.name, str(course)).load_config() \
        if cfg_file.is_file() else None
    grader = PsmlGrader(config=config)
    for k, v in override.items():
        if v is not None:
            setattr(grader, k, v)
    return grader


#: grader-side events (JSON lines) of one submission: see psml.grading_execute
EVENTS_ENV = "PSML_GRADE_EVENTS"


def can_isolate() -> bool:
    """Namespaces and a foreign uid need root (CAP_SYS_ADMIN, CAP_SETUID) on Linux."""
    return sys.platform.startswith("linux") and os.geteuid() == 0


# --------------------------------------------------------------------------------------------
# kernel launcher (runs as the kernel process: python -m psml.sandbox SPEC -f CONNECTION_FILE)

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(libc, src, target, fstype, flags, data=None) -> None:
    enc = lambda s: s.encode() if isinstance(s, str) else s  # noqa: E731
    _check(libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)),
           f"mount {target}")


def _loopback_up() -> None:
    """Bring up ``lo`` in the new network namespace (MPI/ipyparallel on localhost still work)."""
    import fcntl
    import socket
    import struct

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", 0x1 | 0x8 | 0x40, b""))
    finally:
        s.close()


def _isolate(spec: dict) -> None:
    """As root: own mount + network namespace; empty file systems over secrets and /tmp."""
    libc = _libc()
    flags = CLONE_NEWNS | (0 if spec["limits"]["network"] else CLONE_NEWNET)
    _check(libc.unshare(flags), "unshare")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    if not spec["limits"]["network"]:
        _loopback_up()
    # Keep what the kernel needs from under the paths we cover: open them first, cover,
    # then bind the open directories back at their old paths.
    keep = {p: os.open(p, os.O_PATH) for p in spec["keep"]}
    for p in spec["hide"]:
        if os.path.isdir(p):
            _mount(libc, "tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        elif os.path.isfile(p):
            _mount(libc, "/dev/null", p, None, MS_BIND)
    for p in spec["tmpfs"]:
        if os.path.isdir(p):
            _mount(libc, "tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV,
                   f"size={max(spec['limits']['file_mb'], 16)}m,mode=1777")
    for p, fd in keep.items():
        os.makedirs(p, exist_ok=True)
        _mount(libc, f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
        os.close(fd)


def _set_limits(limits: dict, nproc: bool) -> None:
    def lim(which, value):
        if value:
            resource.setrlimit(which, (value, value))

    lim(resource.RLIMIT_AS, limits["memory_mb"] * 2**20)
    lim(resource.RLIMIT_CPU, limits["cpu_s"])
    lim(resource.RLIMIT_FSIZE, limits["file_mb"] * 2**20)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core dumps of student kernels
    if nproc:  # only meaningful for a uid of its own (root ignores it; a shared uid shares it)
        lim(resource.RLIMIT_NPROC, limits["max_procs"])


def launch_kernel(spec_path: str, argv: list[str]) -> None:
    """Become the sandboxed kernel: isolate, limit, drop privileges, exec ipykernel."""
    spec = json.loads(Path(spec_path).read_text())
    if "-f" not in argv:
        raise SystemExit("usage: python -m psml.sandbox SPEC -f CONNECTION_FILE")
    i = argv.index("-f")
    conn = argv[i + 1]
    run = Path(spec["run_dir"])
    isolated = spec["isolate"] and can_isolate()
    if isolated:
        # The kernel cannot read the grader's runtime dir: hand it its own copy.
        own = run / "connection.json"
        own.write_text(Path(conn).read_text())
        os.chown(own, spec["uid"], spec["uid"])
        os.chmod(own, 0o600)
        argv = argv[:i + 1] + [str(own)] + argv[i + 2:]
        os.chown(".", spec["uid"], spec["uid"])  # the notebook's folder: its own files go here
        _isolate(spec)
    log = os.open(run / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if isolated:
        os.fchown(log, spec["uid"], spec["uid"])
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    if isolated:
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])
    _set_limits(spec["limits"], nproc=isolated)
    os.chdir(os.getcwd())
    env = spec["env"]
    os.execve(spec["python"], [spec["python"], "-m", "ipykernel_launcher", *argv], env)


# --------------------------------------------------------------------------------------------
# cleaning up after a submission


def uid_processes(uid: int) -> list[int]:
    """Pids of processes whose real uid is ``uid``."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                for line in (d / "status").read_text().splitlines():
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(d.name))
                        break
            except OSError:
                pass
    return pids


def kill_uid(uid: int, rounds: int = 50) -> int:
    """Kill every process of ``uid`` (a fork bomb included): a child that becomes ``uid``
    and sends SIGKILL to all it may signal, repeated until none is left. Returns how many
    were seen at first."""
    first = len(uid_processes(uid))
    for _ in range(rounds):
        if not uid_processes(uid):
            break
        pid = os.fork()
        if pid == 0:  # child: only processes of the same uid can be signalled after setuid
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.05)
    return first


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise SystemExit("usage: python -m psml.sandbox SPEC -f CONNECTION_FILE")
    launch_kernel(argv[0], argv[1:])


if __name__ == "__main__":
    main()
