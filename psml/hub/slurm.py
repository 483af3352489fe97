"""JupyterLab as a Slurm job: the hub's second spawner (Jupyter-JSC-like).

``[hub] spawner = "slurm"`` in a site profile makes :func:`psml.hub.config.build_config`
call :func:`configure`, which selects :class:`PsmlSlurmSpawner`: batchspawner's
SlurmSpawner (pinned) with

- the workshop form (:mod:`psml.hub.form`): account, partition, reservation (the workshop's
  preselected), runtime, cores, GPUs; checked again for REST API spawns (HTTP 400 saying
  what is allowed);
- the job script of :mod:`psml.hub.jobscript` (the course module through Lmod, then the
  single-user server of the course environment), submitted as the participant
  (``runuser``/``sudo``), so the job runs under their uid and account;
- spawn errors that say what happened, well inside the spawn timeout: Slurm not answering,
  the job refused, a job still queued after ``queue_timeout`` (cancelled, with Slurm's
  reason: the partition is full, the reservation has not started, ...), a job that ended
  before JupyterLab answered (with the end of its log);
- the job's remaining time on the hub's home page (``announcement_home``);
- a poll every ``POLL_INTERVAL`` s: a job that ended (``scancel``, runtime over) frees the
  server, and the home page offers to start a new one.

Stopping the server cancels the job (``scancel``) and waits until Slurm has it gone.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from batchspawner import JobStatus, SlurmSpawner
from tornado import web
from traitlets import Dict, Unicode, default

from psml.hub import form, jobscript
from psml.sites.profile import PLACEHOLDER_RE, ProfileError, SlurmSettings, parse_slurm

POLL_INTERVAL = 10      # s between the hub's checks of each running job (one squeue each)
# squeue fields, '|'-separated: state, end time, node list, pending reason.
QUERY = "squeue -h -j {job_id} -o '%T|%e|%N|%r'"
# Slurm's pending reasons, in a participant's words.
REASONS = {
    "Resources": "all cores (or GPUs) of the partition are in use",
    "Priority": "other jobs are ahead of it in the queue",
    "ReqNodeNotAvail": "the nodes it needs are down or reserved",
    "Reservation": "the reservation has not started yet",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is not active",
    "PartitionTimeLimit": "its runtime is longer than the partition allows",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "JobHeldAdmin": "an administrator holds it",
    "BeginTime": "its start time has not come yet",
    "QOSMaxJobsPerUserLimit": "you already have as many jobs as allowed",
    "AssocMaxJobsLimit": "the project already has as many jobs as allowed",
}
UNREACHABLE = re.compile(r"Unable to contact slurm controller|Socket timed out|"
                         r"Connection refused|Zero Bytes were transmitted", re.I)


class SlurmSpawnError(web.HTTPError):
    """A spawn that cannot go on; the message (shown on the spawn page) says why and what to
    do. An HTTPError so that JupyterHub shows it as is."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(status, log_message=message)
        self.jupyterhub_message = message


def resolve(text: str, env=os.environ) -> str:
    """Fill ``${NAME}`` / ``${NAME:-default}`` from the hub's environment at spawn time."""
    def fill(m):
        value = env.get(m.group(1)) or m.group(2)
        if value is None:
            raise ProfileError(f"[hub.slurm] needs the environment variable {m.group(1)} "
                               "(set it where the hub starts)")
        return value
    return PLACEHOLDER_RE.sub(fill, text)


def settings(raw: dict, source: str = "[hub.slurm]", env=os.environ) -> SlurmSettings:
    """The validated ``[hub.slurm]`` table with its placeholders filled."""
    s = parse_slurm(raw, source)
    return replace(s, accounts=tuple(resolve(a, env) for a in s.accounts),
                   reservation=resolve(s.reservation, env),
                   modulepath=tuple(resolve(p, env) for p in s.modulepath))


def _local_names() -> set[str]:
    host = socket.gethostname()
    return {host, host.split(".")[0], "localhost"}


