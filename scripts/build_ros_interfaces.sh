#!/bin/sh
# Build ROS interface packages (ament_cmake + rosidl, from the Kilted wheels) from ros_interfaces/ into the
# active venv with plain cmake. Used only where the system has no ROS 2 install (see README).
#   build_ros_interfaces.sh vision_msgs tf2_msgs
#   INTERFACES_SRC=../shared/ros2-python/composition_interfaces build_ros_interfaces.sh composition_interfaces
# (composition_interfaces keeps only its CMakeLists here: its .srv files are read from INTERFACES_SRC.)
set -eu
: "${VIRTUAL_ENV:?activate the venv first}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for pkg in "$@"; do
  extra=""
  if [ "$pkg" = composition_interfaces ]; then
    : "${INTERFACES_SRC:?set INTERFACES_SRC to the folder holding composition_interfaces/srv}"
    extra="-DINTERFACES_SRC=$(cd "$INTERFACES_SRC" && pwd)"
  fi
  # shellcheck disable=SC2086
  cmake -S "$ROOT/ros_interfaces/$pkg" -B "$ROOT/ros_interfaces/build/$pkg" $extra \
    -DCMAKE_PREFIX_PATH="$VIRTUAL_ENV" -DCMAKE_INSTALL_PREFIX="$VIRTUAL_ENV" \
    -DPython3_EXECUTABLE="$VIRTUAL_ENV/bin/python" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$ROOT/ros_interfaces/build/$pkg" -j"$(nproc)" >/dev/null
  cmake --install "$ROOT/ros_interfaces/build/$pkg" >/dev/null
  echo "installed $pkg into $VIRTUAL_ENV"
done
