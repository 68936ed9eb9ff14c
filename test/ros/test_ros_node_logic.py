"""What a real camera driver does to the node, and the lifecycle node's plain parts, without DDS (issue 30 sections
4 and 6): CameraInfo pairing by stamp, max_frame_gap that follows the camera's rate, integers for float
parameters, one log level per reset, configure-time parameters, the warm-up, the launch file's lifecycle events."""

import numpy as np
import pytest

from seqpose_core.runner import Frame
from seqpose_ros import params as P
from seqpose_ros.loading import load_runner, warm_up
from seqpose_ros.pipeline import AUTO, AutoFrameGap, CameraInfoPairing, Pipeline, reset_report


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


# --------------------------------------------------------------------------------------------- CameraInfo pairing
def test_an_image_waits_for_the_camera_info_with_its_own_stamp_and_never_takes_a_stale_one():
    """Issue 30 section 6.1: with 900 KB images the CameraInfo often comes after its image; the node used the
    latest one after 0.1 s, so a stale CameraInfo that came first was paired with the 5 good frames that followed."""
    pairing = CameraInfoPairing(wait=3.0, tolerance=0.005, clock=Clock())
    assert pairing.add_info(0.5, 'stale').ready == []
    for index in range(5):
        stamp = 1.0 + index / 10
        early = pairing.add_image(stamp, f'image@{stamp}')
        assert early.ready == [] and early.dropped == []  # waits: the stale one is not its CameraInfo
        late = pairing.add_info(stamp, f'info@{stamp}')
        assert late.ready == [(f'image@{stamp}', f'info@{stamp}')] and late.dropped == []
    assert pairing.dropped == 0 and pairing.waiting == 0


def test_a_camera_info_that_came_first_pairs_at_once_within_the_tolerance():
    pairing = CameraInfoPairing(tolerance=0.005, clock=Clock())
    pairing.add_info(2.0, 'info@2.0')
    pairing.add_info(2.0021, 'info@2.0021')
    assert pairing.add_image(2.0, 'image').ready == [('image', 'info@2.0')]  # the closest
    assert pairing.add_image(2.0041, 'next').ready == [('next', 'info@2.0021')]  # 2.0 ms apart
    assert pairing.add_image(2.05, 'other').ready == []  # nothing within 5 ms


def test_an_image_whose_camera_info_never_comes_is_dropped_and_counted():
    clock = Clock()
    pairing = CameraInfoPairing(wait=2.0, clock=clock)
    pairing.add_image(1.0, 'a')
    clock.now = 1.9
    assert pairing.expire().dropped == []
    clock.now = 2.1
    assert pairing.expire().dropped == [(1.0, 'timeout')]
    assert pairing.dropped == 1 and pairing.waiting == 0
    assert pairing.add_info(1.0, 'too late').ready == []  # its image is gone


def test_a_newer_image_paired_first_gives_up_the_older_ones():
    """Their CameraInfo was lost (the newer one came after it would have): processing them afterwards would run the
    stream backwards. Images newer than the paired one keep waiting."""
    pairing = CameraInfoPairing(clock=Clock())
    for stamp in (1.0, 1.1, 1.2):
        pairing.add_image(stamp, f'image@{stamp}')
    paired = pairing.add_info(1.1, 'info@1.1')
    assert paired.ready == [('image@1.1', 'info@1.1')] and paired.dropped == [(1.0, 'superseded')]
    assert pairing.waiting == 1 and pairing.add_info(1.2, 'info@1.2').ready == [('image@1.2', 'info@1.2')]
    assert pairing.dropped == 1


def test_at_most_max_pending_images_wait():
    pairing = CameraInfoPairing(clock=Clock(), max_pending=2)
    pairing.add_image(1.0, 'a')
    pairing.add_image(1.1, 'b')
    assert pairing.add_image(1.2, 'c').dropped == [(1.0, 'timeout')]
    pairing.clear()  # deactivated: forgotten, not counted
    assert pairing.waiting == 0 and pairing.dropped == 1 and pairing.infos.latest() is None


