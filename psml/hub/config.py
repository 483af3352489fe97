"""Hub settings from a site profile, turned into a ``jupyterhub_config.py``.

:func:`load_settings` reads the ``[hub]`` table of a site profile (fields: see
:mod:`psml.hub`) and applies command-line overrides; :func:`build_config` fills a traitlets
``Config`` (the local spawner here, ``psml.hub.slurm.configure`` for ``spawner = "slurm"``);
:func:`render` writes it as a plain Python file an admin can read, diff and run on a server.
Passwords and tokens never appear in it: the file reads them from ``secrets.json`` beside it.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from traitlets.config import Config

from psml.errors import PsmlError

REPO = Path(__file__).resolve().parents[2]
PROXY_BIN = REPO / ".hub" / "node_modules" / ".bin" / "configurable-http-proxy"
SPAWNERS = ("local", "slurm")
# nbgrader's instructor tools and JupyterLab's news pop-up: off for students.
INSTRUCTOR_PLUGINS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                      "@jupyter/nbgrader:course-list")
NEWS_PLUGIN = "@jupyterlab/apputils-extension:announcements"
INSTRUCTOR_SERVER_EXTENSIONS = ("nbgrader.server_extensions.formgrader",
                                "nbgrader.server_extensions.course_list")
COURSE_KERNEL = "psml"
SIZE_RE = re.compile(r"^\d+(\.\d+)?[KMGT]?$")


class HubError(PsmlError, RuntimeError):
    """A hub that cannot start or be configured; the message says what to do."""


@dataclass
class HubSettings:
    site: str = "local"
    spawner: str = "local"
    environment: str = sys.prefix
    port: int = 8000
    ip: str = "127.0.0.1"
    course_id: str = "psml"
    state_dir: str = "/srv/psml-hub"
    instructors_group: str = "psml-instructors"
    mem_limit: str = "4G"
    cpu_limit: float = 2.0
    idle_timeout: int = 3600
    authenticator: str = "shared-password"
    extra_config: str = ""
    repo: str = str(REPO)
    raw: dict = field(default_factory=dict)  # the whole [hub] table (spawner-specific parts)

    # -- derived paths ------------------------------------------------------------------
    @property
    def state(self) -> Path:
        return Path(self.state_dir)

    @property
    def hub_dir(self) -> Path:  # root only: database, secrets, logs, pids
        return self.state / "hub"

    @property
    def course_dir(self) -> Path:
        return self.state / "course"

    @property
    def exchange_dir(self) -> Path:
        return self.state / "exchange"

    def jupyter_dir(self, role: str) -> Path:
        return self.state / "jupyter" / role

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "HubSettings":
        return cls(**json.loads(text))


FIELDS = {f for f in HubSettings.__dataclass_fields__} - {"site", "repo", "raw"}


def load_settings(site: str = "local", **overrides) -> HubSettings:
    """The site profile's ``[hub]`` table, then ``overrides`` (``None`` values ignored)."""
    from psml.sites.profile import SITES_DIR

    path = Path(site) if site.endswith(".toml") else SITES_DIR / f"{site}.toml"
    if not path.is_file():
        raise HubError(f"no site profile {site!r} ({path}): choose one in {SITES_DIR}")
    raw = tomllib.loads(path.read_text()).get("hub", {})
    extra = set(raw) - FIELDS - {"slurm"}
    if extra:
        raise HubError(f"{path}: [hub] has unknown field(s) {sorted(extra)}; "
                       f"known: {sorted(FIELDS)}")
    values = {k: v for k, v in raw.items() if k in FIELDS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    s = HubSettings(site=path.stem, raw=raw, **values)
    _validate(s, str(path))
    return s


def _validate(s: HubSettings, source: str) -> None:
    def bad(name, why):
        return HubError(f"{source}: [hub] {name} = {getattr(s, name)!r}: {why}")

    if s.spawner not in SPAWNERS:
        raise bad("spawner", f"choose one of {SPAWNERS}")
    if not (0 < int(s.port) < 65533):
        raise bad("port", "must be a free TCP port below 65533 (port+1 and port+2 are used too)")
    if not SIZE_RE.match(str(s.mem_limit)):
        raise bad("mem_limit", "a size like 2G or 512M")
    if float(s.cpu_limit) <= 0 or int(s.idle_timeout) < 60:
        raise bad("idle_timeout" if float(s.cpu_limit) > 0 else "cpu_limit",
                  "cpu_limit > 0 and idle_timeout >= 60 s")
    if not re.match(r"^[A-Za-z0-9_-]+$", s.course_id):
        raise bad("course_id", "letters, digits, '_' and '-' only")


# --------------------------------------------------------------------------------------------
# the traitlets Config


@dataclass(frozen=True)
class Secret:
    """A value read at hub start from ``secrets.json`` (rendered as ``_secrets[key]``)."""
    key: str


def page_config(role: str) -> dict:
    """JupyterLab's ``labconfig/page_config.json`` for a role: what stays switched off."""
    off = [NEWS_PLUGIN] + (list(INSTRUCTOR_PLUGINS) if role == "student" else [])
    return {"disabledExtensions": {name: True for name in off}}


def server_config(role: str) -> dict:
    """``jupyter_server_config.json`` for a role: nbgrader's instructor server parts off for
    students; the course kernel preselected for new notebooks."""
    ext = {name: role == "instructor" for name in INSTRUCTOR_SERVER_EXTENSIONS}
    return {"ServerApp": {"jpserver_extensions": ext},
            "MappingKernelManager": {"default_kernel_name": COURSE_KERNEL},
            "LabApp": {"news_url": None, "check_for_updates_class":
                       "jupyterlab.NeverCheckForUpdate"}}


def build_config(s: HubSettings, admins: list[str], students: list[str]) -> Config:
    c = Config()
    hub = s.hub_dir
    env = Path(s.environment)
    c.JupyterHub.ip = s.ip
    c.JupyterHub.port = int(s.port)
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = int(s.port) + 1
    c.JupyterHub.db_url = f"sqlite:///{hub / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(hub / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(hub / "jupyterhub.pid")
    # Students keep their servers (and kernels, unsaved work) when the hub restarts;
    # `psml hub stop` stops them explicitly.
    c.JupyterHub.cleanup_servers = False
    c.ConfigurableHTTPProxy.command = [str(PROXY_BIN)]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(s.port) + 2}"
    c.ConfigurableHTTPProxy.pid_file = str(hub / "proxy.pid")
    c.ConfigurableHTTPProxy.auth_token = Secret("proxy_token")

    # Authentication: one shared password for students, a longer one for the named
    # instructor (admin) accounts; only roster members get in.
    if s.authenticator == "shared-password":
        c.JupyterHub.authenticator_class = "shared-password"
        c.SharedPasswordAuthenticator.user_password = Secret("user_password")
        if admins:
            c.SharedPasswordAuthenticator.admin_password = Secret("admin_password")
    else:
        c.JupyterHub.authenticator_class = s.authenticator
    c.Authenticator.admin_users = set(admins)
    c.Authenticator.allowed_users = set(students) | set(admins)

    # Services: the idle culler, and the token `psml hub stop/status` use.
    python = sys.executable
    c.JupyterHub.services = [
        {"name": "idle-culler", "command": [python, "-m", "jupyterhub_idle_culler",
                                            f"--timeout={int(s.idle_timeout)}"]},
        {"name": "psml", "api_token": Secret("api_token")},
    ]
    c.JupyterHub.load_roles = [
        {"name": "idle-culler", "services": ["idle-culler"],
         "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]},
        {"name": "psml-admin", "services": ["psml"],
         "scopes": ["admin:users", "admin:servers", "list:users", "read:users",
                    "read:servers", "tokens", "access:servers"]},
    ]

    # What every spawner shares: the course env's single-user server, the lab, limits, and
    # per-role Jupyter config (psml.hub.spawn.pre_spawn_hook picks the role's folder).
    from psml.hub.spawn import pre_spawn_hook

    c.Spawner.cmd = [str(env / "bin" / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab"
    c.Spawner.notebook_dir = "~"
    c.Spawner.mem_limit = str(s.mem_limit)
    c.Spawner.cpu_limit = float(s.cpu_limit)
    c.Spawner.start_timeout = 180  # a loaded 2-core machine needs ~10-40 s per server
    c.Spawner.http_timeout = 120
    c.Spawner.environment = {
        "PATH": f"{env / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "PSML_HUB_STATE": str(s.state),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    c.Spawner.pre_spawn_hook = pre_spawn_hook
    if s.spawner == "slurm":
        # Imported only when asked for (batchspawner); import_module honours sys.modules.
        importlib.import_module("psml.hub.slurm").configure(c, s)
    else:
        c.JupyterHub.spawner_class = "localprocess"
    return c


# --------------------------------------------------------------------------------------------
# rendering


def _literal(value, imports: set[str]) -> str:
    if isinstance(value, Secret):
        return f"_secrets[{value.key!r}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k, imports)}: {_literal(v, imports)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_literal(v, imports) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if value else ''})"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(_literal(v, imports) for v in sorted(value)) + "}" if value \
            else "set()"
    if callable(value):  # classes and functions: imported by name
        imports.add(f"from {value.__module__} import {value.__qualname__}")
        return value.__qualname__
    return repr(value)


def render(c: Config, s: HubSettings) -> str:
    imports: set[str] = set()
    body = []
    for section in sorted(c):
        for name in sorted(c[section]):
            body.append(f"c.{section}.{name} = {_literal(c[section][name], imports)}")
    head = [f"# jupyterhub_config.py generated by `psml hub` from site profile {s.site!r}.",
            "# Do not edit: change the profile's [hub] table (or extra_config) and regenerate.",
            "import json", "import os", *sorted(imports), "",
            "_secrets = json.load(open(os.path.join(os.path.dirname(__file__), "
            "'secrets.json')))", "c = get_config()  # noqa: F821", ""]
    tail = []
    if s.extra_config:
        tail = ["", "# the site's own settings (its authenticator, ...), loaded last",
                f"load_subconfig({s.extra_config!r})  # noqa: F821"]
    return "\n".join(head + body + tail) + "\n"
