"""The node's logic without DDS: reusable object ids over the runner's track ids, CameraInfo pairing, one-slot
buffer, throttled problem log, parameters, the processing pipeline (over the real runner of a tiny model),
start-up failures, the launch file / YAML / RViz config against the declared parameters, package.xml against
the imports, and setup.py's build output."""

import ast
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from seqpose_core.detection import Detection
from seqpose_core.runner import Frame
from seqpose_core.stages.config import InferenceConfig, TrackSettings, settings_table, with_settings
from seqpose_core.stages.tracks import Tracks, update_tracks
from seqpose_ros import params as P
from seqpose_ros.loading import StartupError, load_runner, resolve_device
from seqpose_ros.pipeline import LatestSlot, Pipeline, ProblemLog, ReusableIds, SequenceGaps, StampedCache, Stats

REPO = Path(__file__).resolve().parents[2]


def det(class_id, x, y=0.0, z=1.0):
    return Detection(
        class_id=class_id,
        score=0.9,
        rotation=np.eye(3),
        translation=np.array([x, y, z]),
        size=np.array([0.1, 0.1, 0.1]),
    )


# --------------------------------------------------------------------------------------------- object ids
def test_reusable_ids_bound_the_tf_frame_names_of_a_looping_scene():
    """Issue 13 item 5: 47 TF frames in 60 s of a looping scene. Tracks end and new ones start (a bag loops:
    the runner's tracker resets; objects leave and come back: tracks end); the published ids are reused, so
    the set of `<class>_<id>` names stays at the most objects seen at once."""
    settings, ids = TrackSettings(max_misses=2), ReusableIds()
    names, track_ids, tracks = set(), set(), Tracks.empty()
    for _loop in range(30):
        tracks = Tracks.empty(tracks.next_id)  # the bag looped: the runner reset
        for step in range(10):
            objects = [det(6, 0.0), det(1, 0.5)] if step % 5 != 4 else [det(6, 0.0)]
            tracks = update_tracks(tracks, objects, settings, smooth_scores=False)
            mapping = ids.update(tracks.live_ids, [d.track_id for d in objects])
            for d in objects:
                track_ids.add(d.track_id)
                names.add(f'{d.class_name}_{mapping[d.track_id]}')
    assert len(track_ids) >= 60  # the tracker's ids never repeat ...
    assert names == {'mug_1', 'bottle_2'} or len(names) <= 4, names  # ... the published names do
    assert ids.in_use <= 2


def test_reusable_ids_keep_an_id_while_the_track_lives_and_free_it_after():
    ids = ReusableIds()
    assert ids.update({10, 11}, [10, 11]) == {10: 1, 11: 2}
    assert ids.update({10, 11}, [11]) == {10: 1, 11: 2}  # 10 missed a frame but still tracked
    assert ids.update({11}, [11]) == {11: 2}  # 10 forgotten: id 1 free
    assert ids.update({11, 12}, [11, 12]) == {11: 2, 12: 1}  # the next new track takes it
    ids.reset()
    assert ids.update({13}, [13]) == {13: 1}


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
    assert slot.take(5.0) is None  # returns at once once closed


def test_camera_info_cache_pairs_by_stamp_else_latest():
    cache = StampedCache(size=3)
    assert cache.get(1.0) is None and cache.latest() is None
    for stamp in (1.0, 2.0, 3.0, 4.0):
        cache.add(stamp, f'info@{stamp}')
    assert cache.get(3.0) == 'info@3.0'
    assert cache.get(5.0) == 'info@4.0'  # no CameraInfo with that stamp (yet): the latest
    assert cache.get(1.0) == 'info@4.0'  # fell out of the cache
    assert cache.latest() == 'info@4.0'


def test_camera_info_pairing_is_approximate_within_a_tolerance_and_says_when_it_is_not():
    """Issue 13 item 8: exact stamp or, silently, the latest. Now: the closest within stamp_tolerance; else
    the latest with the distance, which the node logs."""
    cache = StampedCache()
    for stamp in (1.000, 1.033, 1.066):
        cache.add(stamp, f'info@{stamp}')
    assert cache.pair(1.0351, tolerance=0.005) == ('info@1.033', None)  # 2.1 ms apart: paired
    assert cache.pair(1.0, tolerance=0.0) == ('info@1.0', None)
    value, distance = cache.pair(1.050, tolerance=0.005)  # between two: none close enough
    assert value == 'info@1.066' and distance == pytest.approx(0.016)


