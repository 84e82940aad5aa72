#!/usr/bin/env bash
# Run a command inside the project environment made by scripts/setup.sh (venv + cigocc_msgs).
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${CIGOCC_VENV:-$root/.venv}
if [ ! -f "$venv/cigocc-env.sh" ]; then
  echo "no environment at $venv: run 'make setup' (or scripts/setup.sh) first" >&2
  exit 2
fi
# shellcheck disable=SC1091
. "$venv/cigocc-env.sh"
# Data the commands generate (the default synthetic dataset) goes to the checkout's git-ignored
# data/, where the docs' commands (--data data/synthetic-v5) find it.
export CIGOCC_DATA_DIR=${CIGOCC_DATA_DIR:-$root/data}
exec "$@"
