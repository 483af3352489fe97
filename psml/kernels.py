"""Course kernels for HPC Jupyter services, generated from site profiles.

A *site profile* (``kernels/sites/NAME.toml``) says how a kernel starts on one site: the Lmod
modules to load (in order), the course environment (a venv) to activate, the variables to
set, whether ``PYTHONPATH`` may reach the kernel, and the kernel *variants* (cpu, gpu, mpi).
:func:`install` turns a profile into Jupyter kernel directories, one per variant::

    psml-gpu/kernel.json   argv ["{resource_dir}/kernel.sh", "-f", "{connection_file}"]
    psml-gpu/kernel.sh     purge modules, load exactly the profile's, activate, exec ipykernel
    psml-gpu/logo-*.png

``kernel.sh`` fails fast, naming the module that did not load, instead of the misleading
"No module named ipykernel_launcher" a kernel dies with when a ``module load`` fails
silently. :func:`render_modulefile` writes the matching Lmod modulefile (``psml/<version>.lua``).

Profiles are data from outside: every name is checked against a strict character set, every
value is shell-quoted (``shlex.quote``) or Lua-quoted, and ``${NAME}`` (or ``${NAME:-default}``)
is the only way a value reads the environment. A bad profile raises :class:`ProfileError`
naming the field and the reason. ``--var NAME=VALUE`` fills a ``${NAME}`` at install time.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from psml import __version__
from psml.errors import PsmlError
from psml.resources import KERNELS as KERNELS_HOME, SITES as SITES_DIR

LOGOS = ("logo-32x32.png", "logo-64x64.png")
KERNEL_PREFIX = "psml-"  # kernel directory = psml-<variant>
MODULE_NAME = "psml"

# Set by the Slurm job a Jupyter server runs in; inherited by `srun` started from a kernel or
# terminal, and by jobs `sbatch` submits from there (it exports the environment), where they
# break the new job:
#  - memory: srun reads all three and dies when two are set ("SLURM_MEM_PER_CPU,
#    SLURM_MEM_PER_GPU, and SLURM_MEM_PER_NODE are mutually exclusive": seen with Slurm 22.05
#    here, and esm-tools#1387); a batch job gets its own SLURM_MEM_PER_NODE plus the inherited;
#  - cpus-per-task: an inherited value conflicts with the new job's own ("cpus-per-task set
#    by two different environment variables", goodfire-ai/spd#955);
#  - CPU binding: the new job's ranks get pinned to the Jupyter job's cores (same report).
SLURM_BREAKING_VARS = (
    "SLURM_MEM_PER_CPU", "SLURM_MEM_PER_GPU", "SLURM_MEM_PER_NODE",
    "SLURM_CPUS_PER_TASK", "SLURM_TRES_PER_TASK",
    "SLURM_CPU_BIND", "SLURM_CPU_BIND_LIST", "SLURM_CPU_BIND_TYPE", "SLURM_CPU_BIND_VERBOSE",
)

# Where Lmod's bash init usually lives; a profile can name its own with `lmod_init`.
LMOD_INIT_CANDIDATES = ("${LMOD_PKG:-/usr/share/lmod/lmod}/init/bash", "/etc/profile.d/lmod.sh",
                        "/usr/share/lmod/lmod/init/bash", "/etc/profile.d/z00_lmod.sh")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
MODULE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+/-]*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([A-Za-z0-9_./:,+@-]*))?\}")
PYTHONPATH_MODES = {
    "unset": "nothing reaches the kernel (the default: a leaked PYTHONPATH shadows the venv)",
    "modules": "only what the profile's modules put there (module-built stacks need it)",
    "keep": "the caller's PYTHONPATH and the modules' (not recommended)",
}
RESERVED_ENV = {
    "PATH": "set by activating 'environment'",
    "VIRTUAL_ENV": "set by activating 'environment'",
    "PYTHONPATH": "use the 'pythonpath' field",
    "PSML_KERNEL": "set by the generator to <site>-<variant>",
}
PROFILE_FIELDS = {"description", "modules", "environment", "pythonpath", "env", "variants",
                  "lmod_init", "hub"}
VARIANT_FIELDS = {"display_name", "modules", "env", "description"}
# [hub] is read by psml.hub.config; its [hub.slurm] sub-table (the workshop form's choices and
# the job's modules, for psml.hub.slurm) is validated here, with the rest of the profile.
SLURM_FIELDS = {"accounts", "reservation", "runtime", "cores", "partitions", "modules",
                "modulepath", "kernel", "queue_timeout"}
PARTITION_FIELDS = {"max_cores", "gpus", "max_runtime"}
# Slurm names (partitions, accounts, reservations) as they reach #SBATCH lines.
SLURM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ProfileError(PsmlError, ValueError):
    """A site profile that cannot be used; the message names the field and the reason."""


@dataclass(frozen=True)
class Variant:
    name: str
    display_name: str
    modules: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Partition:
    """A partition the workshop form offers, with the most a participant may ask for there."""
    name: str
    max_cores: int = 1
    gpus: int = 0            # the most GPUs per job; 0: a CPU partition
    max_runtime: int = 60    # minutes


@dataclass(frozen=True)
class SlurmSettings:
    """A profile's ``[hub.slurm]`` table: the workshop form's choices and the job's modules.
    Names may hold ``${NAME}`` placeholders (``psml kernels --var`` or the hub's environment
    fills them)."""
    accounts: tuple[str, ...] = ()     # project/account choices; the first is preselected
    reservation: str = ""              # preselected for participants; "" = none
    runtime: int = 60                  # default job runtime, minutes
    cores: int = 1                     # default cores (Slurm tasks: one MPI rank each)
    partitions: dict[str, Partition] = field(default_factory=dict)  # first = default
    modules: tuple[str, ...] = ()      # loaded in the job before JupyterLab starts
    modulepath: tuple[str, ...] = ()   # `module use` before loading them
    kernel: str = ""                   # the variant JupyterLab preselects ("" = its default)
    queue_timeout: int = 120           # seconds a job may wait in the queue before the
                                       # spawn gives up and says why


@dataclass(frozen=True)
class Profile:
    name: str
    environment: str
    modules: tuple[str, ...] = ()
    pythonpath: str = "unset"
    env: dict[str, str] = field(default_factory=dict)
    variants: dict[str, Variant] = field(default_factory=dict)
    lmod_init: str = ""
    description: str = ""
    source: str = "<profile>"
    slurm: SlurmSettings | None = None   # [hub.slurm], when the site has one

    def kernel_name(self, variant: str) -> str:
        return KERNEL_PREFIX + variant

    def all_modules(self, variant: str) -> tuple[str, ...]:
        return self.modules + self.variants[variant].modules


# --- validation -------------------------------------------------------------------------

def _err(source: str, where: str, reason: str) -> ProfileError:
    return ProfileError(f"{source}: field '{where}': {reason}")


def _check_value(value, where: str, source: str) -> str:
    """A value that is quoted on output: any text, but ``$`` only as ``${NAME}``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _err(source, where, f"must be a string or a number, got {type(value).__name__}")
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise _err(source, where, "control characters (newline, tab, NUL, ...) are not allowed")
    if "`" in text:
        raise _err(source, where, "backticks are not allowed (no command substitution)")
    if "$" in PLACEHOLDER_RE.sub("", text):
        raise _err(source, where, "'$' is only allowed as ${NAME} or ${NAME:-default} "
                   "(default made of letters, digits and _./:,+@-); $(...) and bare $NAME "
                   "are not allowed")
    return text