# --------------------------------------------------------------------------------------------- max_frame_gap
@pytest.fixture(scope='module')
def tiny_model():
    from helpers.tiny_runner import tiny_model

    return tiny_model()


def pipeline_of(tiny_model, **settings):
    from helpers.tiny_runner import make_runner

    runner = make_runner(tiny_model, **{'mode': 'single', 'score_threshold': 0.0, 'max_detections': 1, **settings})
    return Pipeline(runner)


def frame(stamp, previous=None, frame_id='cam'):
    K = np.array([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]])
    return Frame(np.zeros((32, 32, 3), np.uint8), K, stamp, frame_id, previous_stamp=previous)


def stream(pipeline, stamps):
    """The node's order: every received image is `received` (the rate), then processed with the stamp before it."""
    reasons, previous = [], None
    for stamp in stamps:
        pipeline.received(stamp)
        reasons.append(pipeline.process(frame(stamp, previous)).reset_reason)
        previous = stamp
    return reasons


ONE_HZ = [0.0, 1.04, 2.1, 3.12, 4.15, 5.2, 6.21, 7.3, 8.31]  # a 1 Hz camera's stamps, a little late each time


def test_a_1hz_camera_keeps_its_memory_and_a_real_gap_still_resets(tiny_model):
    """Issue 30 section 6.2: max_frame_gap 1.0 s reset a 1 Hz camera on many frames. Automatic (-1, the node's
    default): 5 x the median frame period, at least the checkpoint's 1 s."""
    pipeline = pipeline_of(tiny_model, max_frame_gap=1.0)
    pipeline.configure(max_frame_gap=AUTO)
    assert stream(pipeline, ONE_HZ) == [''] * len(ONE_HZ)
    # changed in the runner when the estimate moves by more than 10 %
    assert pipeline.max_frame_gap == pytest.approx(5 * float(np.median(np.diff(ONE_HZ))), rel=0.1)
    assert pipeline.runner.cfg.max_frame_gap == pytest.approx(pipeline.max_frame_gap)
    assert 'max_frame_gap' in stream(pipeline, [20.0])[0]  # the camera stopped for 11.7 s


def test_an_explicit_max_frame_gap_wins(tiny_model):
    pipeline = pipeline_of(tiny_model, max_frame_gap=1.0)
    pipeline.configure(max_frame_gap=1.0)
    reasons = stream(pipeline, ONE_HZ)
    assert sum('max_frame_gap' in r for r in reasons) >= 5  # what the 1 Hz camera got before
    pipeline.configure(max_frame_gap=AUTO)  # back to automatic: the rate measured so far applies at once
    assert pipeline.max_frame_gap > 5.0 and stream(pipeline, [9.4, 10.45]) == ['', '']


def test_automatic_frame_gap_keeps_the_checkpoints_value_for_fast_cameras_and_zero():
    gap = AutoFrameGap(1.0)
    assert gap.value() == 1.0 and gap.period is None
    for index in range(40):
        gap.observe(index / 30)
    assert gap.period == pytest.approx(1 / 30) and gap.value() == 1.0  # 5 x 33 ms < 1 s
    never = AutoFrameGap(0.0)
    for stamp in ONE_HZ:
        never.observe(stamp)
    assert never.value() == 0.0  # the checkpoint never resets on a gap: nor does automatic
    assert P.DEFAULTS['max_frame_gap'] == AUTO and P.validate('max_frame_gap', AUTO) == ''
    assert 'give -1 (automatic' in P.validate('max_frame_gap', -0.5)


