"""Every parameter of `seqpose_node`, declared in one place: name, default, description, whether it can change
at run time, and its valid range. Plain Python (no rclpy import at module level) so the static tests can
check the launch file and config/seqpose.yaml against this table without ROS.

Two kinds: the node's own (NODE_PARAMS: the camera, QoS, outputs), and the runner's inference settings
(RUNNER_PARAMS), generated from seqpose_core.stages.config's table under the same dotted names
(`score_threshold`, `mode`, `support_plane.enabled`, `refiner.passes`, ...), all changeable at run time. Their
defaults are the checkpoint's (`declare_all` reads them from the loaded runner), except where the node
publishes differently from what the mAP evaluation keeps (NODE_DEFAULTS). The settings that choose how the runner
is built (CONFIGURE_SETTINGS: `backend`, `onnx_dir`, `engine_cache`) are read when the node configures, as the
checkpoint is (CONFIGURE_RUNNER_PARAMS, declared with the node's own).

When each is read (the node is a lifecycle node): `dynamic` ones at run time (`ros2 param set` takes effect
before the next frame); the others at configure: they can be set while the node is unconfigured (after `cleanup`)
and are refused, with the reason, once it is configured (`lifecycle_problem`); `start_only` ones once, at start.
"""

import array
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from seqpose_core.config_schema import ConfigError
from seqpose_core.stages.config import InferenceConfig, settings_table, with_settings
from seqpose_ros.pipeline import AUTO

# best_available (Kilted): reliable against a reliable publisher, best effort against a best-effort one: it
# matches every camera driver and gets every frame a reliable publisher sends. sensor_data: best effort, which
# with stock Fast DDS loses most large images (fragments over UDP); reliable: matches reliable publishers only.
IMAGE_QOS_CHOICES = ('best_available', 'sensor_data', 'reliable', 'system_default')
TRANSPORT_CHOICES = ('raw', 'compressed')
CAMERA_MODEL_CHOICES = ('auto', 'raw', 'rectified')


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    dynamic: bool = False  # may change at run time (`ros2 param set`); else read at configure
    range: Optional[Tuple[float, float]] = None  # inclusive bounds for numbers
    choices: Optional[Tuple[str, ...]] = None
    start_only: bool = False  # read once, when the process starts (read-only)