def test_camera_info_pairing_waits_for_a_late_camera_info():
    cache = StampedCache()
    cache.add(1.0, 'old')
    timer = threading.Timer(0.03, lambda: cache.add(1.1, 'late'))
    timer.start()
    assert cache.pair(1.1, tolerance=0.001, wait=2.0) == ('late', None)
    timer.join()
    start = __import__('time').monotonic()
    cache.add(1.3, 'newer')  # a CameraInfo newer than the image: its own will not come
    assert cache.pair(1.2, tolerance=0.001, wait=2.0)[0] == 'newer'
    assert __import__('time').monotonic() - start < 1.0


def test_problem_log_throttles_per_kind():
    now = [0.0]
    log = ProblemLog(period=5.0, clock=lambda: now[0])
    assert log.report('a', 'bad encoding') == 'bad encoding'
    assert log.report('b', 'no CameraInfo') == 'no CameraInfo'  # another kind: logged at once
    now[0] = 1.0
    assert log.report('a', 'bad encoding') is None
    now[0] = 6.0
    assert log.report('a', 'bad encoding') == 'bad encoding (1 more like this in the last 6.0 s)'
    assert log.counts == {'a': 3, 'b': 1}


def test_sequence_gaps_count_frames_lost_per_publisher():
    gaps = SequenceGaps()
    assert gaps.update('a', 1) == 0 and gaps.update('a', 2) == 0
    assert gaps.update('a', 5) == 2  # 3 and 4 never arrived
    assert gaps.update('b', 10) == 0  # another publisher: its own numbering
    assert gaps.update('a', 1) == 0  # publisher restarted
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
    node_own = {
        'checkpoint',
        'device',
        'history_frames',
        'top_k',
        'image_qos',
        'camera_model',
        'stamp_tolerance',
        'enabled',
        'z_up',
        'publish_tf',
        'tf_prefix',
        'publish_markers',
        'marker_lifetime',
        'max_image_age',
        'odom_frame',
        'use_odometry',
        'image_transport',
        'autostart',
        'camera_info_wait',
    }
    assert {spec.name for spec in P.NODE_PARAMS} == node_own
    # every scalar inference setting is a node parameter under its dotted name, generated from the one table; the
    # ones that choose how the runner is built (backend, ...) are read at configure, the rest at run time
    settings = {spec.name for spec in settings_table()} - set(P.NOT_PARAMETERS)
    assert set(P.RUNNER_SETTINGS) | set(P.CONFIGURE_SETTINGS) == settings and set(P.SPECS) == node_own | settings
    assert not set(P.RUNNER_SETTINGS) & set(P.CONFIGURE_SETTINGS)
    assert {
        'score_threshold',
        'mode',
        'max_frame_gap',
        'support_plane.enabled',
        'refiner.passes',
        'tracks.score_decay',
        'suppression.method',
    } <= settings
    # issue 13 item 1: the default image QoS matches reliable and best-effort publishers alike
    assert P.DEFAULTS['checkpoint'] == '' and P.DEFAULTS['image_qos'] == 'best_available'
    assert P.DEFAULTS['score_threshold'] == 0.20  # the node's own, not the checkpoint's mAP one
    assert all(spec.description for spec in P.PARAMS)
    for spec in P.PARAMS:
        assert P.validate(spec.name, spec.default) == '', spec.name
    assert 'score_threshold: 1.5 is outside' in P.validate('score_threshold', 1.5)
    assert P.validate('score_threshold', 1) == ''  # an int where a float is expected is fine
    assert 'expected float' in P.validate('score_threshold', 'high')
    assert 'expected int' in P.validate('max_detections', True)
    assert 'not one of' in P.validate('mode', 'batch')
    assert 'support_plane.gate_deg' in P.validate('support_plane.gate_deg', 95.0)
    assert 'inference.tracks.distance 0.0' in P.validate('tracks.distance', 0.0)  # an open bound
    assert 'cuda:N' in P.validate('device', 'gpu')
    assert P.validate('use_sim_time', True) == ''  # not ours: left to rclpy
    dynamic = {spec.name for spec in P.PARAMS if spec.dynamic}
    assert set(P.RUNNER_SETTINGS) <= dynamic
    assert 'checkpoint' not in dynamic and 'image_qos' not in dynamic
    assert {'enabled', 'z_up', 'stamp_tolerance', 'camera_info_wait'} <= dynamic
    # the node's inference defaults are the checkpoint's, the node's own on top
    checkpoint_settings = with_settings(InferenceConfig(), {'score_fusion': 'proposal', 'score_threshold': 0.05})
    specs = {spec.name: spec for spec in P.runner_param_specs(checkpoint_settings)}
    assert specs['score_fusion'].default == 'proposal' and specs['score_threshold'].default == 0.20