class PsmlSlurmSpawner(SlurmSpawner):
    """SlurmSpawner with the workshop form, psml's job script and clear spawn errors."""

    slurm = Dict(help="The site profile's [hub.slurm] table (psml.sites.profile.parse_slurm)"
                 ).tag(config=True)
    lmod_init = Unicode("", help="Lmod's bash init on the compute nodes, if not a usual place"
                        ).tag(config=True)
    batch_query_cmd = Unicode(QUERY).tag(config=True)
    job_end = Unicode("", help="When Slurm ends the job (its time limit), local time ISO")
    job_request = Dict()

    @default("exec_prefix")
    def _exec_prefix(self):
        # As the participant: the job gets their uid, and Slurm checks their account and
        # reservation. The hub runs as root here; a hub running as a service user needs a
        # sudoers rule for sbatch/squeue/scancel instead (docs/hpc-deployment.md).
        if os.geteuid() == 0:
            runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "runuser"
            return runuser + " -u {username} --"
        return "sudo -E -u {username}"

    @default("options_form")
    def _options_form(self):
        return lambda spawner: form.render(spawner.site(), spawner._request_or_none())

    @default("apply_user_options")
    def _apply_user_options(self):
        return PsmlSlurmSpawner._apply

    def site(self) -> SlurmSettings:
        try:
            return settings(self.slurm)
        except ProfileError as exc:  # the admin's to fix; the participant sees who to ask
            raise SlurmSpawnError(f"The hub's Slurm settings are incomplete ({exc}): tell "
                                  "the course staff.") from None

    def _request_or_none(self):
        return form.JobRequest(**self.job_request) if self.job_request else None

    # --- the form -------------------------------------------------------------------------

    def options_from_form(self, formdata):
        # A FormError (ValueError) re-renders the form with its message above it.
        return form.validate(self.site(), formdata).as_options()

    @staticmethod
    def _apply(spawner, user_options):
        """Every spawn (form or REST API): the options checked again, defaults filled in."""
        try:
            req = form.validate(spawner.site(), user_options or {})
        except form.FormError as exc:
            raise SlurmSpawnError(f"Invalid job options: {exc}", 400) from None
        spawner.job_request = req.as_options()

    # --- the job --------------------------------------------------------------------------

    def _loopback(self) -> bool:
        """A hub API on loopback only reaches jobs on this host: then the server in the job
        listens on loopback too (nothing else can reach it)."""
        return self.hub.ip in ("127.0.0.1", "localhost", "::1")

    async def _get_batch_script(self, **subvars):
        req = form.JobRequest(**self.job_request)
        s = self.site()
        env = self.get_env()
        # batchspawner's wrapper (beside the single-user command in the course environment)
        # picks a free port on the node and reports it to the hub.
        wrapper = str(Path(self.cmd[0]).with_name(self.batchspawner_singleuser_cmd))
        cmd = [wrapper, *self.cmd, *self.get_args()]
        if s.kernel:
            cmd.append(f"--MappingKernelManager.default_kernel_name={s.kernel}")
        return jobscript.render(req, s, homedir=subvars["homedir"], export=sorted(env),
                                cmd=cmd, memory=self.req_memory, lmod_init=self.lmod_init)

    def get_env(self):
        env = super().get_env()
        if os.environ.get("SLURM_CONF"):   # a cluster of its own (tests, tools/minislurm.sh)
            env.setdefault("SLURM_CONF", os.environ["SLURM_CONF"])
        env.setdefault("PATH", os.pathsep.join(
            [os.path.dirname(shutil.which("sbatch") or "/usr/bin/sbatch"), "/usr/bin", "/bin"]))
        return env

    def _field(self, i: int) -> str:
        parts = (self.job_status or "").split("|")
        return parts[i].strip() if len(parts) > i and "|" in self.job_status else ""

    def state_gethost(self):
        node = self._field(2)
        if self._loopback():
            if node not in _local_names():
                raise SlurmSpawnError(
                    f"The job runs on node {node!r}, but the hub listens on loopback only, "
                    "so JupyterLab there cannot reach it: set c.JupyterHub.hub_ip (or "
                    "hub_connect_ip) to an address the compute nodes reach.")
            return "127.0.0.1"
        return node

    def _reason(self) -> str:
        code = self._field(3)
        if code in ("", "None"):  # just submitted: the scheduler has not looked at it yet
            return "waiting for the scheduler"
        return f"{code}: {REASONS[code]}" if code in REASONS else code

    def _log_tail(self, lines: int = 15) -> str:
        try:
            home = self.req_homedir
            text = Path(jobscript.log_path(home, self.job_id)).read_text(errors="replace")
        except (OSError, KeyError):
            return "(no job log found)"
        return "\n".join(text.splitlines()[-lines:])

    async def _submit(self) -> str:
        try:
            await self.submit_batch_script()
        except RuntimeError as exc:  # sbatch's stderr
            why = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no message"
            if UNREACHABLE.search(str(exc)):
                raise SlurmSpawnError(
                    f"The batch system (Slurm) is not answering ({why}). Your JupyterLab "
                    "was not submitted: try again in a minute; if it persists, tell the "
                    "course staff.", 503) from None
            raise SlurmSpawnError(f"Slurm did not accept the JupyterLab job: {why}. Check "
                                  "the form's choices or ask the course staff.", 400) from None
        if not self.job_id:
            raise SlurmSpawnError("sbatch returned no job id; see the hub's log.")
        return self.job_id

    async def start(self):
        """Submit, wait for the job to run (at most ``queue_timeout``), then for the server
        in it to report its port. Raises :class:`SlurmSpawnError` saying why otherwise."""
        if not self.job_request:  # started without apply_user_options (old hub)
            self._apply(self, self.user_options)
        self.ip = "127.0.0.1" if self._loopback() else "0.0.0.0"
        self.port = 0
        if self.server:
            self.server.port = self.port
        s = self.site()
        partition = self.job_request["partition"]
        job = await self._submit()
        t0 = time.monotonic()
        while True:
            status = await self.query_job_status()
            waited = time.monotonic() - t0
            if status == JobStatus.RUNNING:
                break
            if status == JobStatus.NOTFOUND:
                raise SlurmSpawnError(self._ended_message(job, "before it started"))
            if waited > s.queue_timeout:
                reason = (f"Slurm is not answering ({self.job_status.strip()})"
                          if status == JobStatus.UNKNOWN else self._reason())
                await self._cancel_quietly()
                raise SlurmSpawnError(
                    f"Your JupyterLab job {job} waited {waited:.0f} s in the queue of "
                    f"partition {partition!r} and was cancelled ({reason}). Try again later, "
                    "with fewer cores or a shorter runtime, or ask the course staff.", 503)
            await asyncio.sleep(self.startup_poll_interval)
        self.job_end = self._field(1)
        self.ip = self.state_gethost()
        # batchspawner-singleuser posts the server's port to the hub (the /batchspawner API).
        while self.port == 0:
            await asyncio.sleep(self.startup_poll_interval)
            if self.port == 0 and await self.query_job_status() == JobStatus.NOTFOUND:
                raise SlurmSpawnError(self._ended_message(job, "before JupyterLab started"))
        self.db.commit()
        self.log.info("JupyterLab of %s in Slurm job %s at %s:%s, ends %s", self.user.name,
                      job, self.ip, self.port, self.job_end)
        return self.ip, self.port

    def _ended_message(self, job: str, when: str) -> str:
        log = jobscript.log_path(self.req_homedir, job)
        tail = self._log_tail()
        self.clear_state()
        return (f"Your JupyterLab job {job} ended {when}. The end of its log ({log}):\n{tail}")

    async def _cancel_quietly(self):
        try:
            await self.cancel_batch_job()
        except Exception:  # noqa: BLE001 - reported by the caller's message already
            self.log.warning("could not cancel job %s", self.job_id, exc_info=True)
        self.clear_state()

    async def poll(self):
        status = await super().poll()
        if status is None and self.state_isrunning() and self._field(1):  # limit changed?
            self.job_end = self._field(1)
        return status

    async def stop(self, now=False):
        if not self.job_id:   # never submitted (sbatch refused it) or already gone
            return
        await super().stop(now=now)

    async def progress(self):
        """Lines for the spawn page: the job's state and, while it waits, why."""
        t0 = time.monotonic()
        while True:
            waited = time.monotonic() - t0
            if not self.job_id:
                yield {"message": "Submitting your JupyterLab job to Slurm..."}
            elif self.state_ispending():
                yield {"message": f"Job {self.job_id} waits in the queue ({self._reason()}), "
                       f"{waited:.0f} s"}
            elif self.state_isrunning():
                yield {"message": f"Job {self.job_id} runs on {self._field(2)}: starting "
                       "JupyterLab..."}
                return
            await asyncio.sleep(1)

    def get_state(self):
        state = super().get_state()
        if self.job_end:
            state["job_end"] = self.job_end
        if self.job_request:
            state["job_request"] = self.job_request
        return state

    def load_state(self, state):
        super().load_state(state)
        self.job_end = state.get("job_end", "")
        self.job_request = state.get("job_request", {})

    def clear_state(self):
        super().clear_state()
        self.job_end = ""

    def remaining(self, now: datetime | None = None) -> str:
        """The job's remaining time in words ("" when there is no running job)."""
        if not self.job_id or not self.job_end:
            return ""
        try:
            end = datetime.fromisoformat(self.job_end)
        except ValueError:   # "Unknown", "NONE": no limit
            return f"Your JupyterLab runs as Slurm job {self.job_id} without a time limit."
        left = max(0, int((end - (now or datetime.now())).total_seconds() // 60))
        return (f"Your JupyterLab runs as Slurm job {self.job_id} until "
                f"{end:%H:%M} {time.strftime('%Z')} ({left // 60} h {left % 60:02d} min left); "
                "save your work before then: the job ends with its runtime.")


def job_announcement(user) -> str:
    """``announcement_home``: the remaining time of the user's job on the hub's home page."""
    spawner = getattr(user, "spawner", None) if user is not None else None
    if not isinstance(spawner, PsmlSlurmSpawner) or not spawner.active:
        return ""
    return spawner.remaining()


def configure(c, s) -> None:
    """Select and configure :class:`PsmlSlurmSpawner` on the hub config ``c`` from the
    :class:`psml.hub.config.HubSettings` ``s`` (``s.raw["slurm"]``: ``[hub.slurm]``)."""
    raw = s.raw.get("slurm")
    if not raw:
        raise ProfileError(f"site profile {s.site!r}: spawner = \"slurm\" needs a [hub.slurm] "
                           "table (partitions, reservation, ...): see docs/hpc-deployment.md")
    # Checked now, not at the first spawn; ${NAME}s are filled from the environment of the
    # hub process at spawn time (the config may be generated elsewhere).
    site = parse_slurm(raw, f"site profile {s.site!r}")
    c.JupyterHub.spawner_class = PsmlSlurmSpawner
    c.PsmlSlurmSpawner.slurm = raw
    c.PsmlSlurmSpawner.req_memory = str(s.mem_limit)
    c.PsmlSlurmSpawner.poll_interval = POLL_INTERVAL
    # The spawn gives up with a message after queue_timeout; JupyterHub's own timeout (a
    # bare "Timeout") only if JupyterLab then never reports its port.
    c.PsmlSlurmSpawner.start_timeout = site.queue_timeout + 120
    c.PsmlSlurmSpawner.startup_poll_interval = 0.5
    tv = dict(c.JupyterHub.template_vars) if "template_vars" in c.JupyterHub else {}
    tv["announcement_home"] = job_announcement
    c.JupyterHub.template_vars = tv
