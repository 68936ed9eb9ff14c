"""Deprecated: the test harness moved to test/ros_harness.py, the node-process helpers the shipped tools need to
seqpose_ros/processes.py. Only `ros_isolation_problem` stays here, for test/test_bag_live.py, until it imports
`from ros_harness import ros_isolation_problem`; then delete this file."""
from seqpose_ros.processes import loopback_isolation_problem as ros_isolation_problem  # noqa: F401
