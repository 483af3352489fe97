"""The kernel launcher of ``psml grade``: isolation and limits for one student's notebook.

``python -m psml.grading.sandbox SPEC -f CONNECTION_FILE`` -- nbgrader starts it as the kernel
(a kernelspec ``psml-sandbox`` written into each scratch course). As root it puts the kernel
into its own mount and network namespaces (only loopback) and an *allow-list* root: a fresh
file system that holds the system (``/usr``, ``/etc``, ...) and the course environment (the
Python and psml it runs) read-only, the submission's own run folder read-write, empty
``/tmp``, ``/var/tmp`` and ``/dev/shm``, and nothing else of the machine (no other checkouts,
homes, courses, no gradebook, no notebook with hidden tests). Then it sets resource limits and
drops to a uid used by nobody else. Without root it applies the resource limits only (see
docs/grading.md for what applies where). The limits themselves: :mod:`psml.grading.limits`.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from psml.grading.limits import can_isolate

#: the system, visible read-only to every graded kernel
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


def runtime_paths() -> list[str]:
    """The course environment a kernel needs: this Python (venv and base) and psml."""
    import psml

    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)),
             str(Path(psml.__file__).resolve().parent)}
    return sorted(p for p in paths if p)


# --------------------------------------------------------------------------------------------
# kernel launcher (runs as the kernel: python -m psml.grading.sandbox SPEC -f CONNECTION)

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 32, 4096, 16384, 1 << 18)


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


def _place(libc, new: str, src: str, read_only: bool) -> None:
    """Make ``src`` visible at the same path under the new root ``new``."""
    target = new + os.path.abspath(src)
    if os.path.islink(src):  # /lib -> usr/lib: the link, and what it points to
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(os.readlink(src), target)
        _place(libc, new, os.path.realpath(src), read_only)
        return
    if not os.path.exists(src):
        return
    if os.path.isdir(src):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(libc, src, target, None, MS_BIND | MS_REC)
    if read_only:
        _mount(libc, None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)


def _isolate(spec: dict) -> None:
    """As root: own mount + network namespace, then chroot into an allow-list root."""
    libc = _libc()
    flags = CLONE_NEWNS | (0 if spec["limits"]["network"] else CLONE_NEWNET)
    _check(libc.unshare(flags), "unshare")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    if not spec["limits"]["network"]:
        _loopback_up()
    new = spec["root"]
    _mount(libc, "tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=755")
    tmp = f"size={max(spec['limits']['file_mb'], 16)}m,mode=1777"
    for p in ("/tmp", "/var/tmp"):  # first: a run folder under /tmp is bound on top
        os.makedirs(new + p, exist_ok=True)
        _mount(libc, "tmpfs", new + p, "tmpfs", MS_NOSUID | MS_NODEV, tmp)
    _place(libc, new, "/dev", False)
    _mount(libc, "tmpfs", new + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, tmp)
    _place(libc, new, "/proc", False)  # other users' /proc/PID/{cwd,root,fd} stay closed
    _place(libc, new, "/sys", True)
    for p in sorted(spec["ro"], key=len):
        _place(libc, new, p, True)
    for p in sorted(spec["rw"], key=len):
        _place(libc, new, p, False)
    os.chdir(new)
    os.chroot(".")


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
        raise SystemExit("usage: python -m psml.grading.sandbox SPEC -f CONNECTION_FILE")
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
    # Its own folder, not the autograded one: that holds the notebook with the hidden tests.
    os.chdir(spec["cwd"])
    env = spec["env"]
    os.execve(spec["python"], [spec["python"], "-m", "ipykernel_launcher", *argv], env)


# --------------------------------------------------------------------------------------------
# cleaning up after a submission


def uid_processes(uid: int) -> list[int]:
    """Pids of live (not zombie) processes whose real uid is ``uid``."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                status = dict(ln.split(":", 1) for ln in (d / "status").read_text().splitlines()
                              if ":" in ln)
            except OSError:
                continue
            if int(status["Uid"].split()[0]) == uid and not status["State"].strip().startswith(
                    "Z"):
                pids.append(int(d.name))
    return pids


def kill_uid(uid: int, rounds: int = 50) -> int:
    """Kill every process of ``uid`` (a fork bomb included): ``kill -KILL -1`` run as that uid
    (only processes of the same uid can be signalled), repeated until none is left. Returns
    how many were seen at first. Safe from worker threads: subprocess switches the uid in C
    between its fork and exec, no Python runs in a forked copy of this process."""
    first = len(uid_processes(uid))
    for _ in range(rounds):
        if not uid_processes(uid):
            break
        subprocess.run([sys.executable, "-c", "import os, signal; os.kill(-1, signal.SIGKILL)"],
                       user=uid, group=uid, extra_groups=[], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        time.sleep(0.05)
    return first


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise SystemExit("usage: python -m psml.grading.sandbox SPEC -f CONNECTION_FILE")
    launch_kernel(argv[0], argv[1:])


if __name__ == "__main__":
    main()
