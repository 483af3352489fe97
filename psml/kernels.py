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
import shutil
import sys
from pathlib import Path

from psml import __version__
from psml.resources import KERNELS as KERNELS_HOME
from psml.sites.profile import (KERNEL_PREFIX, PLACEHOLDER_RE, Partition, Profile,
                                ProfileError, SITES_DIR, SlurmSettings, Variant,
                                available_sites, load_profile, parse_profile, parse_slurm,
                                substitute)
from psml.sites.render import (LMOD_INIT_CANDIDATES, MODULE_NAME, SLURM_BREAKING_VARS,
                               lua_expr, lua_string, render_kernel_json, render_kernel_sh,
                               render_modulefile, shell_word, user_base)

# `psml kernels` is the public face of site profiles: their API is importable from here too.
__all__ = ["KERNEL_PREFIX", "LOGOS", "PLACEHOLDER_RE", "Partition", "Profile", "ProfileError",
           "SITES_DIR", "SlurmSettings", "Variant", "available_sites", "load_profile",
           "parse_profile", "parse_slurm", "substitute", "LMOD_INIT_CANDIDATES", "MODULE_NAME",
           "SLURM_BREAKING_VARS", "lua_expr", "lua_string", "render_kernel_json",
           "render_kernel_sh", "render_modulefile", "shell_word", "user_base", "install",
           "installed", "remove", "kernels_dir", "add_parser", "main"]

LOGOS = ("logo-32x32.png", "logo-64x64.png")


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
