#!/usr/bin/env bash
# Start JupyterLab on the course (root = the repository, opening exercises/).
# Extra arguments go to `jupyter lab` (e.g. --no-browser --port=8899).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PSML_VENV:-$ROOT/.venv}"
cd "$ROOT"
extra=()
[ "$(id -u)" = 0 ] && extra+=(--allow-root)   # containers and CI run as root
echo "Starting JupyterLab: open the http://127.0.0.1:... URL printed below (Ctrl-C stops it)."
exec "$VENV/bin/jupyter" lab --ServerApp.root_dir="$ROOT" --ip=127.0.0.1 \
  --LabApp.default_url=/lab/tree/exercises "${extra[@]}" "$@"
