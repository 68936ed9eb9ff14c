"""Test helpers for the node's tests and benchmarks (not shipped): the network-isolation guard, a tiny random
checkpoint, a generated video sequence, the node in its own process, and an rclpy client that talks to it.
What the shipped `seqpose bag live` needs to start a node is in seqpose_ros/processes.py.

Nothing here starts DDS on import; `ros_isolation_problem()` says why DDS must not be started here.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from seqpose_ros.processes import (
    SHM_PROFILE_NAME,
    config_path,
    loopback_isolation_problem,
    node_command,
    node_environment,
)

REPO = Path(__file__).resolve().parents[2]
SHM_PROFILE = config_path(SHM_PROFILE_NAME)
DEFAULT_K = np.array([[300.0, 0.0, 159.5], [0.0, 300.0, 119.5], [0.0, 0.0, 1.0]])  # for 320x240


# --------------------------------------------------------------------------------------------- isolation
ros_isolation_problem = loopback_isolation_problem


def refuse_unless_isolated():
    """For scripts that start DDS: exit with the reason unless this process is in a private network namespace."""
    problem = ros_isolation_problem()
    if problem:
        raise SystemExit(f'refusing to start DDS: {problem}')


def ros_environment(fastdds_profile='shm'):
    """Environment for the node processes of test_ros_node.py: loopback discovery and, by default, the
    shared-memory Fast DDS profile (the launch tests use stock DDS: fastdds_profile='')."""
    return node_environment(fastdds_profile)


# --------------------------------------------------------------------------------------------- model + data
def write_tiny_checkpoint(path, seed=0):
    """A randomly initialised model of the `tiny` config (a few MB, ~10 ms a frame on one CPU core)."""
    import torch

    from seqpose_core.config import load_config
    from seqpose_core.model.checkpoint import save_checkpoint
    from seqpose_core.model.seqpose import build_model

    torch.manual_seed(seed)
    config = load_config('tiny')
    model = build_model(config.model, load_pretrained=False)
    save_checkpoint(path, model, config)
    return Path(path)


def make_sequence(frames=10, width=320, height=240, seed=0):
    """A generated video: textured table, a few coloured boxes and cylinders, the camera panning slowly.
    Returns (list of (H, W, 3) uint8 RGB, K (3, 3))."""
    import cv2

    rng = np.random.default_rng(seed)
    margin = 4 * frames + 8
    canvas_w, canvas_h = width + margin, height
    background = rng.integers(90, 160, size=(canvas_h // 8 + 1, canvas_w // 8 + 1, 3), dtype=np.uint8)
    canvas = cv2.resize(background, (canvas_w, canvas_h), interpolation=cv2.INTER_LINEAR)
    for _ in range(5):
        x, y = int(rng.integers(20, canvas_w - 60)), int(rng.integers(40, canvas_h - 40))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            cv2.rectangle(canvas, (x, y), (x + int(rng.integers(20, 50)), y + int(rng.integers(20, 50))), color, -1)
        else:
            cv2.ellipse(canvas, (x, y), (int(rng.integers(10, 25)), int(rng.integers(15, 35))), 0, 0, 360, color, -1)
    images = [np.ascontiguousarray(canvas[:, 4 * i : 4 * i + width]) for i in range(frames)]
    K = DEFAULT_K.copy()
    K[0, 2], K[1, 2] = (width - 1) / 2, (height - 1) / 2
    return images, K


# --------------------------------------------------------------------------------------------- node process
class LoggedProcess:
    """A child process whose output goes to a log file that tests read for log lines."""

    LOG_TIMEOUT = 30.0  # seconds wait_for_log waits by default
    LOG_POLL = 0.05

    def __init__(self, log_path, command, env, cwd, **popen):
        self.log_path = Path(log_path)
        self._log = open(self.log_path, 'wb')
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True, **popen
        )

    def log(self):
        return self.log_path.read_text(encoding='utf-8', errors='replace')

    def wait_for_log(self, text, timeout=None):
        deadline = time.monotonic() + (self.LOG_TIMEOUT if timeout is None else timeout)
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if self.process.poll() is not None:
                return text in self.log()
            time.sleep(self.LOG_POLL)
        return False


class NodeProcess(LoggedProcess):
    """`seqpose_node` in its own process, output collected in a log file (read by tests for log lines)."""

    def __init__(self, log_path, *ros_args):
        super().__init__(log_path, node_command(*ros_args), ros_environment(), str(REPO))

    def alive(self):
        return self.process.poll() is None

    def stop(self, timeout=10.0):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


# --------------------------------------------------------------------------------------------- rclpy client
def image_msg(rgb, stamp_seconds, frame_id='camera_optical', encoding='rgb8', pad=0):
    """sensor_msgs/Image from RGB, converted to `encoding`, rows padded by `pad` bytes."""
    import cv2
    from sensor_msgs.msg import Image

    if encoding == 'rgb8':
        data = rgb
    elif encoding == 'bgr8':
        data = rgb[:, :, ::-1]
    elif encoding == 'rgba8':
        data = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    elif encoding == 'bgra8':
        data = np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
    elif encoding == 'mono8':
        data = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
    else:  # an encoding the node does not support: send 16-bit data of the right size
        data = np.zeros(rgb.shape[:2] + (2,), np.uint8)
    height, width = data.shape[:2]
    rows = np.ascontiguousarray(data).reshape(height, -1)
    if pad:
        rows = np.hstack([rows, np.zeros((height, pad), np.uint8)])
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=rows.shape[1])
    msg.data = rows.tobytes()
    msg.header.frame_id = frame_id
    msg.header.stamp = to_stamp(stamp_seconds)
    return msg


def camera_info_msg(K, width, height, stamp_seconds=0.0, frame_id='camera_optical'):
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(width=int(width), height=int(height), distortion_model='plumb_bob')
    msg.k = [float(v) for v in np.asarray(K, dtype=np.float64).reshape(-1)]
    msg.d = [0.0] * 5
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:3, :3] = np.asarray(K, dtype=np.float64)
    msg.p = [float(v) for v in P.reshape(-1)]
    msg.header.frame_id = frame_id
    msg.header.stamp = to_stamp(stamp_seconds)
    return msg


def to_stamp(seconds):
    from builtin_interfaces.msg import Time

    sec = int(np.floor(seconds))
    return Time(sec=sec, nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def stamp_seconds(stamp):
    return stamp.sec + stamp.nanosec * 1e-9


class RosClient:
    """Publishes images + CameraInfo to the node's namespace and records everything it publishes.

    Publishers use the node's default input QoS compatibility (reliable publishers match best-effort
    subscribers); a background executor thread receives."""

    def __init__(self, namespace='/seqpose_test', node_name='seqpose_node', image_qos_depth=1):
        import threading

        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage
        from vision_msgs.msg import Detection3DArray
        from visualization_msgs.msg import MarkerArray

        # this process's participant uses the same shared-memory profile as the node (read at creation)
        os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(SHM_PROFILE))
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('seqpose_test_client', context=self.context)
        self.ns = namespace.rstrip('/')
        self.node_name = node_name
        qos = QoSProfile(depth=10)
        self.image_pub = self.node.create_publisher(Image, f'{self.ns}/image', qos)
        self.info_pub = self.node.create_publisher(CameraInfo, f'{self.ns}/camera_info', qos)
        self.detections, self.tf, self.markers, self.debug_images, self.diagnostics = [], [], [], [], []
        self._lock = threading.Lock()
        self.node.create_subscription(Detection3DArray, f'{self.ns}/detections', self._store(self.detections), qos)
        self.node.create_subscription(TFMessage, '/tf', self._store(self.tf), QoSProfile(depth=100))
        self.node.create_subscription(MarkerArray, f'{self.ns}/markers', self._store(self.markers), qos)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._store(self.diagnostics), qos)
        self._debug_sub = None
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutdown races end the loop
                if not self.context.ok():
                    return

    def _store(self, target):
        def callback(msg):
            with self._lock:
                target.append((time.monotonic(), msg))

        return callback

    def subscribe_debug_image(self):
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image

        self._debug_sub = self.node.create_subscription(
            Image, f'{self.ns}/debug_image', self._store(self.debug_images), QoSProfile(depth=2)
        )

    def wait_for(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate():
                    return True
            time.sleep(0.01)
        with self._lock:
            return bool(predicate())

    def wait_for_subscribers(self, timeout=20.0):
        """True once the node's image and camera_info subscriptions are matched."""
        return self.wait_for(
            lambda: self.image_pub.get_subscription_count() > 0 and self.info_pub.get_subscription_count() > 0, timeout
        )

    def detection_for(self, stamp, timeout=5.0):
        """The Detection3DArray whose header stamp equals `stamp` (seconds), or None."""

        def find():
            for _, msg in self.detections:
                if abs(stamp_seconds(msg.header.stamp) - stamp) < 1e-6:
                    return msg
            return None

        self.wait_for(lambda: find() is not None, timeout)
        with self._lock:
            return find()

    def send(self, rgb, stamp, K=None, frame_id='camera_optical', encoding='rgb8', info=True, pad=0):
        if info:
            self.info_pub.publish(camera_info_msg(K, rgb.shape[1], rgb.shape[0], stamp, frame_id))
            time.sleep(0.02)  # CameraInfo first, so the image finds it
        self.image_pub.publish(image_msg(rgb, stamp, frame_id, encoding, pad))

    def send_compressed(self, rgb, stamp, frame_id='camera_optical', image_format='jpeg'):
        import cv2
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CompressedImage

        if getattr(self, 'compressed_pub', None) is None:
            self.compressed_pub = self.node.create_publisher(
                CompressedImage, f'{self.ns}/image/compressed', QoSProfile(depth=10)
            )
        ok, data = cv2.imencode('.jpg' if image_format == 'jpeg' else '.png', rgb[:, :, ::-1])
        assert ok
        msg = CompressedImage(format=image_format, data=data.tobytes())
        msg.header.frame_id = frame_id
        msg.header.stamp = to_stamp(stamp)
        self.compressed_pub.publish(msg)

    def call(self, srv_type, name, request, timeout=10.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f'service {name} not available')
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            if not future.done():
                raise TimeoutError(f'service {name} did not answer')
            return future.result()
        finally:
            self.node.destroy_client(client)

    def reset(self):
        from std_srvs.srv import Trigger

        return self.call(Trigger, f'{self.ns}/{self.node_name}/reset', Trigger.Request())

    def set_parameters(self, **values):
        """The `ros2 param set` path: rcl_interfaces/SetParameters on the node's parameter service."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request()
        request.parameters = [Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]
        return self.call(SetParameters, f'{self.ns}/{self.node_name}/set_parameters', request).results

    def get_parameters(self, *names):
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        request = GetParameters.Request(names=list(names))
        values = self.call(GetParameters, f'{self.ns}/{self.node_name}/get_parameters', request).values
        return [parameter_value_to_python(v) for v in values]

    def close(self):
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)


# --------------------------------------------------------------------------------------------- ros2 launch
def ament_prefix():
    """The colcon install prefix `make test` builds (SEQPOSE_AMENT_PREFIX, else .venv/ament/install)."""
    return Path(os.environ.get('SEQPOSE_AMENT_PREFIX') or REPO / '.venv' / 'ament' / 'install')


def ros2_executable():
    return Path(sys.executable).with_name('ros2')


def launch_problem():
    """'' when `ros2 launch seqpose_ros seqpose.launch.py` can run here, else why not (tests skip with it)."""
    if not ros2_executable().exists():
        return (
            'the ros2 command line (ros2cli, ros2launch) is not installed in this venv: `make test` installs '
            'it from ROS2_PYTHON_SRC (../shared/ros2-python), which was not found'
        )
    try:
        import composition_interfaces.srv  # noqa: F401
        import launch_ros  # noqa: F401

        import launch  # noqa: F401
    except ImportError as error:
        return f'launch / launch_ros / composition_interfaces not importable ({error}); run make test'
    share = ament_prefix() / 'seqpose_ros' / 'share' / 'seqpose_ros' / 'launch' / 'seqpose.launch.py'
    if not share.exists():
        return f'seqpose_ros is not installed into the ament prefix {ament_prefix()} (make test colcon-builds it)'
    return ''


def ros2_environment(fastdds_profile=''):
    """Stock Fast DDS (no profile) by default, loopback discovery, the colcon prefix and the venv on
    AMENT_PREFIX_PATH (what `source install/setup.bash` gives on a robot)."""
    env = node_environment(fastdds_profile)
    env['AMENT_PREFIX_PATH'] = os.pathsep.join([str(ament_prefix() / 'seqpose_ros'), sys.prefix])
    return env


def ros2(*args, timeout=60.0, env=None):
    """Run the `ros2` command line; a CompletedProcess (stdout + stderr in .stdout)."""
    return subprocess.run(
        [str(ros2_executable()), *args],
        env=env or ros2_environment(),
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


class LaunchProcess(LoggedProcess):
    """`ros2 launch seqpose_ros seqpose.launch.py ARGS` as a robot's start-up script runs it: no terminal on
    stdin, its own process group (a terminal's Ctrl-C is SIGINT to the whole group)."""

    LOG_TIMEOUT = 90.0
    LOG_POLL = 0.1

    def __init__(self, log_path, *launch_args, fastdds_profile=''):
        command = [str(ros2_executable()), 'launch', 'seqpose_ros', 'seqpose.launch.py', *launch_args]
        super().__init__(log_path, command, ros2_environment(fastdds_profile), '/', stdin=subprocess.DEVNULL)

    def interrupt(self, timeout=30.0):
        """SIGINT to the process group (Ctrl-C); the exit status, or None when it had to be killed."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
                self._log.close()
                return None
        self._log.close()
        return self.process.returncode


def run_camera_client(*args, timeout=180.0, fastdds_profile=''):
    """test/camera_client.py in its own process (its own DDS participant); its JSON result."""
    import json

    result = subprocess.run(
        [sys.executable, str(REPO / 'test' / 'helpers' / 'camera_client.py'), *args],
        env=ros2_environment(fastdds_profile),
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith('{')]
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f'camera client failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}'
        )
    return json.loads(lines[-1])
