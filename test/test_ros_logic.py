"""The node's logic without DDS: tracker, frame gate, one-slot buffer, throttled problem log, parameters,
the processing pipeline (with a stand-in runner), start-up failures, and the launch file / YAML against the
declared parameters."""
import ast
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from seqpose_core.detection import Detection
from seqpose_core.tracking import Tracker
from seqpose_ros import params as P
from seqpose_ros.loading import StartupError, load_runner, resolve_device
from seqpose_ros.pipeline import (CameraInfoCache, Frame, FrameGate, LatestSlot, Pipeline, ProblemLog,
                                  SequenceGaps, Stats)

REPO = Path(__file__).resolve().parents[1]


def det(class_id, x, y=0.0, z=1.0):
    return Detection(class_id=class_id, score=0.9, rotation=np.eye(3), translation=np.array([x, y, z]),
                     size=np.array([0.1, 0.1, 0.1]))


# --------------------------------------------------------------------------------------------- tracker
def test_tracker_ids_stable_confirmed_after_two_hits():
    tracker = Tracker(max_distance=0.1, confirm_hits=2)
    first = tracker.update([det(1, 0.0), det(6, 0.3)])
    assert [d.track_id for d in first] == [1, 2]
    assert [d.extras['confirmed'] for d in first] == [False, False]
    # objects move a little, and come back in a different order
    second = tracker.update([det(6, 0.32), det(1, 0.02)])
    assert [d.track_id for d in second] == [2, 1]
    assert all(d.extras['confirmed'] for d in second)


def test_tracker_needs_same_class_and_nearby():
    tracker = Tracker(max_distance=0.1)
    tracker.update([det(1, 0.0)])
    (other_class,) = tracker.update([det(2, 0.0)])
    (far,) = tracker.update([det(1, 0.5)])
    assert other_class.track_id != 1 and far.track_id not in (1, other_class.track_id)


def test_tracker_closest_pair_wins():
    tracker = Tracker(max_distance=0.2)
    tracker.update([det(1, 0.0), det(1, 0.15)])
    a, b = tracker.update([det(1, 0.14), det(1, 0.01)])
    assert (a.track_id, b.track_id) == (2, 1)


def test_tracker_forgets_after_misses_and_reset_never_reuses_ids():
    tracker = Tracker(max_misses=1)
    tracker.update([det(1, 0.0)])
    tracker.update([])
    (again,) = tracker.update([det(1, 0.0)])
    assert again.track_id == 1                  # one miss is tolerated
    tracker.update([])
    tracker.update([])
    (new,) = tracker.update([det(1, 0.0)])
    assert new.track_id == 2                    # two misses: forgotten
    tracker.reset()
    (after_reset,) = tracker.update([det(1, 0.0)])
    assert after_reset.track_id == 3 and not after_reset.extras['confirmed']


def test_tracker_uses_camera_motion():
    tracker = Tracker(max_distance=0.05)
    tracker.update([det(1, 0.0)])
    motion = np.eye(4)
    motion[0, 3] = -0.3                          # the camera moved 0.3 m to the right
    (moved,) = tracker.update([det(1, -0.3)], camera_motion=motion)
    assert moved.track_id == 1


# --------------------------------------------------------------------------------------------- gate
def test_gate_decisions():
    gate = FrameGate(max_frame_gap=0.5)
    assert gate.check(10.0, 'cam').action == 'process'
    assert gate.check(10.1, 'cam').action == 'process'
    duplicate = gate.check(10.1, 'cam')
    assert duplicate.action == 'skip' and 'duplicate' in duplicate.reason
    back = gate.check(9.0, 'cam')
    assert back.action == 'reset' and 'backwards' in back.reason
    assert gate.check(9.1, 'cam').action == 'process'
    gap = gate.check(9.8, 'cam')
    assert gap.action == 'reset' and 'max_frame_gap' in gap.reason
    changed = gate.check(9.9, 'other')
    assert changed.action == 'reset' and "'cam' to 'other'" in changed.reason
    gate.max_frame_gap = 0.0                    # 0: no gap limit
    assert gate.check(1000.0, 'other').action == 'process'


