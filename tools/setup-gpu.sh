#!/usr/bin/env bash
# The GPU variant of the course environment: TensorFlow with CUDA, Horovod with NCCL.
# UNTESTED in the course's CI (no GPU there); written for Linux x86_64 with NVIDIA GPUs.
#
#   tools/setup-gpu.sh                      creates/updates .venv-gpu
#   PSML_VENV=/shared/psml/venv-gpu tools/setup-gpu.sh
#
# Needs: an NVIDIA driver for CUDA 12; for the NCCL build of Horovod the CUDA toolkit
# (nvcc; CUDA_HOME, default /usr/local/cuda). NCCL comes from the nvidia-nccl-cu12 wheel that
# tensorflow[and-cuda] installs, unless HOROVOD_NCCL_HOME points at another NCCL.
# On an HPC system prefer the site's modules (TensorFlow, Horovod built by the admins with
# NCCL and the site's MPI): see docs/horovod.md and kernels/sites/jsc-like.toml.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PSML_VENV="${PSML_VENV:-$ROOT/.venv-gpu}"
say() { printf '\033[1m[setup-gpu]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup-gpu] error:\033[0m %s\n' "$*" >&2; exit 1; }

# 1. The pinned CPU environment, without Horovod (it is built below against the GPU TF).
PSML_SKIP_HOROVOD=1 "$ROOT/tools/setup.sh"
PY="$PSML_VENV/bin/python"

# 2. tensorflow[and-cuda] of the same version replaces tensorflow-cpu (the other pins hold).
TF_VERSION="$(sed -n 's/^tensorflow-cpu==\([0-9.]*\).*/\1/p' "$ROOT/requirements.lock")"
[ -n "$TF_VERSION" ] || die "no tensorflow-cpu pin in requirements.lock"
if ! "$PY" -c "import importlib.metadata as m; assert m.version('tensorflow') == '$TF_VERSION'" 2>/dev/null; then
  say "installing tensorflow[and-cuda]==$TF_VERSION (CUDA 12 and cuDNN as wheels, ~3 GB)"
  "$PY" -m pip uninstall -q -y tensorflow-cpu || true
  "$PY" -m pip install -q --disable-pip-version-check "tensorflow[and-cuda]==$TF_VERSION"
fi

# 3. Horovod with NCCL (tools/setup.sh step 3b with PSML_HOROVOD_GPU=1), when a toolkit exists.
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
if command -v nvcc >/dev/null || [ -x "$CUDA_HOME/bin/nvcc" ]; then
  if [ -z "${HOROVOD_NCCL_HOME:-}" ]; then
    nccl="$("$PY" -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null || true)"
    if [ -n "$nccl" ] && [ -f "$nccl/include/nccl.h" ]; then
      # The wheel ships only libnccl.so.2; the linker looks for libnccl.so.
      [ -e "$nccl/lib/libnccl.so" ] || ln -s libnccl.so.2 "$nccl/lib/libnccl.so"
      export HOROVOD_NCCL_HOME="$nccl"
    fi
  fi
  [ -n "${HOROVOD_NCCL_HOME:-}" ] || die "no NCCL found: set HOROVOD_NCCL_HOME=/path/to/nccl (include/ and lib/)"
  export PATH="$CUDA_HOME/bin:$PATH"
  say "building Horovod with NCCL (CUDA_HOME=$CUDA_HOME, HOROVOD_NCCL_HOME=$HOROVOD_NCCL_HOME)"
  PSML_HOROVOD_GPU=1 "$ROOT/tools/setup.sh"
else
  say "warning: no CUDA toolkit (nvcc) found: Horovod is built without NCCL; GPU training works, but gradients are averaged through MPI/Gloo on the host (slower). Install the toolkit or set CUDA_HOME, then re-run."
  "$ROOT/tools/setup.sh"
fi
"$PY" -c "import tensorflow as tf; print('GPUs visible to TensorFlow:', tf.config.list_physical_devices('GPU'))"
say "GPU environment ready: $PSML_VENV (select it with PSML_VENV=$PSML_VENV, or a 'psml (GPU)' kernel)"