# --------------------------------------------------------------------------------------------- resets
def test_one_reset_event_one_log_level(tiny_model):
    """Issue 30 section 6.4: operator-asked resets logged at WARN (mode change, re-enable) but the ~/reset
    service at INFO. Asked for by an operator: INFO; caused by the stream or a failure: WARN."""
    pipeline = pipeline_of(tiny_model, mode='video')
    levels = {}

    def level_after(key, stamp, previous=None):
        result = pipeline.process(frame(stamp, previous))
        assert result.reset_reason, key
        kind, line, level = reset_report('/camera/image', result.reset_reason, pipeline.last_reset_by_operator)
        assert line == f'/camera/image: {result.reset_reason}; temporal memory and tracks reset'
        levels[key] = level

    pipeline.process(frame(1.0))
    pipeline.request_reset('~/reset service called')
    level_after('service', 1.1)
    pipeline.configure(mode='single')
    level_after('mode change', 1.2)
    pipeline.request_reset('re-enabled', by_operator=True)
    level_after('re-enabled', 1.3)
    level_after('stamp backwards', 0.5)
    pipeline.request_reset('processing failed (RuntimeError)', by_operator=False)
    level_after('failure', 0.6)
    assert not pipeline.process(frame(0.7)).reset_reason and pipeline.last_reset_by_operator is False
    assert levels == {
        'service': 'info',
        'mode change': 'info',
        're-enabled': 'info',
        'stamp backwards': 'warn',
        'failure': 'warn',
    }


def test_the_node_logs_every_reset_through_reset_report():
    """The node has one call site for a reset's log line (reset_report with the pipeline's flag), and
    `request_reset` states who asked wherever it is called."""
    import ast
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / 'seqpose_ros' / 'node.py').read_text(encoding='utf-8')
    assert source.count('reset_report(') == 1 and 'last_reset_by_operator' in source
    calls = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and getattr(node.func, 'attr', '') == 'request_reset'
    ]
    assert calls and all(any(k.arg == 'by_operator' for k in call.keywords) for call in calls)


# --------------------------------------------------------------------------------------------- parameters
def test_an_integer_for_a_float_parameter_is_that_float():
    """Issue 30 section 6.3: `ros2 param set /seqpose_node score_threshold 1` was refused with "expected '3' got
    '2'" (rclpy's type check): the pre-set callback turns it into 1.0."""
    assert P.coerce('score_threshold', 1) == 1.0 and isinstance(P.coerce('score_threshold', 1), float)
    assert P.coerce('max_detections', 3) == 3 and isinstance(P.coerce('max_detections', 3), int)
    assert P.coerce('score_threshold', True) is True  # a bool stays what it is: validate refuses it
    assert P.coerce('qos_overrides./x.subscription.depth', 7) == 7  # not ours
    assert 'expected float' in P.validate('score_threshold', True)


def test_a_covariance_row_given_as_a_list_or_array_is_that_row():
    """rclpy hands a DOUBLE_ARRAY parameter back as a list or an array.array; the table's rows are tuples."""
    import array

    row = (0.01, 0.01, 0.05, 0.0, 0.0, 0.1, 0.05, 0.5, 0.05)
    assert P.coerce('covariance.no_motion.mug', list(row)) == row
    assert P.coerce('covariance.no_motion.mug', array.array('d', row)) == row
    assert P.validate('covariance.no_motion.mug', array.array('d', row)) == ''
    assert 'covariance.no_motion.mug' in P.validate('covariance.no_motion.mug', [0.01, -1.0])  # refused by name


def test_configure_time_parameters_change_only_while_unconfigured():
    assert P.lifecycle_problem('checkpoint', 'unconfigured') == ''
    problem = P.lifecycle_problem('checkpoint', 'active')
    assert 'checkpoint is read when the node configures and the node is active' in problem and 'cleanup' in problem
    assert P.lifecycle_problem('backend', 'inactive') and P.lifecycle_problem('image_transport', 'inactive')
    assert P.lifecycle_problem('score_threshold', 'active') == '' and P.lifecycle_problem('enabled', 'inactive') == ''
    assert P.SPECS['autostart'].start_only and P.lifecycle_problem('autostart', 'active') == ''  # rclpy: read-only


