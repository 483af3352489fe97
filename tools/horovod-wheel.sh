# Sourced by tools/setup.sh (step 3b) and tools/course-env.sh: which Horovod the course pins
# and where its wheel, built once, is kept. Needs ROOT (the repository) and PY (Python 3.11).
# The wheel is compiled against TensorFlow and the system's MPI, so its folder is keyed by
# the Horovod and TensorFlow pins and the CPU/GPU variant: a pin change builds a new one.
horovod_version() {
  "$PY" -c 'import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb"))["tool"]["psml"]["horovod"])' "$ROOT/pyproject.toml"
}
horovod_wheel_dir() {
  local tf variant
  tf="$(grep -E '^tensorflow(-cpu)?==' "$ROOT/requirements.lock" | head -n1 | sed 's/.*==//')"
  variant="$([ "${PSML_HOROVOD_GPU:-0}" = 1 ] && echo gpu || echo cpu)"
  echo "${PSML_WHEELS:-$ROOT/.cache/wheels}/horovod-$(horovod_version)-tf$tf-cp311-$variant"
}
