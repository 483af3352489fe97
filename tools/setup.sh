#!/usr/bin/env bash
# Create or update everything the course needs. Idempotent: a second run takes seconds.
#   tools/setup.sh          system packages + .venv + pinned Python packages + course kernel
#   PSML_SETUP_TEST=1 ...   also what only the test suite needs
# Environment: PSML_VENV (default .venv), PSML_PYTHON (a Python 3.11 interpreter).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PSML_VENV:-$ROOT/.venv}"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# --- 1. System packages (Debian/Ubuntu), installed only when missing --------------------
SYSTEM_PACKAGES=(openmpi-bin libopenmpi-dev)          # MPI for mpi4py, ipyparallel, Horovod
TEST_PACKAGES=()                                       # units add theirs (e.g. slurm-wlm)
[ "${PSML_SETUP_TEST:-0}" = 1 ] && SYSTEM_PACKAGES+=("${TEST_PACKAGES[@]}")
missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"
  else die "missing system packages: ${missing[*]}. Ask an admin to run: apt-get install ${missing[*]}"; fi
  say "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif ! command -v dpkg-query >/dev/null && ! command -v mpiexec >/dev/null; then
  say "note: no mpiexec found. Install Open MPI (brew install open-mpi, or conda: environment.yml)"
fi

# --- 2. The virtual environment (Python 3.11: TensorFlow 2.15 + Horovod 0.28.1) ---------
if [ ! -x "$VENV/bin/python" ]; then
  py="${PSML_PYTHON:-}"
  if [ -z "$py" ]; then
    for cand in /usr/bin/python3.11 python3.11 python3; do
      if command -v "$cand" >/dev/null && "$cand" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
        py="$cand"; break
      fi
    done
  fi
  [ -n "$py" ] || die "no Python 3.11 found (the pins need it). Install python3.11 + python3.11-venv, or set PSML_PYTHON=/path/to/python3.11, or use conda: conda env create -f environment.yml"
  say "creating $VENV with $py"
  "$py" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# --- 3. Pinned Python packages, re-installed only when the lock or pyproject changed ----
stamp="$VENV/.psml-installed"
want="$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing the pinned Python packages (requirements.lock)"
  uv_pin="$(grep -E '^uv==' "$ROOT/requirements.lock")"
  "$PY" -m pip install -q --disable-pip-version-check "$uv_pin"
  "$VENV/bin/uv" pip install -q --python "$PY" -r "$ROOT/requirements.lock"
  "$VENV/bin/uv" pip install -q --python "$PY" --no-deps -e "$ROOT"
  echo "$want" > "$stamp"
fi

# --- 4. The course kernel, inside the venv (found by this venv's Jupyter) ---------------
if [ ! -f "$VENV/share/jupyter/kernels/psml/kernel.json" ]; then
  say "installing the kernel 'Python 3 (psml)'"
  "$PY" -m ipykernel install --sys-prefix --name psml --display-name "Python 3 (psml)" >/dev/null
fi
say "environment ready: $VENV"