NODE_PARAMS = (
    ParamSpec(
        'autostart',
        True,
        'Configure and activate the lifecycle node at start (a plain `seqpose_node` / `ros2 run`). The launch '
        'file sets it false and drives the transitions itself (its autostart argument); false: wait for a '
        'lifecycle manager (`ros2 lifecycle set /seqpose_node configure`, then `activate`).',
        start_only=True,
    ),
    ParamSpec(
        'checkpoint',
        '',
        'SeqPose checkpoint (.pt / .safetensors, carries its config). Empty: the embedded default model '
        '(seqpose_core/weights/default.pt). A file that does not load stops the node at start-up.',
    ),
    ParamSpec(
        'device',
        'cpu',
        "Torch device: 'cpu', 'cuda' or 'cuda:N'. Falls back to CPU with a warning when CUDA is not available.",
    ),
    ParamSpec(
        'history_frames',
        0,
        "Frames kept in the query memory (N). 0: the checkpoint's value. Start-up only.",
        range=(0, 64),
    ),
    ParamSpec(
        'top_k', 0, "Queries kept per remembered frame (K). 0: the checkpoint's value. Start-up only.", range=(0, 4096)
    ),
    ParamSpec(
        'image_qos',
        'best_available',
        "QoS of the image and camera_info subscriptions (depth 1): 'best_available' (reliable with a "
        "reliable publisher, best effort with a best-effort one), 'sensor_data' (best effort), 'reliable', "
        "'system_default'. Each policy can also be overridden per topic with the standard "
        'qos_overrides.<topic>.subscription.<policy> parameters. Start-up only.',
        choices=IMAGE_QOS_CHOICES,
    ),
    ParamSpec(
        'image_transport',
        'raw',
        "'raw': subscribe to `image` (sensor_msgs/Image); 'compressed': to `image/compressed` "
        '(sensor_msgs/CompressedImage, jpeg/png). Start-up only.',
        choices=TRANSPORT_CHOICES,
    ),
    ParamSpec(
        'camera_model',
        'auto',
        "How the image relates to its CameraInfo: 'raw' (distorted: undistorted with D when D is "
        "non-zero, K used), 'rectified' (already rectified, e.g. image_rect: P[0:3,0:3] used, D ignored), "
        "'auto' ('rectified' when the image topic's name contains 'rect', else 'raw'). Binning and ROI "
        'are applied to the intrinsics. Start-up only.',
        choices=CAMERA_MODEL_CHOICES,
    ),
    ParamSpec(
        'stamp_tolerance',
        0.005,
        'Seconds: an image is paired with the CameraInfo of its own stamp, within this tolerance (as '
        "image_transport's CameraSubscriber pairs them: exactly). A CameraInfo with another stamp is never used. "
        'Raise it only for a driver that stamps the two differently.',
        dynamic=True,
        range=(0.0, 10.0),
    ),
    ParamSpec(
        'camera_info_wait',
        3.0,
        'Seconds an image waits for the CameraInfo with its stamp (with large images over DDS it often comes '
        'after the image: up to 2 s at 1 Hz). An image whose CameraInfo does not come is dropped, with a '
        'warning, and counted in /diagnostics.',
        dynamic=True,
        range=(0.0, 60.0),
    ),
    ParamSpec(
        'enabled',
        True,
        'Process images. false: the image subscription is dropped (no DDS traffic, no CPU) until set '
        'back to true; the memory and tracks are reset on re-enabling.',
        dynamic=True,
    ),
    ParamSpec('publish_tf', True, 'Broadcast one TF frame per confirmed object.', dynamic=True),
    ParamSpec(
        'tf_prefix',
        'seqpose',
        "Object TF frames are <namespace>/<tf_prefix>/<class>_<id> (the node's namespace first, so two "
        'cameras do not collide; a tf_prefix starting with / is used as given, without the namespace). '
        'Ids are reused once a track ends, so the set of frame names stays bounded.',
        dynamic=True,
    ),
    ParamSpec(
        'z_up',
        False,
        "Publish object poses with z up (REP-103: x forward, y left, z up; the object's up axis as z) "
        'instead of the NOCS object frame (y up). bbox.size follows the axes.',
        dynamic=True,
    ),
    ParamSpec('publish_markers', True, 'Publish visualization_msgs/MarkerArray on `markers`.', dynamic=True),
    ParamSpec(
        'marker_lifetime',
        0.5,
        'Seconds a marker stays in RViz without an update (0: until the next DELETEALL).',
        dynamic=True,
        range=(0.0, 3600.0),
    ),
    ParamSpec(
        'max_image_age',
        0.0,
        'Images older than this many seconds (node clock minus header stamp) are skipped (0: no limit).',
        dynamic=True,
        range=(0.0, 3600.0),
    ),
    ParamSpec(
        'use_odometry',
        False,
        "Subscribe to `odom` (nav_msgs/Odometry: the camera frame's pose in its odometry frame, child_frame_id the "
        "image's frame, as VIO or an arm's kinematics report it; paired with each image by stamp) and give the "
        'memory and the world fusion the camera motion between frames. Needs no tf2_ros. Start-up only.',
    ),
    ParamSpec(
        'odom_frame',
        '',
        'Fixed frame for camera motion between frames (T_cur_from_prev from TF, needs tf2_ros). Empty: '
        'the memory runs without camera motion. Start-up only.',
    ),
)

# Where the node publishes differently from what the checkpoint keeps for the mAP (which wants every detection):
# the threshold chosen for precision / recall on selection video (benchmarks/score_threshold.py); max_frame_gap
# -1: follow the camera's own rate (pipeline.AutoFrameGap: 5 frame periods, at least the checkpoint's value).
NODE_DEFAULTS = {'score_threshold': 0.20, 'max_frame_gap': AUTO}
NODE_HELP = {
    'max_frame_gap': " -1 (the node's default): automatic, 5 x the median period of the received frames and at least "
    "the checkpoint's value (1 s), so a 1 Hz camera keeps its memory; an explicit value wins.",
}
# Inference settings that are not node parameters: the device is the node's own (with its CUDA fallback);
# the refiner's classes are the checkpoint's choice (seqpose select-refiner-classes), lists of names.
NOT_PARAMETERS = ('device', 'refiner.classes', 'refiner.box_classes')
# Inference settings that choose how the runner is built: read at configure, with the checkpoint.
CONFIGURE_SETTINGS = tuple(
    spec.name for spec in settings_table() if spec.name in ('backend', 'onnx_dir', 'engine_cache')
)


def _setting_spec(setting, default, dynamic):
    bounds = tuple(setting.range[:2]) if setting.range else None
    if setting.name in NODE_DEFAULTS and bounds is not None:
        bounds = (min(bounds[0], NODE_DEFAULTS[setting.name]), bounds[1])
    return ParamSpec(
        setting.name,
        default,
        setting.help[:1].upper() + setting.help[1:] + '.' + NODE_HELP.get(setting.name, ''),
        dynamic=dynamic,
        range=bounds,
        choices=setting.choices,
    )


def runner_param_specs(config: InferenceConfig = None):
    """A ParamSpec per run-time inference setting, defaults from `config` (default: the dataclass defaults)
    with NODE_DEFAULTS on top."""
    return tuple(
        _setting_spec(setting, NODE_DEFAULTS.get(setting.name, setting.default), dynamic=True)
        for setting in settings_table(config)
        if setting.name not in NOT_PARAMETERS + CONFIGURE_SETTINGS
    )


