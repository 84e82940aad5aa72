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
exec "$@"