# --------------------------------------------------------------------------------------------- slot, log, stats
def test_latest_slot_keeps_newest_and_counts_drops():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.take(0.01) == 3 and slot.dropped == 2
    assert slot.take(0.01) is None
    result = []
    waiter = threading.Thread(target=lambda: result.append(slot.take(5.0)))
    waiter.start()
    slot.put('late')
    waiter.join(2.0)
    assert result == ['late']
    slot.close()
    assert slot.take(5.0) is None               # returns at once once closed


def test_camera_info_cache_pairs_by_stamp_else_latest():
    cache = CameraInfoCache(size=3)
    assert cache.get(1.0) is None and cache.latest() is None
    for stamp in (1.0, 2.0, 3.0, 4.0):
        cache.add(stamp, f'info@{stamp}')
    assert cache.get(3.0) == 'info@3.0'
    assert cache.get(5.0) == 'info@4.0'          # no CameraInfo with that stamp (yet): the latest
    assert cache.get(1.0) == 'info@4.0'          # fell out of the cache
    assert cache.latest() == 'info@4.0'


def test_problem_log_throttles_per_kind():
    now = [0.0]
    log = ProblemLog(period=5.0, clock=lambda: now[0])
    assert log.report('a', 'bad encoding') == 'bad encoding'
    assert log.report('b', 'no CameraInfo') == 'no CameraInfo'      # another kind: logged at once
    now[0] = 1.0
    assert log.report('a', 'bad encoding') is None
    now[0] = 6.0
    assert log.report('a', 'bad encoding') == 'bad encoding (1 more like this in the last 6.0 s)'
    assert log.counts == {'a': 3, 'b': 1}


def test_sequence_gaps_count_frames_lost_per_publisher():
    gaps = SequenceGaps()
    assert gaps.update('a', 1) == 0 and gaps.update('a', 2) == 0
    assert gaps.update('a', 5) == 2                 # 3 and 4 never arrived
    assert gaps.update('b', 10) == 0                # another publisher: its own numbering
    assert gaps.update('a', 1) == 0                 # publisher restarted
    assert gaps.update('a', None) == 0 and gaps.lost == 2


def test_stats_rates():
    now = [0.0]
    stats = Stats(clock=lambda: now[0])
    stats.received, stats.processed = 30, 10
    stats.latencies.extend([0.01, 0.03])
    now[0] = 1.0
    snap = stats.snapshot(dropped=20)
    assert snap['input rate (Hz)'] == 30 and snap['processed rate (Hz)'] == 10
    assert snap['latency mean (ms)'] == pytest.approx(20.0) and snap['frames dropped (newer frame arrived)'] == 20


# --------------------------------------------------------------------------------------------- params
def test_params_table_and_validation():
    expected = {'checkpoint', 'device', 'score_threshold', 'max_detections', 'mode', 'history_frames', 'top_k',
                'image_qos', 'publish_tf', 'tf_prefix', 'publish_markers', 'marker_lifetime', 'max_frame_gap',
                'max_image_age', 'odom_frame', 'image_transport'}
    assert set(P.SPECS) == expected
    assert P.DEFAULTS['checkpoint'] == '' and P.DEFAULTS['image_qos'] == 'sensor_data'
    assert all(spec.description for spec in P.PARAMS)
    for spec in P.PARAMS:
        assert P.validate(spec.name, spec.default) == '', spec.name
    assert 'outside' in P.validate('score_threshold', 1.5)
    assert P.validate('score_threshold', 1) == ''                  # an int where a float is expected is fine
    assert 'expected float' in P.validate('score_threshold', 'high')
    assert 'expected int' in P.validate('max_detections', True)
    assert 'not one of' in P.validate('mode', 'batch')
    assert 'cuda:N' in P.validate('device', 'gpu')
    assert P.validate('use_sim_time', True) == ''                  # not ours: left to rclpy
    dynamic = {spec.name for spec in P.PARAMS if spec.dynamic}
    assert {'score_threshold', 'max_detections', 'mode', 'max_frame_gap'} <= dynamic
    assert 'checkpoint' not in dynamic and 'image_qos' not in dynamic


