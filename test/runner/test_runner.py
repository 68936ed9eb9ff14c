"""StreamRunner: detections, the sequence rules (reset, backwards stamps, gaps, frame_id, duplicates), single
mode, input validation, the one factory."""

import numpy as np
import pytest

from helpers.tiny_runner import make_runner
from seqpose_core.config import InferenceConfig
from seqpose_core.detection import Detection
from seqpose_core.geometry import scale_intrinsics
from seqpose_core.model import save_checkpoint
from seqpose_core.runner import Frame, StreamRunner, build_runner

K_VGA = np.array([[591.0, 0.0, 322.0], [0.0, 590.0, 244.0], [0.0, 0.0, 1.0]])


def step(runner, image_rgb, K, stamp, **frame):
    """The detections of one step (the frame_id is the same camera unless given)."""
    return runner.step(Frame(image_rgb, K, stamp, frame.pop('frame_id', 'camera'), **frame)).detections


def image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def test_step_returns_sorted_detections(tiny):
    runner = make_runner(tiny, score_threshold=0.0, max_detections=5, **{'suppression.distance': 0.0})
    detections = step(runner, image(), K_VGA / 4 * np.array([[1], [1], [4]]), 0.0)
    assert 0 < len(detections) <= 5 and all(isinstance(d, Detection) for d in detections)
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    for d in detections:
        assert 1 <= d.class_id <= 6 and d.rotation.shape == (3, 3) and d.translation.shape == (3,)
        assert np.allclose(d.rotation @ d.rotation.T, np.eye(3), atol=1e-5) and np.all(d.size > 0)


def test_threshold_and_duplicate_suppression(tiny):
    runner = make_runner(tiny, score_threshold=1.0)
    assert step(runner, image(), K_VGA, 0.0) == []
    runner = make_runner(tiny, score_threshold=0.0, max_detections=100, **{'suppression.distance': 10.0})
    detections = step(runner, image(), K_VGA, 0.0)
    # every query is within 10 m of every other: at most one detection per class survives
    assert len({d.class_id for d in detections}) == len(detections)


def test_memory_grows_and_resets_on_backwards_stamp_gap_and_request(tiny):
    config, _ = tiny
    runner = make_runner(tiny, max_frame_gap=1.0)
    k = config.model.memory_top_k
    for i in range(4):
        step(runner, image(i), K_VGA, 0.1 * i, camera_motion=np.eye(4))
    assert len(runner.memory) == config.model.memory_frames * k
    step(runner, image(), K_VGA, 0.2)  # time went backwards: a new sequence
    assert len(runner.memory) == k and runner.frames_since_reset == 1
    step(runner, image(), K_VGA, 0.3)
    assert len(runner.memory) == 2 * k
    step(runner, image(), K_VGA, 5.0)  # gap larger than max_frame_gap
    assert len(runner.memory) == k
    runner.reset()
    assert runner.memory is None and runner.sequence is None


def test_first_frame_after_reset_matches_a_fresh_runner(tiny):
    runner = make_runner(tiny)
    for i in range(3):
        step(runner, image(i), K_VGA, float(i) * 0.1)
    after_reset = step(runner, image(9), K_VGA, 0.0)  # backwards: memory dropped
    fresh = step(make_runner(tiny), image(9), K_VGA, 0.0)
    assert [(d.class_id, d.score) for d in after_reset] == [(d.class_id, d.score) for d in fresh]


def test_single_mode_never_uses_memory(tiny):
    runner = make_runner(tiny, mode='single')
    first = step(runner, image(1), K_VGA, 0.0)
    step(runner, image(2), K_VGA, 0.1)
    again = step(runner, image(1), K_VGA, 0.2)
    assert runner.memory is None
    assert [(d.class_id, d.score) for d in first] == [(d.class_id, d.score) for d in again]


@pytest.mark.parametrize(
    'bad_image, message',
    [
        (np.zeros((120, 160, 3), dtype=np.float32), 'dtype uint8'),
        (np.zeros((120, 160), dtype=np.uint8), r'shape \(H, W, 3\)'),
        ([[0, 0, 0]], 'numpy array'),
    ],
)
def test_bad_images_are_named(tiny, bad_image, message):
    with pytest.raises((TypeError, ValueError), match=f'image_rgb: .*{message}'):
        step(make_runner(tiny), bad_image, K_VGA, 0.0)


@pytest.mark.parametrize(
    'bad_K, message',
    [
        (np.full((3, 3), np.nan), 'NaN'),
        (np.zeros((3, 3)), 'focal lengths'),
        (np.eye(4), 'shape'),
    ],
)
def test_bad_intrinsics_are_named(tiny, bad_K, message):
    with pytest.raises(ValueError, match=f'K: .*{message}'):
        step(make_runner(tiny), image(), bad_K, 0.0)


