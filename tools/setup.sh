#!/usr/bin/env bash
# Create or update everything the course needs. Idempotent: a second run takes seconds.
#   tools/setup.sh          system packages + .venv + pinned Python packages + course kernel
#   PSML_SETUP_TEST=1 ...   also what only the test suite needs
#   PSML_SETUP_HUB=1 ...    also the workshop hub's parts (make hub): Node, the proxy, chromium
# Environment: PSML_VENV (default .venv), PSML_PYTHON (a Python 3.11 interpreter).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PSML_VENV:-$ROOT/.venv}"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# --- 1. System packages (Debian/Ubuntu), installed only when missing --------------------
SYSTEM_PACKAGES=(openmpi-bin libopenmpi-dev)          # MPI for mpi4py, ipyparallel, Horovod
SYSTEM_PACKAGES+=(cmake g++)                          # Horovod's build (step 3b)
TEST_PACKAGES=(slurm-wlm munge)                        # units add theirs; Slurm: tests/slurm_cluster.py
TEST_PACKAGES+=(lmod)                                  # tests/test_kernels.py: real Lmod
# The workshop hub (psml hub, make hub) and its browser tests: Node for the proxy (step 3c),
# Debian's chromium for Playwright (its own browser download does not work offline).
HUB_PACKAGES=(chromium fonts-liberation)
command -v npm >/dev/null || HUB_PACKAGES+=(nodejs npm)  # keep a Node that is there already
[ "${PSML_SETUP_TEST:-0}" = 1 ] && SYSTEM_PACKAGES+=("${TEST_PACKAGES[@]}")
[ "${PSML_SETUP_TEST:-0}" = 1 ] || [ "${PSML_SETUP_HUB:-0}" = 1 ] && SYSTEM_PACKAGES+=("${HUB_PACKAGES[@]}")
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

# --- 3b. Horovod (unit 09), built from source against the TensorFlow of step 3 -----------
# Not in the lock: it compiles against the installed TensorFlow and the system's Open MPI,
# so it needs --no-build-isolation (build isolation would fetch another TensorFlow) and a
# CMake below 4 (CMake 4 rejects the bundled gloo's cmake_minimum_required). Skipped when
# the pinned version already imports. The version lives in pyproject.toml, [tool.psml].
# PSML_SKIP_HOROVOD=1 skips it; PSML_HOROVOD_GPU=1 (set by tools/setup-gpu.sh) builds the
# NCCL variant, with HOROVOD_NCCL_HOME/CUDA_HOME taken from the environment.
# shellcheck source=tools/horovod-wheel.sh
. "$ROOT/tools/horovod-wheel.sh"
HOROVOD_VERSION="$(horovod_version)"
horovod_ok() {
  "$PY" - "$HOROVOD_VERSION" "${PSML_HOROVOD_GPU:-0}" <<'EOF' >/dev/null 2>&1
import sys, importlib.metadata as md
assert md.version("horovod").split("+")[0] == sys.argv[1]
import horovod.tensorflow as hvd
assert hvd.nccl_built() or sys.argv[2] != "1"
EOF
}
# Built once into a wheel kept in $PSML_WHEELS (default .cache/wheels, ignored by git);
# every environment after that (a second venv, tools/course-env.sh) installs it in seconds.
build_horovod_wheel() {
  local cmake_bin="" c major log="$1/build.log" t0=$SECONDS gpu_flags=()
  for c in "${HOROVOD_CMAKE:-}" /usr/bin/cmake cmake; do
    [ -n "$c" ] && command -v "$c" >/dev/null || continue
    major="$("$c" --version | sed -n 's/^cmake version \([0-9]*\).*/\1/p')"
    if [ -n "$major" ] && [ "$major" -lt 4 ]; then cmake_bin="$(command -v "$c")"; break; fi
  done
  [ -n "$cmake_bin" ] || die "Horovod needs CMake 3.13..3.x (CMake 4 breaks its gloo). Install it: apt-get install cmake, or set HOROVOD_CMAKE=/path/to/cmake-3.x"
  command -v g++ >/dev/null || die "Horovod needs a C++ compiler: apt-get install g++ (or module load GCC)"
  command -v mpicxx >/dev/null || die "Horovod's MPI controller needs MPI headers: apt-get install libopenmpi-dev (or module load your MPI)"
  [ "${PSML_HOROVOD_GPU:-0}" = 1 ] && gpu_flags=(HOROVOD_GPU_OPERATIONS=NCCL)
  local tmp="$1/tmp.$$"
  say "building the Horovod $HOROVOD_VERSION wheel (TensorFlow + MPI + Gloo; once: ~5 min on 8 cores, up to 30 on 2 busy ones; log: $log)"
  if ! env "${gpu_flags[@]}" HOROVOD_CMAKE="$cmake_bin" CMAKE_POLICY_VERSION_MINIMUM=3.5 \
       HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 \
       HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="-j$(nproc)" \
       "$PY" -m pip wheel --disable-pip-version-check --no-cache-dir --no-build-isolation \
         --no-deps -v -w "$tmp" "horovod==$HOROVOD_VERSION" >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    die "the Horovod build failed; the full log is $log (look for the first 'error:'). Common fixes: apt-get install cmake g++ libopenmpi-dev; PSML_SKIP_HOROVOD=1 tools/setup.sh to continue without unit 09."
  fi
  mv "$tmp"/horovod-*.whl "$1"/ && rm -rf "$tmp"  # the folder never holds a half wheel
  say "Horovod wheel built in $((SECONDS - t0)) s"
}
# Importing horovod.tensorflow loads TensorFlow (seconds): check only when the pins changed.
hvd_stamp="$VENV/.psml-horovod"
hvd_want="$HOROVOD_VERSION gpu=${PSML_HOROVOD_GPU:-0} $want"
if [ "${PSML_SKIP_HOROVOD:-0}" != 1 ]; then
  hvd_wheel="$(horovod_wheel_dir)"
  if ! ls "$hvd_wheel"/horovod-*.whl >/dev/null 2>&1; then
    mkdir -p "$hvd_wheel"
    # One build at a time (two checkouts' setups, CI jobs sharing PSML_WHEELS): the others
    # wait for it and then use its wheel.
    if command -v flock >/dev/null; then
      ( flock 9; ls "$hvd_wheel"/horovod-*.whl >/dev/null 2>&1 || build_horovod_wheel "$hvd_wheel" ) \
        9>"$hvd_wheel/.lock"
    else
      build_horovod_wheel "$hvd_wheel"
    fi
  fi
  if [ "$(cat "$hvd_stamp" 2>/dev/null)" != "$hvd_want" ] && ! horovod_ok; then
    "$VENV/bin/uv" pip install -q --python "$PY" --no-deps --reinstall "$hvd_wheel"/horovod-*.whl
    horovod_ok || die "Horovod $HOROVOD_VERSION installed from $hvd_wheel but 'import horovod.tensorflow' fails: see $hvd_wheel/build.log; delete $hvd_wheel to rebuild it"
    say "Horovod $HOROVOD_VERSION installed from $hvd_wheel"
  fi
  echo "$hvd_want" > "$hvd_stamp"