def _launch_parameters():
    """Parameter names the launch file passes in its `parameters=[..., {dict}]` (read with ast: `launch` is
    not importable here, and the test must see the names without running the file)."""
    tree = ast.parse((REPO / 'launch' / 'seqpose.launch.py').read_text(encoding='utf-8'))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == 'parameters' and isinstance(node.value, ast.List):
            for element in node.value.elts:
                if isinstance(element, ast.Dict):
                    names.update(k.value for k in element.keys if isinstance(k, ast.Constant))
    return names


def _launch_arguments():
    tree = ast.parse((REPO / 'launch' / 'seqpose.launch.py').read_text(encoding='utf-8'))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'ARGUMENTS':
            return {element.elts[0].value for element in node.value.elts}
    raise AssertionError('ARGUMENTS not found in the launch file')


def test_launch_and_yaml_pass_only_declared_parameters():
    rclpy_own = {'use_sim_time'}                 # declared by every rclpy node
    launch_names = _launch_parameters()
    assert launch_names >= {'checkpoint', 'device', 'use_sim_time'}
    assert launch_names - rclpy_own <= set(P.SPECS), launch_names - rclpy_own - set(P.SPECS)
    config = yaml.safe_load((REPO / 'config' / 'seqpose.yaml').read_text(encoding='utf-8'))
    assert list(config) == ['/**'] and list(config['/**']) == ['ros__parameters']
    yaml_params = config['/**']['ros__parameters']
    assert set(yaml_params) - rclpy_own <= set(P.SPECS), set(yaml_params) - set(P.SPECS)
    for name, value in yaml_params.items():
        assert P.validate(name, value) == '', (name, value)
        # the YAML type must be the declared type exactly: rclpy refuses an int for a double parameter
        assert type(value) is type(P.SPECS[name].default), (name, value)


def test_launch_arguments_are_the_documented_ones():
    assert _launch_arguments() == {'image_topic', 'camera_info_topic', 'namespace', 'checkpoint', 'device',
                                   'params_file', 'use_sim_time', 'launch_rviz', 'rviz_config', 'log_level'}
    source = (REPO / 'launch' / 'seqpose.launch.py').read_text(encoding='utf-8')
    assert "('launch_rviz', 'false'" in source


def test_rviz_config_shows_debug_image_markers_and_tf():
    rviz = yaml.safe_load((REPO / 'config' / 'seqpose.rviz').read_text(encoding='utf-8'))
    displays = {d['Class']: d for d in rviz['Visualization Manager']['Displays']}
    assert displays['rviz_default_plugins/Image']['Topic']['Value'] == '/debug_image'
    assert displays['rviz_default_plugins/MarkerArray']['Topic']['Value'] == '/markers'
    assert 'rviz_default_plugins/TF' in displays


