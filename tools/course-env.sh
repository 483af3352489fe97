#!/usr/bin/env bash
# Create or update a *non-editable* course environment in PREFIX: what a hub's students and
# an HPC site's kernels run, with no path back into this repository (no solutions/).
#
#   tools/course-env.sh PREFIX        e.g. tools/course-env.sh /opt/psml/env
#
# PREFIX then holds:
#   PREFIX/bin/python, bin/jupyter-lab, bin/jupyterhub-singleuser, bin/psml, ...
#   PREFIX/share/jupyter/kernels/psml/   the course kernel "Python 3 (psml)" (runs PREFIX/bin/python)
# Everything the requirements.lock pins, psml as a wheel (package + site profiles + job
# scripts, tools/../psml/resources.py) and the Horovod wheel that tools/setup.sh built once
# (.cache/wheels/). Everything is readable and executable by all users; nothing is writable
# by them. Idempotent: a second run only re-installs the psml wheel (~15-30 s with warm
# caches; the first run into an empty PREFIX ~1 min when uv's cache is warm).
#
# Needs this repository's .venv (uv, the Horovod wheel): created by tools/setup.sh, which
# this script runs first when they are missing. Variables: PSML_PYTHON (the interpreter of
# the venv, default /usr/bin/python3.11), PSML_SKIP_HOROVOD=1 (no Horovod), PSML_WHEELS
# (where the wheels are cached, default .cache/wheels).
set -euo pipefail
umask 022
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '\033[1m[course-env]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[course-env] error:\033[0m %s\n' "$*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: tools/course-env.sh PREFIX   (the folder of the course environment)"
PREFIX="$(realpath -m "$1")"
case "$PREFIX" in "$ROOT"|"$ROOT"/*) die "PREFIX must be outside the repository ($ROOT): students must not be able to read the repository through it";; esac
DEV="${PSML_VENV:-$ROOT/.venv}"
PY="$DEV/bin/python"   # the repository's environment: builds the wheels, runs uv
UV="$DEV/bin/uv"
t0=$SECONDS

# shellcheck source=tools/horovod-wheel.sh
. "$ROOT/tools/horovod-wheel.sh"
hvd_ready() { [ "${PSML_SKIP_HOROVOD:-0}" = 1 ] || ls "$(horovod_wheel_dir)"/horovod-*.whl >/dev/null 2>&1; }
if [ ! -x "$UV" ] || ! hvd_ready; then
  say "the repository's environment or the Horovod wheel is missing: running tools/setup.sh"
  PSML_VENV="$DEV" "$ROOT/tools/setup.sh"
fi

# One run per PREFIX at a time (two test sessions, a hub and an admin): the others wait.
mkdir -p "$(dirname "$PREFIX")"
if command -v flock >/dev/null; then exec 9>"$PREFIX.lock"; flock 9; fi

# 1. The venv (only when missing: re-creating would break running kernels).
if [ ! -x "$PREFIX/bin/python" ]; then
  base="${PSML_PYTHON:-/usr/bin/python3.11}"
  [ -x "$base" ] || die "no $base: install python3.11 (apt-get install python3.11 python3.11-venv) or set PSML_PYTHON"
  say "creating $PREFIX with $base"
  "$UV" venv -q --python "$base" "$PREFIX"
fi
TARGET="$PREFIX/bin/python"

# 2. The pinned packages, re-synced only when the lock changed.
stamp="$PREFIX/.psml-lock"
want="$(sha256sum "$ROOT/requirements.lock" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing the pinned packages (requirements.lock)"
  "$UV" pip install -q --python "$TARGET" -r "$ROOT/requirements.lock"
  echo "$want" > "$stamp"
fi

# 3. psml itself, as a wheel (never -e: an editable install points into the repository).
wheel="$("$PY" -c 'import sys; from psml.distribution import build_wheel
print(build_wheel(sys.argv[1]))' "${PSML_WHEELS:-$ROOT/.cache/wheels}/psml")"   # = psml wheel -o DIR
"$UV" pip install -q --python "$TARGET" --no-deps --reinstall-package psml "$wheel"

# 4. Horovod from the wheel tools/setup.sh built (no compiler needed here).
if [ "${PSML_SKIP_HOROVOD:-0}" != 1 ]; then
  "$UV" pip install -q --python "$TARGET" --no-deps "$(horovod_wheel_dir)"/horovod-*.whl
fi

# 5. The course kernel inside PREFIX (a Jupyter started from PREFIX/bin finds it; a hub sets
#    JUPYTER_PATH=PREFIX/share/jupyter for others). Same spec as tools/setup.sh step 4.
"$TARGET" -m ipykernel install --prefix "$PREFIX" --name psml --display-name "Python 3 (psml)" \
  --env TF_CPP_MIN_LOG_LEVEL 2 >/dev/null

# 6. Readable and executable by everyone, writable by nobody else; then a check from /.
chmod -R a+rX,go-w "$PREFIX"
(cd / && "$TARGET" - "$ROOT" <<'EOF') || die "the course environment in $PREFIX does not work (see above)"
import sys
from pathlib import Path
import psml, psml.resources as r
from psml.cluster import job_script
here = Path(psml.__file__).resolve()
assert Path(sys.argv[1]).resolve() not in here.parents, f"psml is imported from the repository: {here}"
assert r.SITES.is_dir() and job_script("mpi").is_file(), "psml's data files are missing"
EOF
say "course environment ready in $((SECONDS - t0)) s: $PREFIX (kernel: $PREFIX/share/jupyter/kernels/psml)"
