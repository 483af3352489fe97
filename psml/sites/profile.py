"""Site profiles: what a course kernel, the Lmod module and the hub need to know about a site.

A *site profile* (``kernels/sites/NAME.toml``) says how a kernel starts on one site: the Lmod
modules to load (in order), the course environment (a venv) to activate, the variables to
set, whether ``PYTHONPATH`` may reach the kernel, the kernel *variants* (cpu, gpu, mpi), and
for a hub its ``[hub]`` table (``[hub.slurm]``: the workshop form's choices and the job's
modules).

Profiles are data from outside: every name is checked against a strict character set, and
``${NAME}`` (or ``${NAME:-default}``) is the only way a value reads the environment. A bad
profile raises :class:`ProfileError` naming the field and the reason; :func:`substitute`
fills ``${NAME}`` at install time (``--var NAME=VALUE``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from psml.errors import PsmlError
from psml.resources import SITES as SITES_DIR

KERNEL_PREFIX = "psml-"  # kernel directory = psml-<variant>

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