def _launch_module():
    """The launch file as a module, where `launch` / `launch_ros` are installed (make test installs them from
    ../shared/ros2-python); skipped with the reason otherwise."""
    launch = pytest.importorskip(
        'launch', reason='launch is not importable (not on PyPI; make test installs it from ../shared/ros2-python)'
    )
    if not hasattr(launch, 'LaunchDescription'):
        pytest.skip('the `launch` package (ROS 2) is not installed; only the repository folder launch/ is seen')
    pytest.importorskip('launch_ros', reason='launch_ros is not importable')
    import importlib.util

    spec = importlib.util.spec_from_file_location('seqpose_launch', REPO / 'launch' / 'seqpose.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launch_arguments():
    tree = ast.parse((REPO / 'launch' / 'seqpose.launch.py').read_text(encoding='utf-8'))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'ARGUMENTS':
            return {element.elts[0].value: element.elts[1] for element in node.value.elts}
    raise AssertionError('ARGUMENTS not found in the launch file')


def flatten(tree, prefix=''):
    flat = {}
    for name, value in tree.items():
        flat.update(flatten(value, f'{prefix}{name}.') if isinstance(value, dict) else {f'{prefix}{name}': value})
    return flat


def test_yaml_passes_only_declared_parameters():
    rclpy_own = {'use_sim_time'}  # declared by every rclpy node
    config = yaml.safe_load((REPO / 'config' / 'seqpose.yaml').read_text(encoding='utf-8'))
    assert list(config) == ['/**'] and list(config['/**']) == ['ros__parameters']
    # nested keys are dotted parameter names, as rclpy reads them (support_plane: {enabled: ...})
    yaml_params = flatten(config['/**']['ros__parameters'])
    assert set(yaml_params) - rclpy_own <= set(P.SPECS), set(yaml_params) - set(P.SPECS)
    for name, value in yaml_params.items():
        assert P.validate(name, value) == '', (name, value)
        # the YAML type must be the declared type exactly: rclpy refuses an int for a double parameter
        assert type(value) is type(P.SPECS[name].default), (name, value)
        assert value == P.SPECS[name].default, (name, value, 'config/seqpose.yaml and params.py disagree')


def test_launch_arguments_are_the_documented_ones_and_never_override_the_params_file():
    """Issue 13 item 2: the launch file's {'checkpoint', 'device'} dict overrode the params file (device:
    cuda:0 in a params file ended as cpu). Every parameter-setting argument now defaults to '' (= the params
    file decides); QoS and the DDS profile are arguments (item 1)."""
    arguments = _launch_arguments()
    assert set(arguments) == {
        'image_topic',
        'camera_info_topic',
        'odometry_topic',
        'namespace',
        'params_file',
        'checkpoint',
        'device',
        'backend',
        'image_qos',
        'image_transport',
        'camera_model',
        'use_sim_time',
        'fastdds_profile',
        'launch_rviz',
        'rviz_config',
        'log_level',
        'autostart',
    }
    for name in (
        'checkpoint',
        'device',
        'backend',
        'image_qos',
        'image_transport',
        'camera_model',
        'use_sim_time',
        'fastdds_profile',
    ):
        assert isinstance(arguments[name], ast.Constant) and arguments[name].value == '', name
    source = (REPO / 'launch' / 'seqpose.launch.py').read_text(encoding='utf-8')
    assert "('launch_rviz', 'false'" in source
    assert arguments['autostart'].value == 'true'  # the launch brings the lifecycle node to active by default


def test_launch_overrides_are_typed_and_only_the_given_ones():
    module = _launch_module()
    empty = {name: '' for name, _ in module.TYPED_PARAMETERS}
    assert module.parameter_overrides(empty) == {}
    given = dict(empty, checkpoint='2024', device='cuda:0', use_sim_time='True')
    assert module.parameter_overrides(given) == {'checkpoint': '2024', 'device': 'cuda:0', 'use_sim_time': True}
    assert all(name in P.SPECS or name == 'use_sim_time' for name, _ in module.TYPED_PARAMETERS)
    with pytest.raises(ValueError, match='use_sim_time'):
        module.parameter_overrides(dict(empty, use_sim_time='maybe'))


def test_rviz_config_shows_debug_image_markers_and_tf_with_relative_topics():
    """Issue 13 item 9: absolute /debug_image and /markers showed nothing under a namespace. RViz runs in the
    node's namespace (launch file), so the relative names resolve to the node's outputs."""
    rviz = yaml.safe_load((REPO / 'config' / 'seqpose.rviz').read_text(encoding='utf-8'))
    displays = {d['Class']: d for d in rviz['Visualization Manager']['Displays']}
    assert displays['rviz_default_plugins/Image']['Topic']['Value'] == 'debug_image'
    assert displays['rviz_default_plugins/MarkerArray']['Topic']['Value'] == 'markers'
    assert 'rviz_default_plugins/TF' in displays


def test_launch_file_starts_the_node():
    module = _launch_module()
    description = module.generate_launch_description()
    from launch.actions import OpaqueFunction

    assert any(isinstance(e, OpaqueFunction) for e in description.entities)


# ROS package of each top-level module the node and the launch file import (python module -> package.xml key)
ROS_MODULES = {
    'rclpy': 'rclpy',
    'sensor_msgs': 'sensor_msgs',
    'geometry_msgs': 'geometry_msgs',
    'nav_msgs': 'nav_msgs',
    'std_msgs': 'std_msgs',
    'builtin_interfaces': 'builtin_interfaces',
    'rcl_interfaces': 'rcl_interfaces',
    'lifecycle_msgs': 'lifecycle_msgs',
    'vision_msgs': 'vision_msgs',
    'tf2_ros': 'tf2_ros_py',
    'tf2_msgs': 'tf2_msgs',
    'visualization_msgs': 'visualization_msgs',
    'diagnostic_msgs': 'diagnostic_msgs',
    'std_srvs': 'std_srvs',
    'cv_bridge': 'cv_bridge',
    'launch': 'launch',
    'launch_ros': 'launch_ros',
    'ament_index_python': 'ament_index_python',
}


def _imported_top_modules(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split('.')[0])
    return names


def test_package_xml_declares_every_ros_package_imported_and_rviz2():
    """Issue 13 item 9: std_msgs, builtin_interfaces, rcl_interfaces imported but not declared; rviz2 started
    by the launch file but not declared; cv_bridge declared but unused."""
    import xml.etree.ElementTree as ET

    root = ET.parse(REPO / 'package.xml').getroot()
    declared = {e.text for e in root if e.tag in ('exec_depend', 'depend')}
    imported = set()
    for path in list((REPO / 'seqpose_ros').glob('*.py')) + [REPO / 'launch' / 'seqpose.launch.py']:
        imported |= _imported_top_modules(path)
    needed = {ROS_MODULES[m] for m in imported if m in ROS_MODULES}
    assert needed - declared == set(), needed - declared
    assert 'rviz2' in declared and 'cv_bridge' in needed
    unknown_ros = {m for m in imported if m.endswith(('_msgs', '_srvs', '_interfaces'))} - set(ROS_MODULES)
    assert unknown_ros == set(), f'add {unknown_ros} to ROS_MODULES and package.xml'


def test_setup_py_builds_without_warnings(tmp_path):
    """Issue 13 item 9: setup.py warned about seqpose_core.weights (an importable folder missing from
    `packages`) and the unknown `tests_require`; the data files must still be in the build."""
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            'setup.py',
            'build',
            '--build-base',
            str(tmp_path / 'b'),
            'egg_info',
            '--egg-base',
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    for warning in ('Package would be ignored', 'Unknown distribution option', 'is absent from the `packages`'):
        assert warning not in output, output[-3000:]
    built = tmp_path / 'b' / 'lib' / 'seqpose_core'
    assert (built / 'weights' / 'default.pt').is_file() and (built / 'configs' / 'tiny.yaml').is_file()


def test_config_files_are_found_from_the_source_tree_and_an_ament_prefix(tmp_path, monkeypatch):
    """Issue 14 item 4: what `seqpose bag live` needs to start a node finds config/ through the ament index
    (colcon build) when the package is there, else beside the sources (pip install -e .)."""
    from seqpose_ros import processes

    monkeypatch.setattr(processes, 'share_directory', lambda: None)
    assert processes.config_path('seqpose.yaml') == REPO / 'config' / 'seqpose.yaml'
    share = tmp_path / 'share' / 'seqpose_ros'
    (share / 'config').mkdir(parents=True)
    (share / 'config' / 'seqpose.yaml').write_text('x: 1\n')
    monkeypatch.setattr(processes, 'share_directory', lambda: share)
    assert processes.config_path('seqpose.yaml') == share / 'config' / 'seqpose.yaml'
    with pytest.raises(FileNotFoundError, match='no_such.xml not found; looked in'):
        processes.config_path('no_such.xml')
    env = processes.node_environment('shm', base={'FASTDDS_DEFAULT_PROFILES_FILE': '/x.xml'})
    assert env['FASTDDS_DEFAULT_PROFILES_FILE'].endswith('fastdds_shm_profile.xml')
    assert 'FASTDDS_DEFAULT_PROFILES_FILE' not in processes.node_environment(
        '', base={'FASTDDS_DEFAULT_PROFILES_FILE': '/x.xml'}
    )


def test_share_directory_from_an_ament_prefix(tmp_path, monkeypatch):
    pytest.importorskip('ament_index_python')
    from seqpose_ros import processes

    prefix = tmp_path / 'install'
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages').mkdir(parents=True)
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'seqpose_ros').write_text('')
    (prefix / 'share' / 'seqpose_ros').mkdir(parents=True)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    assert processes.share_directory() == prefix / 'share' / 'seqpose_ros'
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path / 'empty'))
    assert processes.share_directory() is None


