# SeqPose: set-up, main job and tests. Every target is idempotent: the virtual environment is built once
# (stamp files) and reused until a requirements file or setup.py changes.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip --disable-pip-version-check
CONSTRAINTS := requirements/constraints-kilted.txt
STAMP := $(VENV)/.seqpose-installed
ROS_STAMP := $(VENV)/.seqpose-ros-interfaces
APT_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri cmake g++ make iproute2 util-linux
DEMO_OUT ?= demo_out
# The real `launch`, `launch_ros` and `ros2cli` sources (not on PyPI): when this folder exists, `make test`
# installs them into the venv, generates composition_interfaces from it and colcon-builds seqpose_ros into an
# ament prefix, so the launch tests run `ros2 launch seqpose_ros seqpose.launch.py` for real. Without it
# those tests skip with the reason. Override: make test ROS2_PYTHON_SRC=/path/to/ros2-python
ROS2_PYTHON_SRC ?= $(wildcard ../shared/ros2-python)
ROS2_PYTHON_PACKAGES := launch launch_xml launch_yaml launch_ros ros2launch ros2cli ros2pkg ros2run ros2node \
  ros2param ros2service ros2topic ros2lifecycle rosidl_runtime_py
ROS2_TOOLS_STAMP := $(VENV)/.seqpose-ros2-tools
# the package list as last installed: rewritten only when ROS2_PYTHON_PACKAGES changes, so adding a package
# reinstalls the tools in an existing venv too
ROS2_PACKAGES_LIST := $(VENV)/.seqpose-ros2-packages
# colcon build / install / log of seqpose_ros (an ament prefix: share/ament_index, share/seqpose_ros, lib/seqpose_ros)
AMENT_WS := $(VENV)/ament
AMENT_PREFIX := $(abspath $(AMENT_WS))/install
AMENT_STAMP := $(AMENT_WS)/.seqpose-built
# Every test runs inside its own network namespace: no DDS traffic can leave loopback.
NETNS := unshare -n bash -c
.PHONY: demo test lint format setup system-deps ros-interfaces ros2-tools clean FORCE

demo: setup
	$(VENV)/bin/seqpose demo --out $(DEMO_OUT)

# Stock Fast DDS (no profile file): the tests that want the shared-memory profile set it per process.
test: setup ros-interfaces ros2-tools lint
	$(NETNS) 'ip link set lo up && ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST SEQPOSE_AMENT_PREFIX=$(AMENT_PREFIX) $(PY) -m pytest -q test'

# ruff (ruff.toml): lint and formatting, checked on every `make test`; `make format` rewrites in place.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

setup: system-deps $(STAMP)

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): setup.py setup.cfg requirements/base.txt requirements/test.txt requirements/ros-kilted.txt $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) -r requirements/base.txt -r requirements/test.txt -r requirements/ros-kilted.txt
	$(PIP) install -q -c $(CONSTRAINTS) --no-build-isolation -e .
	touch $@

# vision_msgs and tf2_msgs are not on PyPI: generate them into the venv from the project's copy of their
# interface definitions (only for pip environments; a ROS 2 install brings its own).
ros-interfaces: $(ROS_STAMP)

$(ROS_STAMP): $(STAMP) scripts/build_ros_interfaces.sh $(wildcard ros_interfaces/*/msg/*.msg)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH sh scripts/build_ros_interfaces.sh vision_msgs tf2_msgs
	touch $@

# launch + launch_ros + ros2cli from ROS2_PYTHON_SRC (copied to the venv first: pip builds in the source tree,
# and that folder is read-only), their registry dependencies pinned, composition_interfaces generated, then
# seqpose_ros colcon-built (--symlink-install: launch/, config/ and the Python code stay this checkout's).
ifneq ($(ROS2_PYTHON_SRC),)
ros2-tools: $(AMENT_STAMP)

$(ROS2_PACKAGES_LIST): FORCE
	@mkdir -p $(VENV)
	@echo '$(ROS2_PYTHON_PACKAGES)' | cmp -s - $@ || echo '$(ROS2_PYTHON_PACKAGES)' > $@

$(ROS2_TOOLS_STAMP): $(ROS_STAMP) $(ROS2_PACKAGES_LIST) requirements/ros2-tools.txt requirements/constraints-ros2-tools.txt
	$(PIP) install -q -c $(CONSTRAINTS) -c requirements/constraints-ros2-tools.txt -r requirements/ros2-tools.txt
	rm -rf $(VENV)/src/ros2-python && mkdir -p $(VENV)/src/ros2-python
	cp -r $(addprefix $(ROS2_PYTHON_SRC)/,$(ROS2_PYTHON_PACKAGES)) $(VENV)/src/ros2-python/
	chmod -R u+w $(VENV)/src/ros2-python
	$(PIP) install -q --no-deps --no-build-isolation $(addprefix $(VENV)/src/ros2-python/,$(ROS2_PYTHON_PACKAGES))
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH INTERFACES_SRC=$(ROS2_PYTHON_SRC)/composition_interfaces \
	  sh scripts/build_ros_interfaces.sh composition_interfaces
	touch $@

$(AMENT_STAMP): $(ROS2_TOOLS_STAMP) setup.py setup.cfg package.xml resource/seqpose_ros \
  $(wildcard launch/*.py config/*.yaml config/*.rviz config/*.xml)
	rm -rf $(AMENT_WS)/build $(AMENT_WS)/install
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/colcon --log-base $(AMENT_WS)/log \
	  build --paths . --build-base $(AMENT_WS)/build --install-base $(AMENT_WS)/install --symlink-install \
	  --event-handlers console_direct- console_cohesion- status- summary+
	touch $@
else
ros2-tools:
	@echo "ROS2_PYTHON_SRC not found (../shared/ros2-python): the launch tests will skip"
endif

clean:
	rm -rf $(VENV) ros_interfaces/build $(DEMO_OUT)
