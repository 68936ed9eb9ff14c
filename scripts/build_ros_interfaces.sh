#!/bin/sh
# Build ROS interface packages (ament_cmake + rosidl, from the Kilted wheels) from ros_interfaces/ into the
# active venv with plain cmake. Used only where the system has no ROS 2 install (see README).
set -eu
: "${VIRTUAL_ENV:?activate the venv first}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for pkg in "$@"; do
  cmake -S "$ROOT/ros_interfaces/$pkg" -B "$ROOT/ros_interfaces/build/$pkg" \
    -DCMAKE_PREFIX_PATH="$VIRTUAL_ENV" -DCMAKE_INSTALL_PREFIX="$VIRTUAL_ENV" \
    -DPython3_EXECUTABLE="$VIRTUAL_ENV/bin/python" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$ROOT/ros_interfaces/build/$pkg" -j"$(nproc)" >/dev/null
  cmake --install "$ROOT/ros_interfaces/build/$pkg" >/dev/null
  echo "installed $pkg into $VIRTUAL_ENV"
done
