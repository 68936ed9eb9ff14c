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
# Every test runs inside its own network namespace: no DDS traffic can leave loopback.
NETNS := unshare -n bash -c
.PHONY: demo test setup system-deps ros-interfaces clean

demo: setup
	$(VENV)/bin/seqpose demo --out $(DEMO_OUT)

test: setup ros-interfaces
	$(NETNS) 'ip link set lo up && ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST FASTDDS_DEFAULT_PROFILES_FILE=$(CURDIR)/config/fastdds_shm_profile.xml $(PY) -m pytest -q test'

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

clean:
	rm -rf $(VENV) ros_interfaces/build $(DEMO_OUT)