# --------------------------------------------------------------------------------------------- pipeline
@pytest.fixture(scope='module')
def tiny_model():
    from helpers.tiny_runner import tiny_model

    return tiny_model()


def real_runner(tiny_model, **settings):
    """The real StreamRunner over a tiny random model: single mode, one detection a frame (the same image
    gives the same detection, so its track continues), steps recorded."""
    from helpers.tiny_runner import make_runner

    runner = make_runner(tiny_model, **{'mode': 'single', 'score_threshold': 0.0, 'max_detections': 1, **settings})
    runner.steps, step = [], runner.step
    runner.step = lambda frame: runner.steps.append(frame) or step(frame)
    return runner


def frame(stamp, frame_id='cam', motion=None, previous=None):
    return Frame(
        np.zeros((32, 32, 3), np.uint8),
        np.diag([30.0, 30.0, 1.0]) + np.array([[0, 0, 16], [0, 0, 16], [0, 0, 0]]),
        stamp,
        frame_id,
        camera_motion=motion,
        previous_stamp=previous,
    )


def test_pipeline_ids_come_from_the_runners_tracker_and_reset_with_it(tiny_model):
    runner = real_runner(tiny_model)
    pipeline = Pipeline(runner)
    ids = [pipeline.process(frame(t)).detections[0].track_id for t in (1.0, 1.1, 1.2)]
    assert ids == [1, 1, 1]
    result = pipeline.process(frame(0.5))  # bag looped
    assert 'backwards' in result.reset_reason
    assert result.detections[0].track_id == 2  # the runner's tracks were reset ...
    assert result.detections[0].extras['object_id'] == 1  # ... and the published id is reused
    assert pipeline.process(frame(0.5)).skip_reason  # duplicate: the runner skips it
    assert len(runner.steps) == 5