def test_bad_motion_stamp_and_sizes_are_named(tiny):
    runner = make_runner(tiny)
    with pytest.raises(ValueError, match='camera_motion'):
        step(runner, image(), K_VGA, 0.0, camera_motion=np.eye(3))
    with pytest.raises(ValueError, match='stamp'):
        step(runner, image(), K_VGA, float('nan'))
    with pytest.raises(ValueError, match='multiples of 14'):
        StreamRunner(tiny[1], InferenceConfig(), input_size=(50, 70))
    with pytest.raises(ValueError, match='inference.mode'):
        StreamRunner(tiny[1], InferenceConfig(mode='batch'), input_size=(56, 70))


def test_scale_intrinsics_keeps_pixel_centres():
    K = scale_intrinsics(K_VGA, (480, 640), (240, 320))
    assert np.allclose(K, [[295.5, 0.0, 160.75], [0.0, 295.0, 121.75], [0.0, 0.0, 1.0]])
    # a point seen at pixel (u, v) of the big image lands at ((u + .5) / 2 - .5, (v + .5) / 2 - .5)
    point = np.array([0.1, -0.2, 1.3])
    big = K_VGA @ point / point[2]
    small = K @ point / point[2]
    assert np.allclose(small[:2], (big[:2] + 0.5) / 2 - 0.5)


def test_from_checkpoint_uses_the_stored_config(tiny, tmp_path):
    config, model = tiny
    path = save_checkpoint(tmp_path / 'tiny.pt', model, config)
    runner = build_runner(path)
    assert runner.input_size == (56, 70) and runner.cfg == config.inference
    assert isinstance(step(runner, image(), K_VGA, 0.0), list)
    overridden = build_runner(path, mode='sf', device='cpu', overrides={'score_threshold': 0.7})
    assert overridden.cfg.mode == 'single' and overridden.cfg.score_threshold == 0.7
    assert config.inference.score_threshold != 0.7  # the stored config is not changed in place
    with pytest.raises(ValueError, match='unknown key'):
        build_runner(path, overrides={'score_treshold': 0.7})
    with pytest.raises(FileNotFoundError, match='no such file'):
        build_runner(tmp_path / 'missing.pt')


def test_built_model_needs_its_config(tiny):
    config, model = tiny
    with pytest.raises(ValueError, match='config'):
        build_runner(model=model)
    runner = build_runner(model=model, config=config, mode='mf')
    assert runner.cfg.mode == 'video' and runner.checkpoint_path is None


def test_sequence_rules_are_the_runners(tiny):
    """Every caller (node, eval, bag replay) gets the same rules, with the reason in the step result."""
    config, _ = tiny
    runner = make_runner(tiny, max_frame_gap=1.0)
    k = config.model.memory_top_k
    assert runner.step(Frame(image(), K_VGA, 0.0, 'camera')).reset_reason == ''
    duplicate = runner.step(Frame(image(1), K_VGA, 0.0, 'camera'))
    assert duplicate.skipped and 'duplicate' in duplicate.skip_reason and len(runner.memory) == k
    other_camera = runner.step(Frame(image(), K_VGA, 0.1, 'camera_2'))
    assert 'frame_id changed' in other_camera.reset_reason and len(runner.memory) == k
    backwards = runner.step(Frame(image(), K_VGA, 0.05, 'camera_2'))
    assert 'backwards' in backwards.reset_reason
    gap = runner.step(Frame(image(), K_VGA, 2.0, 'camera_2'))
    assert 'max_frame_gap' in gap.reset_reason


def test_gap_is_measured_on_received_frames(tiny):
    """A slow consumer that dropped frames in between is not a sensor gap: the node passes the stamp of the
    frame received just before, and only a gap in what the camera delivered resets the memory."""
    config, _ = tiny
    runner = make_runner(tiny, max_frame_gap=1.0)
    runner.step(Frame(image(), K_VGA, 0.0, 'camera'))
    slow = runner.step(Frame(image(), K_VGA, 1.5, 'camera', previous_stamp=1.45))
    assert slow.reset_reason == '' and len(runner.memory) == 2 * config.model.memory_top_k
    lost = runner.step(Frame(image(), K_VGA, 3.0, 'camera', previous_stamp=1.5))
    assert 'max_frame_gap' in lost.reset_reason
    unlimited = make_runner(tiny, max_frame_gap=0.0)
    unlimited.step(Frame(image(), K_VGA, 0.0, 'camera'))
    assert unlimited.step(Frame(image(), K_VGA, 100.0, 'camera')).reset_reason == ''