fi

# --- 3c. The hub's proxy (psml hub): configurable-http-proxy from npm, pinned -----------
# tools/hub/package.json + package-lock.json pin it; `npm ci` installs exactly that into .hub/
# (ignored by git), re-run only when the lock changed. Never a global install.
if [ "${PSML_SETUP_TEST:-0}" = 1 ] || [ "${PSML_SETUP_HUB:-0}" = 1 ]; then
  hub_stamp="$ROOT/.hub/.psml-installed"
  hub_want="$(sha256sum "$ROOT/tools/hub/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$hub_stamp" 2>/dev/null)" != "$hub_want" ]; then
    command -v npm >/dev/null || die "the hub's proxy needs Node.js and npm: apt-get install nodejs npm"
    say "installing configurable-http-proxy (npm, tools/hub/package-lock.json) into .hub/"
    mkdir -p "$ROOT/.hub"
    cp "$ROOT/tools/hub/package.json" "$ROOT/tools/hub/package-lock.json" "$ROOT/.hub/"
    (cd "$ROOT/.hub" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
      || die "npm ci in .hub/ failed: check that registry.npmjs.org is reachable (or set npm's registry)"
    echo "$hub_want" > "$hub_stamp"
  fi
fi

# --- 4. The course kernel, inside the venv (found by this venv's Jupyter) ---------------
# TF_CPP_MIN_LOG_LEVEL=2 keeps TensorFlow's C++ start-up chatter out of students' notebooks.
if ! grep -qs TF_CPP_MIN_LOG_LEVEL "$VENV/share/jupyter/kernels/psml/kernel.json"; then
  say "installing the kernel 'Python 3 (psml)'"
  "$PY" -m ipykernel install --sys-prefix --name psml --display-name "Python 3 (psml)" \
    --env TF_CPP_MIN_LOG_LEVEL 2 >/dev/null
fi
say "environment ready: $VENV"