def test_launch_file_starts_the_node():
    """Where launch / launch_ros are installed (a ROS 2 system): the description builds and names our node.
    Here they are not (not on PyPI): skipped with the reason. The repository's own launch/ folder is a
    namespace package named `launch`, so importability is checked on the real API."""
    launch = pytest.importorskip('launch', reason='launch is not importable (not on PyPI; needs ROS 2)')
    if not hasattr(launch, 'LaunchDescription'):
        pytest.skip('the `launch` package (ROS 2) is not installed; only the repository folder launch/ is seen')
    pytest.importorskip('launch_ros', reason='launch_ros is not importable (not on PyPI; needs ROS 2)')
    import importlib.util
    spec = importlib.util.spec_from_file_location('seqpose_launch', REPO / 'launch' / 'seqpose.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    executables = [getattr(e, 'node_executable', None) for e in description.entities]
    assert 'seqpose_node' in executables


# --------------------------------------------------------------------------------------------- pipeline
class FakeRunner:
    """Stands in for StreamRunner: records calls; returns one fixed object per frame."""

    def __init__(self):
        self.cfg = SimpleNamespace(score_threshold=0.3, max_detections=20, mode='video', max_frame_gap=1.0)
        self.steps, self.resets = [], 0

    def step(self, image_rgb, K, stamp, camera_motion=None):
        self.steps.append((stamp, camera_motion))
        return [det(6, 0.0)]

    def reset(self):
        self.resets += 1


def frame(stamp, frame_id='cam', motion=None):
    return Frame(np.zeros((4, 4, 3), np.uint8), np.eye(3), stamp, frame_id, camera_motion=motion)


def test_pipeline_gate_resets_runner_and_tracker():
    runner = FakeRunner()
    pipeline = Pipeline(runner)
    ids = [pipeline.process(frame(t)).detections[0].track_id for t in (1.0, 1.1, 1.2)]
    assert ids == [1, 1, 1] and runner.resets == 0
    result = pipeline.process(frame(0.5))                       # bag looped
    assert 'backwards' in result.reset_reason and runner.resets == 1
    assert result.detections[0].track_id == 2                  # tracks were reset too
    assert pipeline.process(frame(0.5)).skipped_reason         # duplicate: runner not stepped
    assert len(runner.steps) == 4


def test_pipeline_requested_reset_and_configure():
    runner = FakeRunner()
    pipeline = Pipeline(runner)
    pipeline.process(frame(1.0))
    pipeline.request_reset('~/reset service called')
    assert runner.resets == 0                                  # applied by the worker, between frames
    result = pipeline.process(frame(1.1))
    assert result.reset_reason == '~/reset service called' and runner.resets == 1
    pipeline.configure(score_threshold=0.7, max_detections=3, max_frame_gap=0.0, mode='single')
    assert runner.cfg.score_threshold == 0.7 and runner.cfg.max_detections == 3
    assert runner.cfg.max_frame_gap == float('inf') and pipeline.gate.max_frame_gap == 0.0
    assert 'mode changed' in pipeline.process(frame(100.0)).reset_reason


def test_pipeline_drops_camera_motion_across_a_reset():
    runner = FakeRunner()
    pipeline = Pipeline(runner)
    motion = np.eye(4)
    pipeline.process(frame(1.0))
    pipeline.process(frame(1.1, motion=motion))
    pipeline.process(frame(1.2, frame_id='other', motion=motion))
    assert runner.steps[1][1] is motion and runner.steps[2][1] is None


# --------------------------------------------------------------------------------------------- start-up
def test_bad_checkpoints_fail_with_the_reason(tmp_path):
    with pytest.raises(StartupError, match="'/nonexistent/model.pt': no such file"):
        load_runner('/nonexistent/model.pt')
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(StartupError, match='does not load: WeightsError'):
        load_runner(str(garbage))


def test_embedded_default_or_clear_message():
    from seqpose_ros.loading import DEFAULT_CHECKPOINT
    if DEFAULT_CHECKPOINT.is_file():
        runner, path, device = load_runner('')
        assert path == DEFAULT_CHECKPOINT and device == 'cpu'
    else:
        with pytest.raises(StartupError, match='embedded default model .* is not installed'):
            load_runner('')


def test_tiny_checkpoint_loads_with_memory_overrides(tmp_path):
    from seqpose_ros.testing import write_tiny_checkpoint
    path = write_tiny_checkpoint(tmp_path / 'tiny.pt')
    runner, _, device = load_runner(str(path), 'cpu', history_frames=2, top_k=3)
    assert runner.model.cfg.memory_frames == 2 and runner.model.cfg.memory_top_k == 3
    images_k = np.eye(3) * 50
    images_k[2, 2] = 1
    images_k[:2, 2] = 30
    image = np.zeros((60, 60, 3), np.uint8)
    runner.step(image, images_k, 0.0)
    runner.step(image, images_k, 0.1)
    assert len(runner.memory.frames) == 2 and runner.memory.frames[0].features.shape[1] == 3


def test_cuda_device_falls_back_to_cpu_with_a_warning():
    import torch
    warnings = []
    device = resolve_device('cuda:0', warnings.append)
    if torch.cuda.is_available():
        assert device == 'cuda:0'
    else:
        assert device == 'cpu' and 'falling back to CPU' in warnings[0]
    assert resolve_device('cuda:99', warnings.append) == 'cpu'