def test_gap_is_measured_on_received_frames_not_processed_ones(tiny_model):
    """Issue 13 item 7: a slow model processes one frame in 40 of a 30 Hz stream (the rest are dropped from
    the one-slot buffer); the gap between PROCESSED frames (1.3 s) exceeded max_frame_gap 1 s and reset the
    memory every time. The stamp of the image received just before (known even when it was dropped) goes
    with each frame: no reset. A real gap in what the camera delivered still resets."""
    pipeline = Pipeline(real_runner(tiny_model, max_frame_gap=1.0))
    stamps = [i / 30.0 for i in range(200)]
    results = [pipeline.process(frame(stamps[i], previous=stamps[i - 1] if i else None)) for i in range(0, 200, 40)]
    assert [r.reset_reason for r in results] == [''] * 5
    gap = pipeline.process(frame(20.0, previous=18.5))  # the camera itself stopped for 1.5 s
    assert 'max_frame_gap' in gap.reset_reason


def test_pipeline_requested_reset_and_configure(tiny_model):
    runner = real_runner(tiny_model, mode='video')
    pipeline = Pipeline(runner)
    first = pipeline.process(frame(1.0)).detections[0].track_id
    pipeline.request_reset('~/reset service called')
    assert runner.tracks.live_ids == {first}  # applied by the worker, between frames
    result = pipeline.process(frame(1.1))
    assert result.reset_reason == '~/reset service called' and result.detections[0].track_id != first
    pipeline.configure(
        score_threshold=0.7, max_detections=3, max_frame_gap=0.0, mode='single', **{'support_plane.enabled': False}
    )
    assert runner.cfg.score_threshold == 0.0  # applied before the next frame, on the worker
    assert 'mode changed' in pipeline.process(frame(100.0)).reset_reason
    assert runner.cfg.score_threshold == 0.7 and runner.cfg.max_detections == 3 and runner.cfg.max_frame_gap == 0.0
    assert runner.cfg.support_plane.enabled is False
    with pytest.raises(ValueError, match='unknown key'):
        pipeline.configure(nms_iou_typo=0.1)
    with pytest.raises(ValueError, match='inference.score_threshold 2'):
        pipeline.configure(score_threshold=2.0)


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