# read at configure, declared at start with the node's own parameters: the node's defaults, not a checkpoint's
CONFIGURE_RUNNER_PARAMS = tuple(
    _setting_spec(setting, setting.default, dynamic=False)
    for setting in settings_table()
    if setting.name in CONFIGURE_SETTINGS
)
RUNNER_PARAMS = runner_param_specs()
RUNNER_SETTINGS = tuple(spec.name for spec in RUNNER_PARAMS)
PARAMS = NODE_PARAMS + CONFIGURE_RUNNER_PARAMS + RUNNER_PARAMS
SPECS = {spec.name: spec for spec in PARAMS}
DEFAULTS = {spec.name: spec.default for spec in PARAMS}


def validate(name, value):
    """'' when `value` is acceptable for parameter `name`, else the reason (used at start-up and by the
    run-time parameter callback, so `ros2 param set` gets the same answer as a bad YAML file)."""
    spec = SPECS.get(name)
    if spec is None:
        return ''  # not ours (use_sim_time, qos overrides, ...)
    expected = type(spec.default)
    value = coerce(name, value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        return f'{name}: expected {expected.__name__}, got {type(value).__name__} {value!r}'
    if spec.choices is not None and value not in spec.choices:
        return f'{name}: {value!r} is not one of {list(spec.choices)}'
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        return f'{name}: {value} is outside [{spec.range[0]}, {spec.range[1]}]'
    if name == 'device' and not (value == 'cpu' or value == 'cuda' or value.startswith('cuda:')):
        return f"device: {value!r} is not 'cpu', 'cuda' or 'cuda:N'"
    if name in NODE_DEFAULTS and value == NODE_DEFAULTS[name] == AUTO:
        return ''
    if name == 'max_frame_gap' and value < 0:
        return f"max_frame_gap: {value}: give -1 (automatic, from the camera's rate), 0 (never) or seconds"
    if name in RUNNER_SETTINGS + CONFIGURE_SETTINGS:
        try:  # the dataclasses' own validation: one answer for YAML, --set and ros2 param set
            with_settings(InferenceConfig(), {name: value})
        except ConfigError as error:
            return str(error)
    return ''


def coerce(name, value):
    """`value` as parameter `name` stores it: an integer where a float is declared becomes that float
    (`ros2 param set /seqpose_node score_threshold 1` sends an integer; rclpy would refuse it as the wrong type),
    a list or array where a tuple is declared becomes the tuple; anything else unchanged (validate then says what
    is wrong)."""
    spec = SPECS.get(name)
    if spec is not None and isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if spec is not None and isinstance(spec.default, tuple) and isinstance(value, (list, array.array)):
        return tuple(value)  # an array parameter comes back from rclpy as a list or an array.array
    return value


def lifecycle_problem(name, state):
    """'' when parameter `name` may change now, the node being in lifecycle state `state` ('unconfigured',
    'inactive', 'active', ...); else the reason. Run-time parameters change in any state; the ones read at
    configure only while unconfigured; start-only ones never (rclpy refuses those as read-only)."""
    spec = SPECS.get(name)
    if spec is None or spec.dynamic or spec.start_only or state == 'unconfigured':
        return ''
    return (
        f'{name} is read when the node configures and the node is {state}: deactivate and clean it up first '
        f'(ros2 lifecycle set <node> deactivate, then cleanup), set {name}, then configure'
    )


def declare_all(node, specs=NODE_PARAMS + CONFIGURE_RUNNER_PARAMS):
    """Declare the parameters `specs` on an rclpy node with their descriptions; returns {name: value}. Raises
    ValueError naming each bad value (a bad YAML file must stop the node at start-up, not later). The node
    declares NODE_PARAMS and CONFIGURE_RUNNER_PARAMS when it starts; at configure it loads its runner, then
    declares `runner_param_specs(runner.cfg)` (parameters already declared keep their values)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    values, problems = {}, []
    for spec in specs:
        extra = ''
        if spec.choices:
            extra = f' One of: {", ".join(spec.choices)}.'
        if not spec.dynamic and not spec.start_only:
            extra += ' Read at configure: set it while the node is unconfigured.'
        descriptor = ParameterDescriptor(description=spec.description + extra, read_only=spec.start_only)
        if spec.range is not None and isinstance(spec.default, float):
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(spec.range[0]), to_value=float(spec.range[1]))
            ]
        elif spec.range is not None and isinstance(spec.default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]))]
        if node.has_parameter(spec.name):
            value = node.get_parameter(spec.name).value
        else:
            value = node.declare_parameter(spec.name, spec.default, descriptor).value
        problem = validate(spec.name, value)
        if problem:
            problems.append(problem)
        values[spec.name] = float(value) if isinstance(spec.default, float) else value
    if problems:
        raise ValueError('bad parameter value(s): ' + '; '.join(problems))
    return values