def test_backend_is_a_configure_time_parameter_passed_to_the_runner(tmp_path):
    """Issue 30 section D: the inference settings `backend`, `onnx_dir`, `engine_cache` are node parameters from
    the one table, read at configure (they choose how the runner is built) and handed to build_runner."""
    from helpers.ros_harness import write_tiny_checkpoint

    assert {'backend', 'onnx_dir', 'engine_cache'} <= set(P.CONFIGURE_SETTINGS)
    spec = P.SPECS['backend']
    assert spec.default == 'torch' and not spec.dynamic and set(spec.choices) >= {'torch', 'onnxruntime'}
    assert "backend: 'tensorrt' is not one of" in P.validate('backend', 'tensorrt')
    path = write_tiny_checkpoint(tmp_path / 'tiny.pt')
    runner = load_runner(str(path), 'cpu', overrides={'backend': 'torch', 'onnx_dir': str(tmp_path)})[0]
    assert runner.cfg.backend == 'torch' and runner.cfg.onnx_dir == str(tmp_path)


def test_warm_up_runs_one_step_and_leaves_a_fresh_runner(tiny_model):
    from helpers.tiny_runner import make_runner

    runner = make_runner(tiny_model, mode='video')
    steps = []
    step = runner.step
    runner.step = lambda f: steps.append(f) or step(f)
    seconds = warm_up(runner)
    assert seconds > 0 and len(steps) == 1 and steps[0].image_rgb.shape[:2] == runner.input_size
    assert runner.memory is None and runner.sequence is None and runner.frames_since_reset == 0


# --------------------------------------------------------------------------------------------- launch file
def _launch_setup(**arguments):
    from test_ros_logic import _launch_module

    module = _launch_module()
    from launch import LaunchContext

    context = LaunchContext()
    values = {name: str(default) if isinstance(default, str) else '' for name, default, _ in module.ARGUMENTS}
    values.update(params_file='/tmp/none.yaml', rviz_config='', **arguments)
    context.launch_configurations.update(values)
    return module._launch_setup(context)


def test_launch_starts_a_lifecycle_node_and_activates_it_after_its_first_configure():
    actions = _launch_setup()
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch_ros.actions import LifecycleNode
    from lifecycle_msgs.msg import Transition

    node, handler, configure = actions
    assert isinstance(node, LifecycleNode) and isinstance(handler, RegisterEventHandler)
    assert isinstance(configure, EmitEvent) and configure.event.transition_id == Transition.TRANSITION_CONFIGURE
    assert handler.event_handler.handle_once  # a later deactivate / manual configure is left alone
    (activate,) = handler.event_handler.entities
    assert activate.event.transition_id == Transition.TRANSITION_ACTIVATE
    last = node._Node__parameters[-1]  # after the params file: the launch file drives the lifecycle, not the node
    assert [(''.join(part.text for part in key), value) for key, value in last.items()] == [('autostart', False)]
    (manual,) = _launch_setup(autostart='false')  # left unconfigured for a lifecycle manager
    assert isinstance(manual, LifecycleNode)


# --------------------------------------------------------------------------------------------- backlog
def test_frames_released_together_are_all_processed_when_the_model_keeps_up():
    """Late CameraInfos come in a burst (a reliable writer delivers in order after resending a lost one), so the
    images that waited for them are released together. A one-slot buffer kept only the newest (15 of 30 frames of
    a 2 Hz camera answered); now as many wait as the model processes in one frame period, oldest first."""
    from seqpose_ros.pipeline import LatestSlot, frames_to_keep

    assert frames_to_keep(None, 0.1) == 1 and frames_to_keep(0.5, None) == 1  # unknown: the newest only
    assert frames_to_keep(0.5, 0.1) == 5 and frames_to_keep(0.1, 0.3) == 1 and frames_to_keep(1.0, 0.001) == 8
    keep = [1]
    slot = LatestSlot(lambda: keep[0])
    slot.put('a')
    assert slot.put('b') and slot.take(0.01) == 'b' and slot.dropped == 1  # a slow model: the newest
    keep[0] = 3
    for item in 'cde':
        assert not slot.put(item)
    assert slot.put('f') and [slot.take(0.01) for _ in range(4)] == ['d', 'e', 'f', None]
    assert slot.dropped == 2
