"""The batch script that runs a participant's JupyterLab as a Slurm job.

Jupyter-JSC style: clean module state, ``module use`` the course's module path, load the
profile's ``[hub] modules`` (the course module ``psml``, which brings the site's stack and
puts the course kernels on ``JUPYTER_PATH``), then ``exec`` the single-user server from the
course environment. The resources are exactly the form's (:class:`JobRequest`). Every step
that can fail says so in the job's log (``~/.psml-jupyter-<jobid>.log``), which the spawner
quotes when the job dies before JupyterLab answers.
"""

from __future__ import annotations

import shlex

from psml.hub.form import JobRequest
from psml.sites.profile import SlurmSettings
from psml.sites.render import LMOD_INIT_CANDIDATES, shell_word

JOB_NAME = "psml-jupyter"
LOG_NAME = ".psml-jupyter-%j.log"   # in the participant's home; %j = the job id


def log_path(homedir: str, job_id: str) -> str:
    return f"{homedir.rstrip('/')}/{LOG_NAME.replace('%j', job_id)}"


def render(req: JobRequest, hub: SlurmSettings, *, homedir: str, export: list[str],
           cmd: list[str], memory: str = "", lmod_init: str = "") -> str:
    """The script for ``sbatch`` (read on stdin). ``export``: the variable names the job
    takes from the hub (``--export``: JupyterHub's API token and URLs, never the hub's whole
    environment); ``cmd``: the single-user command line; ``memory``: ``--mem`` (the hub's
    per-user limit, enforced by Slurm)."""
    lines = [
        "#!/bin/bash",
        "# A participant's JupyterLab, submitted by psml's hub (psml/hub/jobscript.py).",
        f"#SBATCH --job-name={JOB_NAME}",
        f"#SBATCH --output={homedir.rstrip('/')}/{LOG_NAME}",
        f"#SBATCH --chdir={homedir}",
        f"#SBATCH --export={','.join(export)}",
        *(f"#SBATCH {opt}" for opt in req.sbatch_options()),
        *([f"#SBATCH --mem={memory}"] if memory else []),
        "set -euo pipefail",
        'fail() { echo "psml hub job: $*" >&2; exit 1; }',
    ]
    if hub.modules:
        inits = ([lmod_init] if lmod_init else []) + list(LMOD_INIT_CANDIDATES)
        lines += [
            "if ! type module >/dev/null 2>&1; then  # batch jobs start without a login shell",
            f"  for init in {' '.join(shell_word(i) for i in inits)}; do",
            '    if [ -r "$init" ]; then source "$init"; break; fi',
            "  done",
            "fi",
            "type module >/dev/null 2>&1 || fail \"Lmod's 'module' command is not available "
            "on this node (set 'lmod_init' in the site profile)\"",
            "module --force purge",
        ]
        lines += [f"module use {shell_word(p, 'hub.modulepath')}" for p in hub.modulepath]
        for m in hub.modules:  # MODULE_RE: no quote, $ or backtick can occur in m
            lines.append(f"module load {shlex.quote(m)} || fail \"module '{m}' failed to load "
                         f"(Lmod's message is above; try: module spider {m})\"")
    lines += [
        'echo "psml: JupyterLab in job ${SLURM_JOB_ID} on $(hostname), ${SLURM_NTASKS} tasks, '
        'modules: ${LOADEDMODULES:-none}"',
        f"[ -x {shlex.quote(cmd[0])} ] || fail \"{cmd[0]} is missing: the course environment "
        "must be installed where every compute node can run it (site profile field "
        "'environment')\"",
        "exec " + " ".join(shlex.quote(c) for c in cmd),
        "",
    ]
    return "\n".join(lines)