def _check_modules(value, where: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _err(source, where, f"must be a list of module names, got {type(value).__name__}")
    for i, m in enumerate(value):
        if not isinstance(m, str) or not MODULE_RE.match(m) or ".." in m:
            raise _err(source, f"{where}[{i}]", f"{m!r} is not a module name (letters, digits "
                       "and ._+/- only, starting with a letter or digit, no '..')")
    return tuple(value)


def _check_env(value, where: str, source: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _err(source, where, "must be a table of NAME = value")
    out = {}
    for k, v in value.items():
        if not ENV_NAME_RE.match(k):
            raise _err(source, f"{where}.{k}", "not a variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if k in RESERVED_ENV:
            raise _err(source, f"{where}.{k}", f"reserved: {RESERVED_ENV[k]}")
        out[k] = _check_value(v, f"{where}.{k}", source)
    return out


def _check_unknown(data: dict, allowed: set[str], where: str, source: str) -> None:
    for k in data:
        if k not in allowed:
            raise _err(source, f"{where}{k}",
                       f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _check_int(data: dict, key: str, default: int, where: str, source: str,
               low: int = 0) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _err(source, where + key, f"{value!r} must be a whole number >= {low}")
    return value


def _check_slurm_name(value, where: str, source: str) -> str:
    """A partition/account/reservation name, or a ``${NAME}`` filled when the hub starts."""
    text = _check_value(value, where, source)
    if text and not SLURM_NAME_RE.match(PLACEHOLDER_RE.sub("x", text)):
        raise _err(source, where, f"{text!r} is not a Slurm name (letters, digits and _.- "
                   "only, or ${NAME})")
    return text


def _parse_partition(name: str, data, source: str) -> Partition:
    where = f"hub.slurm.partitions.{name}"
    if not SLURM_NAME_RE.match(name):
        raise _err(source, where, f"{name!r} is not a Slurm partition name")
    if not isinstance(data, dict):
        raise _err(source, where, "must be a table ([hub.slurm.partitions.NAME])")
    _check_unknown(data, PARTITION_FIELDS, where + ".", source)
    return Partition(name=name, max_cores=_check_int(data, "max_cores", 1, where + ".", source, 1),
                     gpus=_check_int(data, "gpus", 0, where + ".", source),
                     max_runtime=_check_int(data, "max_runtime", 60, where + ".", source, 1))


def parse_slurm(data, source: str = "<profile>") -> SlurmSettings:
    """Validate a ``[hub.slurm]`` table (see :class:`SlurmSettings`)."""
    w = "hub.slurm."
    if not isinstance(data, dict):
        raise _err(source, "hub.slurm", "must be a table ([hub.slurm])")
    _check_unknown(data, SLURM_FIELDS, w, source)
    raw_parts = data.get("partitions", {})
    if not isinstance(raw_parts, dict) or not raw_parts:
        raise _err(source, w + "partitions", "the Slurm spawner needs at least one partition, "
                   "e.g. [hub.slurm.partitions.batch] with max_cores = 4")
    partitions = {n: _parse_partition(n, v, source) for n, v in raw_parts.items()}
    accounts = data.get("accounts", [])
    if not isinstance(accounts, list):
        raise _err(source, w + "accounts", "must be a list of account (project) names")
    modulepath = data.get("modulepath", [])
    if not isinstance(modulepath, list):
        raise _err(source, w + "modulepath", "must be a list of directories")
    kernel = _check_value(data.get("kernel", ""), w + "kernel", source)
    if kernel and not NAME_RE.match(kernel):
        raise _err(source, w + "kernel", f"{kernel!r} is not a kernel name (e.g. psml-mpi)")
    slurm = SlurmSettings(
        accounts=tuple(_check_slurm_name(a, f"{w}accounts[{i}]", source)
                       for i, a in enumerate(accounts)),
        reservation=_check_slurm_name(data.get("reservation", ""), w + "reservation", source),
        runtime=_check_int(data, "runtime", 60, w, source, 1),
        cores=_check_int(data, "cores", 1, w, source, 1),
        partitions=partitions,
        modules=_check_modules(data.get("modules", []), w + "modules", source),
        modulepath=tuple(_check_value(p, f"{w}modulepath[{i}]", source)
                         for i, p in enumerate(modulepath)),
        kernel=kernel,
        queue_timeout=_check_int(data, "queue_timeout", 120, w, source, 1),
    )
    for p in partitions.values():
        if slurm.cores > p.max_cores or slurm.runtime > p.max_runtime:
            raise _err(source, f"{w}partitions.{p.name}", f"the defaults (cores = {slurm.cores}"
                       f", runtime = {slurm.runtime}) exceed its max_cores = {p.max_cores} or "
                       f"max_runtime = {p.max_runtime}")
    return slurm


def parse_profile(data: dict, name: str, source: str = "<profile>") -> Profile:
    """Validate a profile's parsed TOML and return it; :class:`ProfileError` if it is bad."""
    if not NAME_RE.match(name):
        raise _err(source, "name", f"site name {name!r} must match [a-z0-9][a-z0-9-]* "
                   "(it becomes part of PSML_KERNEL)")
    _check_unknown(data, PROFILE_FIELDS, "", source)
    if "environment" not in data:
        raise _err(source, "environment", "missing: the path of the course venv to activate")
    env_path = _check_value(data["environment"], "environment", source)
    if not (env_path.startswith("/") or env_path.startswith("${")):
        raise _err(source, "environment", f"{env_path!r} must be an absolute path "
                   "(write ${HOME}/... rather than ~/...)")
    pythonpath = data.get("pythonpath", "unset")
    if pythonpath not in PYTHONPATH_MODES:
        raise _err(source, "pythonpath", f"{pythonpath!r} is not one of "
                   + "; ".join(f"'{k}': {v}" for k, v in PYTHONPATH_MODES.items()))
    description = _check_value(data.get("description", ""), "description", source)
    lmod_init = _check_value(data.get("lmod_init", ""), "lmod_init", source)
    modules = _check_modules(data.get("modules", []), "modules", source)
    env = _check_env(data.get("env", {}), "env", source)
    raw_variants = data.get("variants")
    if not isinstance(raw_variants, dict) or not raw_variants:
        raise _err(source, "variants", "needs at least one variant, e.g. [variants.cpu]")
    variants = {}
    for vname, v in raw_variants.items():
        where = f"variants.{vname}"
        if not NAME_RE.match(vname):
            raise _err(source, where, f"variant name {vname!r} must match [a-z0-9][a-z0-9-]*")
        if not isinstance(v, dict):
            raise _err(source, where, "must be a table ([variants.NAME])")
        _check_unknown(v, VARIANT_FIELDS, where + ".", source)
        variants[vname] = Variant(
            name=vname,
            display_name=_check_value(v.get("display_name", f"psml ({vname.upper()})"),
                                      where + ".display_name", source),
            modules=_check_modules(v.get("modules", []), where + ".modules", source),
            env=_check_env(v.get("env", {}), where + ".env", source),
            description=_check_value(v.get("description", ""), where + ".description", source),
        )
    hub = data.get("hub", {})
    if not isinstance(hub, dict):
        raise _err(source, "hub", "must be a table ([hub]; its fields: see psml.hub)")
    slurm = parse_slurm(hub["slurm"], source) if "slurm" in hub else None
    return Profile(name=name, environment=env_path, modules=modules, pythonpath=pythonpath,
                   env=env, variants=variants, lmod_init=lmod_init, description=description,
                   source=source, slurm=slurm)


def available_sites() -> list[str]:
    return sorted(p.stem for p in SITES_DIR.glob("*.toml"))


def load_profile(site: str | Path) -> Profile:
    """A site by name (``kernels/sites/NAME.toml``) or a path to a profile file."""
    path = Path(site)
    if path.suffix != ".toml":
        path = SITES_DIR / f"{site}.toml"
        if not path.is_file():
            raise ProfileError(f"no site profile {site!r}: choose one of "
                               f"{', '.join(available_sites())}, or pass a .toml file")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    return parse_profile(data, path.stem, str(path))


def substitute(profile: Profile, values: dict[str, str]) -> Profile:
    """Fill ``${NAME}`` placeholders with install-time values (``--var NAME=VALUE``)."""
    for k, v in values.items():
        if not ENV_NAME_RE.match(k):
            raise ProfileError(f"--var {k}=...: {k!r} is not a variable name")
        _check_value(v, f"--var {k}", "command line")
        if "$" in v:
            raise ProfileError(f"--var {k}=...: the value may not contain '$'")

    def fill(text: str) -> str:
        return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), text)

    def fill_env(env: dict[str, str]) -> dict[str, str]:
        return {k: fill(v) for k, v in env.items()}

    variants = {n: replace(v, env=fill_env(v.env)) for n, v in profile.variants.items()}
    h = profile.slurm
    slurm = h and replace(h, accounts=tuple(map(fill, h.accounts)),
                          reservation=fill(h.reservation),
                          modulepath=tuple(map(fill, h.modulepath)))
    return replace(profile, environment=fill(profile.environment), env=fill_env(profile.env),
                   lmod_init=fill(profile.lmod_init), variants=variants, slurm=slurm)


# --- rendering --------------------------------------------------------------------------

def shell_word(text: str, context: str = "") -> str:
    """One shell word: literal parts single-quoted, ``${NAME}`` expanded in double quotes
    (an unset ``${NAME}`` without default stops the script with a message)."""
    parts, pos = [], 0
    for m in PLACEHOLDER_RE.finditer(text):
        if m.start() > pos:
            parts.append(shlex.quote(text[pos:m.start()]))
        name, default = m.group(1), m.group(2)
        if default is not None:
            parts.append(f'"${{{name}:-{default}}}"')
        else:
            why = f"is not set, and the site profile needs it{' for ' + context if context else ''}"
            parts.append(f'"${{{name}:?{why}}}"')
        pos = m.end()
    if pos < len(text) or not parts:
        parts.append(shlex.quote(text[pos:]))
    return "".join(parts)


def lua_string(text: str) -> str:
    """A Lua string literal: printable ASCII as is, everything else as decimal escapes."""
    out = []
    for b in text.encode():
        c = chr(b)
        out.append("\\" + c if c in '"\\' else c if 32 <= b < 127 else f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def lua_expr(text: str) -> str:
    """A Lua expression for a value: literals concatenated with ``env("NAME")`` lookups."""
    parts, pos = [], 0
    for m in PLACEHOLDER_RE.finditer(text):
        if m.start() > pos:
            parts.append(lua_string(text[pos:m.start()]))
        default = "" if m.group(2) is None else ", " + lua_string(m.group(2))
        parts.append(f"env({lua_string(m.group(1))}{default})")
        pos = m.end()
    if pos < len(text) or not parts:
        parts.append(lua_string(text[pos:]))
    return " .. ".join(parts)


def user_base() -> str:
    """Per user and per course version: `pip install --user` in a kernel stays out of ~/.local."""
    return "${HOME}/.local/" + MODULE_NAME + "/" + __version__


def render_kernel_sh(profile: Profile, variant: str) -> str:
    v = profile.variants[variant]
    tag = f"{profile.name}-{variant}"
    modules = profile.all_modules(variant)
    env_dir = profile.environment.rstrip("/")
    lines = [
        "#!/usr/bin/env bash",
        f"# psml course kernel {tag} ({v.display_name}), generated by `psml kernels install`",
        f"# from the site profile '{profile.name}'. Do not edit: change the profile, re-install.",
        "# Jupyter-JSC style: clean module state, exactly the profile's modules, the course",
        "# environment, then exec the kernel. Every step that can fail says so and exits: a",
        "# kernel that dies later only shows JupyterLab's restart loop.",
        f'fail() {{ echo "psml kernel {tag}: $*" >&2; exit 1; }}',
    ]
    if profile.pythonpath == "modules":
        lines += ["# Only the modules' PYTHONPATH entries may reach the kernel.",
                  "unset PYTHONPATH"]
    if modules:
        inits = ([profile.lmod_init] if profile.lmod_init else []) + list(LMOD_INIT_CANDIDATES)
        lines += [
            "if ! type module >/dev/null 2>&1; then  # kernels start without a login shell",
            f"  for init in {' '.join(shell_word(i) for i in inits)}; do",
            '    if [ -r "$init" ]; then source "$init"; break; fi',
            "  done",
            "fi",
            "type module >/dev/null 2>&1 || fail \"Lmod's 'module' command is not available "
            "(no init script found; set 'lmod_init' in the site profile)\"",
            "module --force purge",
        ]
        for m in modules:  # MODULE_RE: no quote, $, backslash or backtick can occur in m
            lines.append(f"module load {shlex.quote(m)} || fail \"module '{m}' failed to load "
                         f"(Lmod's message is above; try: module spider {m})\"")
    activate = shell_word(env_dir + "/bin/activate", "the environment field")
    lines += [
        f"[ -r {activate} ] || fail \"course environment not found: \"{activate}\" is missing "
        "(site profile field 'environment')\"",
        f"source {activate}",
    ]
    if profile.pythonpath == "unset":
        lines += ["unset PYTHONPATH  # a leaked PYTHONPATH shadows the venv's packages"]
    lines += [
        f"export PSML_KERNEL={shlex.quote(tag)}",
        f"export PYTHONUSERBASE={shell_word(user_base(), 'PYTHONUSERBASE')}",
    ]
    for k, val in {**profile.env, **v.env}.items():
        lines.append(f"export {k}={shell_word(val, k)}")
    lines += [
        "# Set by the Jupyter server's Slurm job; they break sbatch/srun started from here.",
        "# (After the exports above: a profile value may read e.g. ${SLURM_CPUS_PER_TASK}.)",
        "unset " + " ".join(SLURM_BREAKING_VARS),
        'exec python -m ipykernel_launcher "$@"', ""]
    return "\n".join(lines)


def render_kernel_json(profile: Profile, variant: str) -> dict:
    v = profile.variants[variant]
    return {
        "argv": ["{resource_dir}/kernel.sh", "-f", "{connection_file}"],
        "display_name": v.display_name,
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": True,
                     "psml": {"site": profile.name, "variant": variant, "version": __version__,
                              "modules": list(profile.all_modules(variant))}},
    }


def render_modulefile(profile: Profile, prefix: str) -> str:
    """The Lmod modulefile ``psml/<version>.lua`` for kernels installed under ``prefix``.

    Generated rather than hand-written: ``depends_on`` must name this site's modules and
    JUPYTER_PATH the place the kernels were installed, both known only from the profile.
    """
    _check_value(prefix, "--prefix", "command line")
    data = profile.env.get("PSML_DATA", "")
    mods = ", ".join(profile.modules) or "none"
    lines = [
        f"-- psml {__version__}: the course environment of 'Parallel & Scalable Machine and "
        "Deep Learning'.",
        f"-- Generated by `psml kernels modulefile` from the site profile '{profile.name}'.",
        "-- Do not edit: change the profile and re-generate.",
        "help([[",
        f"psml {__version__} (site profile '{profile.name}')",
        "",
        "Makes the course kernels visible to Jupyter (JUPYTER_PATH), loads the site modules",
        "the course needs, sets the course data directory (PSML_DATA) and a per-user",
        "PYTHONUSERBASE, and unsets the Slurm variables of the Jupyter job that break",
        "sbatch/srun started from a notebook or terminal.",
        "",
        f"Site modules: {mods}",
        "",
        "Self-check: psml doctor",
        "]])",
        'whatis("Name: psml")',
        f'whatis("Version: {__version__}")',
        'whatis("Description: course kernels, data and settings for the psml course")',
        'whatis("Keywords: teaching, machine learning, jupyter")',
        "",
        '-- One psml at a time, whatever its version.',
        'family("psml")',
        "",
        "-- ${NAME} in the site profile: read from the environment when the module loads.",
        "local function env(name, default)",
        "  local value = os.getenv(name)",
        '  if value ~= nil and value ~= "" then return value end',
        "  if default ~= nil then return default end",
        '  if mode() == "load" then',
        '    LmodError("psml: the environment variable " .. name .. " is not set; '
        f'the site profile \'{profile.name}\' needs it")',
        "  end",
        '  return ""',
        "end",
        "",
    ]
    if profile.modules:
        lines.append("-- The site modules the course environment was built with, in order.")
        lines += [f"depends_on({lua_string(m)})" for m in profile.modules]
        lines.append("")
    lines += [
        "-- The course kernels (psml kernels install --prefix ...). pushenv, not setenv: unload",
        "-- gives back a PSML_DATA or PYTHONUSERBASE the user had before.",
        f'prepend_path("JUPYTER_PATH", {lua_expr(prefix.rstrip("/") + "/share/jupyter")})',
    ]
    if data:
        lines.append(f'pushenv("PSML_DATA", {lua_expr(data)})')
    lines += [
        f'pushenv("PYTHONUSERBASE", {lua_expr(user_base())})',
        "",
        "-- Set by the Jupyter server's Slurm job; srun from the session, and srun inside jobs",
        "-- sbatch submits from it, inherit them and fail (memory options are mutually exclusive,",
        "-- cpus-per-task conflicts) or pin the new job to the Jupyter job's cores.",
        "-- pushenv(..., false) unsets them; unload restores them.",
    ]
    lines += [f'pushenv("{v}", false)' for v in SLURM_BREAKING_VARS]
    lines.append("")
    return "\n".join(lines)


# --- install, list, remove --------------------------------------------------------------

def kernels_dir(user: bool = False, prefix: str | Path | None = None) -> Path:
    if prefix is not None:
        return Path(prefix) / "share" / "jupyter" / "kernels"
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "kernels"


def install(profile: Profile, variants: list[str] | None = None, *, user: bool = False,
            prefix: str | Path | None = None) -> list[Path]:
    """Write one kernel directory per variant (all by default); return their paths.

    With ``prefix`` also writes ``PREFIX/modulefiles/psml/<version>.lua``.
    """
    unknown = sorted(set(variants or ()) - set(profile.variants))
    if unknown:
        raise ProfileError(f"{profile.source}: no variant {', '.join(unknown)} (the profile has "
                           f"{', '.join(profile.variants)})")
    target = kernels_dir(user, prefix)
    out = []
    for name in variants or list(profile.variants):
        d = target / profile.kernel_name(name)
        d.mkdir(parents=True, exist_ok=True)
        (d / "kernel.json").write_text(json.dumps(render_kernel_json(profile, name), indent=1)
                                       + "\n")
        sh = d / "kernel.sh"
        sh.write_text(render_kernel_sh(profile, name))
        sh.chmod(0o755)
        for logo in LOGOS:
            if (KERNELS_HOME / logo).is_file():
                shutil.copyfile(KERNELS_HOME / logo, d / logo)
        out.append(d)
    if prefix is not None:
        mf = Path(prefix) / "modulefiles" / MODULE_NAME / f"{__version__}.lua"
        mf.parent.mkdir(parents=True, exist_ok=True)
        mf.write_text(render_modulefile(profile, str(Path(prefix).resolve())))
    return out


def installed() -> dict[str, dict]:
    """psml kernels Jupyter finds now: name -> {"dir", "display_name", "site", "variant"}."""
    from jupyter_client.kernelspec import KernelSpecManager

    found = {}
    for name, info in KernelSpecManager().get_all_specs().items():
        meta = info["spec"].get("metadata", {}).get("psml")
        if meta:
            found[name] = {"dir": info["resource_dir"],
                           "display_name": info["spec"]["display_name"], **meta}
    return found


def remove(names: list[str] | None = None, *, user: bool = False,
           prefix: str | Path | None = None) -> list[Path]:
    """Remove psml kernels (all, or ``names``) from one place; other kernels are left alone."""
    target = kernels_dir(user, prefix)
    removed = []
    for d in sorted(target.glob(KERNEL_PREFIX + "*")) if target.is_dir() else []:
        try:
            meta = json.loads((d / "kernel.json").read_text()).get("metadata", {})
        except (OSError, ValueError):
            continue
        if "psml" in meta and (not names or d.name in names):
            shutil.rmtree(d)
            removed.append(d)
    if prefix is not None and not names:
        mf = Path(prefix) / "modulefiles" / MODULE_NAME / f"{__version__}.lua"
        if mf.is_file():
            mf.unlink()
            removed.append(mf)
    return removed


# --- command line -----------------------------------------------------------------------

def _vars(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ProfileError(f"--var {p!r}: write NAME=VALUE")
        k, v = p.split("=", 1)
        out[k] = v
    return out


def _profile(args) -> Profile:
    values = {"PSML_VENV": sys.prefix, **_vars(args.var)}  # the local profile's venv default
    return substitute(load_profile(args.site), values)


def _install(args) -> int:
    try:
        profile = _profile(args)
        dirs = install(profile, args.variant, user=args.user, prefix=args.prefix)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for d in dirs:
        spec = json.loads((d / "kernel.json").read_text())
        print(f"installed {spec['display_name']!r} -> {d}")
    if args.prefix:
        jp = Path(args.prefix).resolve() / "share" / "jupyter"
        print(f"Jupyter finds them with JUPYTER_PATH={jp} (or: module use "
              f"{Path(args.prefix).resolve() / 'modulefiles'}; module load {MODULE_NAME})")
    return 0


def _list(args) -> int:
    print("site profiles: " + ", ".join(available_sites()) + f"  ({SITES_DIR})")
    found = installed()
    if not found:
        print("no psml kernels installed: psml kernels install --site NAME")
    for name, k in sorted(found.items()):
        print(f"  {name:<14} {k['display_name']:<16} site={k['site']:<14} {k['dir']}")
    return 0


def _remove(args) -> int:
    for p in remove(args.name, user=args.user, prefix=args.prefix):
        print(f"removed {p}")
    return 0


def _modulefile(args) -> int:
    try:
        text = render_modulefile(_profile(args), args.prefix)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def add_parser(sub) -> None:
    k = sub.add_parser("kernels", help="course kernels for HPC Jupyter (from site profiles)")
    ks = k.add_subparsers(dest="kernels_cmd", required=True)

    def where(p, verb):
        g = p.add_mutually_exclusive_group()
        g.add_argument("--user", action="store_true", help=f"{verb} the user's Jupyter dir "
                       "(default)")
        g.add_argument("--prefix", help=f"{verb} PREFIX/share/jupyter/kernels (shared: "
                       "add PREFIX/share/jupyter to JUPYTER_PATH)")

    def site(p):
        p.add_argument("--site", required=True, help="profile name in kernels/sites/ "
                       "or a path to a .toml profile")
        p.add_argument("--var", action="append", metavar="NAME=VALUE",
                       help="fill ${NAME} in the profile now instead of at kernel start")

    i = ks.add_parser("install", help="generate and install the kernels of a site profile")
    site(i)
    where(i, "install into")
    i.add_argument("--variant", action="append", help="only this variant (repeatable)")
    i.set_defaults(func=_install)

    ks.add_parser("list", help="site profiles and the psml kernels Jupyter finds"
                  ).set_defaults(func=_list)

    r = ks.add_parser("remove", help="remove installed psml kernels")
    r.add_argument("name", nargs="*", help="kernel names (default: all psml kernels there)")
    where(r, "remove from")
    r.set_defaults(func=_remove)

    m = ks.add_parser("modulefile", help="print the Lmod modulefile for kernels under a prefix")
    site(m)
    m.add_argument("--prefix", required=True, help="where the kernels are installed")
    m.add_argument("-o", "--output", help="write to this file instead of stdout")
    m.set_defaults(func=_modulefile)


def main(argv: list[str] | None = None) -> int:  # python -m psml.kernels
    ap = argparse.ArgumentParser(prog="psml")
    add_parser(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(argv)
    return args.func(args)
