"""The ``psml`` command (also ``python -m psml``).

Each sub-command lives in the module named for what it does; this file only wires them.
Add a command by writing ``add_parser(subparsers)`` in its module and listing it here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# Modules that contribute sub-commands (each defines add_parser(subparsers)).
COMMAND_MODULES = ["psml.cli", "psml.kernels", "psml.cluster", "psml.grading.cli", "psml.hvdrun",
                   "psml.distribution", "psml.bundle", "psml.hub.commands"]


def _doctor(args) -> int:
    from psml.doctor import main

    return main()


def _data_fetch(args) -> int:
    from psml.data import fetch_mnist

    fetch_mnist(Path(args.dest) if args.dest else None)
    return 0


def _data_info(args) -> int:
    from psml.config import data_dir
    from psml.data import mnist_path, mnist_status

    print(f"data dir: {data_dir()}  (set PSML_DATA to change it)")
    print(f"MNIST:    {mnist_path()} is {mnist_status()}")
    return 0


def _build(args) -> int:
    from psml import course

    root = course.course_root()
    if args.if_stale:
        built = course.build_if_stale(root)
    else:
        built = course.build(args.assignment or None, root)
        course.clean_release(root)
    problems = course.release_problems(root)
    print(f"built: {', '.join(built) or 'nothing (up to date)'}")
    for p in problems:
        print(f"LEAK: {p}", file=sys.stderr)
    return 1 if problems else 0


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check that this environment is ready for the course")
    p.set_defaults(func=_doctor)

    d = sub.add_parser("data", help="the data cache (MNIST)").add_subparsers(
        dest="data_cmd", required=True)
    f = d.add_parser("fetch", help="download full MNIST into the cache (needs internet)")
    f.add_argument("--dest", help="target directory (default: $PSML_DATA or ~/.cache/psml)")
    f.set_defaults(func=_data_fetch)
    d.add_parser("info", help="show the data cache and what is in it").set_defaults(
        func=_data_info)

    b = sub.add_parser("build", help="generate exercises/ from solutions/ with nbgrader")
    b.add_argument("assignment", nargs="*", help="assignment ids (default: all)")
    b.add_argument("--if-stale", action="store_true",
                   help="only assignments whose source changed since the last build")
    b.set_defaults(func=_build)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="psml", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from psml.errors import PsmlError

    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except PsmlError as exc:  # the one place errors become messages and exit codes
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