def test_memory_overrides_are_refused_for_exported_graphs(tmp_path, monkeypatch):
    """The exported frame graph has the checkpoint's memory size: history_frames / top_k cannot change it."""
    from types import SimpleNamespace

    from helpers.ros_harness import write_tiny_checkpoint

    path = write_tiny_checkpoint(tmp_path / 'tiny.pt')
    built = []

    def exported_runner(checkpoint, device, overrides):
        built.append(overrides)
        return SimpleNamespace(cfg=SimpleNamespace(backend=overrides['backend']), model=SimpleNamespace(cfg=None))

    monkeypatch.setattr('seqpose_ros.loading.build_runner', exported_runner)
    with pytest.raises(StartupError, match='history_frames / top_k .* backend onnxruntime'):
        load_runner(str(path), 'cpu', history_frames=2, overrides={'backend': 'onnxruntime'})
    runner, _, _ = load_runner(str(path), 'cpu', overrides={'backend': 'onnxruntime'})  # no override: fine
    assert runner.cfg.backend == 'onnxruntime' and len(built) == 2


def test_tiny_checkpoint_loads_with_memory_overrides(tmp_path):
    from helpers.ros_harness import write_tiny_checkpoint

    path = write_tiny_checkpoint(tmp_path / 'tiny.pt')
    runner, _, device = load_runner(str(path), 'cpu', history_frames=2, top_k=3)
    assert runner.model.cfg.memory_frames == 2 and runner.model.cfg.memory_top_k == 3
    stored = load_runner(str(path), 'cpu')[0].model.cfg  # the checkpoint's own config is unchanged
    assert (stored.memory_frames, stored.memory_top_k) != (2, 3)
    images_k = np.eye(3) * 50
    images_k[2, 2] = 1
    images_k[:2, 2] = 30
    image = np.zeros((60, 60, 3), np.uint8)
    from seqpose_core.runner import Frame

    runner.step(Frame(image, images_k, 0.0, 'cam'))
    runner.step(Frame(image, images_k, 0.1, 'cam'))
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


def test_best_available_subscriptions_follow_their_publishers():
    """Issue 13 item 1: the default image QoS must work against reliable and best-effort cameras. rmw resolves
    best_available once, at creation (before the camera, usually): the node re-resolves from the publishers."""
    pytest.importorskip('rclpy', reason='rclpy is not importable (make setup)')
    pytest.importorskip('vision_msgs.msg', reason='vision_msgs is not importable (make ros-interfaces)')
    from rclpy.qos import ReliabilityPolicy as R

    from seqpose_ros.qos import best_available_reliability, image_qos_profile

    assert best_available_reliability([]) is None
    assert best_available_reliability([R.RELIABLE, R.RELIABLE]) == R.RELIABLE
    assert best_available_reliability([R.RELIABLE, R.BEST_EFFORT]) == R.BEST_EFFORT
    assert best_available_reliability([2]) == R.BEST_EFFORT  # as rmw reports it, an int
    profile = image_qos_profile('best_available')
    assert profile.reliability == R.BEST_AVAILABLE and profile.depth == 2
    assert image_qos_profile('sensor_data').reliability == R.BEST_EFFORT