def test_configure_replaces_the_settings(tiny):
    runner = make_runner(tiny)
    settings = runner.cfg
    step(runner, image(), K_VGA, 0.0)
    runner.configure(score_threshold=0.9)
    assert runner.cfg.score_threshold == 0.9 and settings.score_threshold != 0.9 and runner.memory is not None
    runner.configure(mode='sf')
    assert runner.cfg.mode == 'single' and runner.memory is None
    with pytest.raises(ValueError, match='unknown key'):
        runner.configure(threshold=1.0)


def test_an_old_checkpoint_with_flat_inference_names_still_loads(tiny, tmp_path):
    """Checkpoints from before the stage sections: flat inference names, and the refiner's classes in the model
    section. They load with every value where it lives now."""
    from seqpose_core.model.checkpoint import load_checkpoint, save_checkpoint_content

    config, model = tiny
    path = save_checkpoint(tmp_path / 'old.pt', model, config)
    content = load_checkpoint(path)
    content['config']['inference'] = {
        'mode': 'video',
        'score_threshold': 0.25,
        'duplicate_suppression': 'none',
        'nms_distance': 0.07,
        'refiner_passes': 3,
        'crop_scoring': False,
        'crop_score_weight': 0.3,
        'score_track_decay': 0.6,
        'support_plane': False,
        'support_plane_gate_deg': 15.0,
    }
    content['config']['model'].update(refiner_classes=['mug'], refiner_depth_weight=0.7)
    save_checkpoint_content(path, content)
    runner = build_runner(path, device='cpu')
    settings = runner.cfg
    assert settings.score_threshold == 0.25 and settings.suppression.method == 'none'
    assert settings.suppression.distance == 0.07 and settings.refiner.passes == 3
    assert settings.crop_scoring.enabled is False and settings.crop_scoring.weight == 0.3
    assert settings.tracks.score_decay == 0.6 and settings.support_plane.enabled is False
    assert settings.support_plane.gate_deg == 15.0
    assert settings.refiner.classes == ('mug',) and settings.refiner.depth_weight == 0.7
    assert isinstance(step(runner, image(), K_VGA, 0.0), list)


def test_the_stages_see_no_camera_motion_across_a_sequence_break(tiny):
    runner = make_runner(tiny, mode='video')
    seen = []
    stage = runner.stages[-1]
    apply = stage.apply
    stage.apply = lambda detections, context, state: (
        seen.append(context.camera_motion) or apply(detections, context, state)
    )
    motion = np.eye(4)
    for stamp, frame_id in ((0.0, 'cam'), (0.1, 'cam'), (0.2, 'other')):
        runner.step(Frame(image(), K_VGA, stamp, frame_id, camera_motion=motion))
    assert seen[0] is None and seen[1] is not None and seen[2] is None


def test_keyframes_keep_older_views_in_the_memory_with_the_motion_since(tiny):
    """inference.memory: with keyframes a frame enters the memory only every keyframe_interval seconds (or after
    keyframe_distance of travel); the frames between read the memory warped by the motion since its newest frame."""
    runner = make_runner(tiny, mode='video', **{'memory.keyframe_interval': 0.1})
    seen = []
    forward = runner.model.forward

    def recording_forward(*args, camera_motion=None, **kwargs):
        seen.append(None if camera_motion is None else camera_motion[0].cpu().numpy().astype(np.float64))
        return forward(*args, camera_motion=camera_motion, **kwargs)

    runner.model.forward = recording_forward
    step_motion = np.eye(4)
    step_motion[0, 3] = 0.01  # 1 cm a frame
    entered = []
    for index in range(7):
        runner.step(Frame(image(), K_VGA, index / 30.0, 'cam', camera_motion=step_motion))
        entered.append(runner.memory_clock.stamp)
    assert entered == pytest.approx([0, 0, 0, 0.1, 0.1, 0.1, 0.2])  # every third frame at 30 Hz
    assert seen[0] is None
    np.testing.assert_allclose(seen[1][0, 3], 0.01, atol=1e-6)
    np.testing.assert_allclose(seen[3][0, 3], 0.03, atol=1e-6)  # three frames since the memory's newest
    np.testing.assert_allclose(seen[4][0, 3], 0.01, atol=1e-6)
    by_distance = make_runner(tiny, mode='video', **{'memory.keyframe_distance': 0.02})
    stamps = []
    for index in range(5):
        by_distance.step(Frame(image(), K_VGA, index / 30.0, 'cam', camera_motion=step_motion))
        stamps.append(by_distance.memory_clock.stamp)
    assert stamps == pytest.approx([0, 0, 2 / 30, 2 / 30, 4 / 30])
    every = make_runner(tiny, mode='video')
    for index in range(3):
        every.step(Frame(image(), K_VGA, index / 30.0, 'cam', camera_motion=step_motion))
    assert every.memory_clock.stamp == pytest.approx(2 / 30)  # the default: every frame, as trained
