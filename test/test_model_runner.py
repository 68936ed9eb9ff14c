"""StreamRunner: detections, memory lifetime (reset, backwards stamps, gaps, single mode), input validation."""
import dataclasses

import numpy as np
import pytest
import torch

from seqpose_core.config import InferenceConfig, load_config
from seqpose_core.detection import Detection
from seqpose_core.model import build_model, save_checkpoint
from seqpose_core.geometry import scale_intrinsics
from seqpose_core.runner import StreamRunner

K_VGA = np.array([[591.0, 0.0, 322.0], [0.0, 590.0, 244.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope='module')
def tiny():
    config = load_config('tiny')
    torch.manual_seed(0)
    return config, build_model(config.model)


def make_runner(tiny, **inference):
    config, model = tiny
    cfg = dataclasses.replace(config.inference, **inference)
    return StreamRunner(model, cfg, input_size=(config.data.input_height, config.data.input_width), device='cpu')


def image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def test_step_returns_sorted_detections(tiny):
    runner = make_runner(tiny, score_threshold=0.0, max_detections=5, nms_distance=0.0)
    detections = runner.step(image(), K_VGA / 4 * np.array([[1], [1], [4]]), 0.0)
    assert 0 < len(detections) <= 5 and all(isinstance(d, Detection) for d in detections)
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    for d in detections:
        assert 1 <= d.class_id <= 6 and d.rotation.shape == (3, 3) and d.translation.shape == (3,)
        assert np.allclose(d.rotation @ d.rotation.T, np.eye(3), atol=1e-5) and np.all(d.size > 0)


def test_threshold_and_duplicate_suppression(tiny):
    runner = make_runner(tiny, score_threshold=1.1)
    assert runner.step(image(), K_VGA, 0.0) == []
    runner = make_runner(tiny, score_threshold=0.0, max_detections=100, nms_distance=10.0)
    detections = runner.step(image(), K_VGA, 0.0)
    # every query is within 10 m of every other: at most one detection per class survives
    assert len({d.class_id for d in detections}) == len(detections)


def test_memory_grows_and_resets_on_backwards_stamp_gap_and_request(tiny):
    config, _ = tiny
    runner = make_runner(tiny, max_frame_gap=1.0)
    k = config.model.memory_top_k
    for i in range(4):
        runner.step(image(i), K_VGA, 0.1 * i, camera_motion=np.eye(4))
    assert len(runner.memory) == config.model.memory_frames * k
    runner.step(image(), K_VGA, 0.2)                       # time went backwards: a new sequence
    assert len(runner.memory) == k and runner.frames_since_reset == 1
    runner.step(image(), K_VGA, 0.3)
    assert len(runner.memory) == 2 * k
    runner.step(image(), K_VGA, 5.0)                       # gap larger than max_frame_gap
    assert len(runner.memory) == k
    runner.reset()
    assert runner.memory is None and runner.last_stamp is None


def test_first_frame_after_reset_matches_a_fresh_runner(tiny):
    runner = make_runner(tiny)
    for i in range(3):
        runner.step(image(i), K_VGA, float(i) * 0.1)
    after_reset = runner.step(image(9), K_VGA, 0.0)        # backwards: memory dropped
    fresh = make_runner(tiny).step(image(9), K_VGA, 0.0)
    assert [(d.class_id, d.score) for d in after_reset] == [(d.class_id, d.score) for d in fresh]


def test_single_mode_never_uses_memory(tiny):
    runner = make_runner(tiny, mode='single')
    first = runner.step(image(1), K_VGA, 0.0)
    runner.step(image(2), K_VGA, 0.1)
    again = runner.step(image(1), K_VGA, 0.2)
    assert runner.memory is None
    assert [(d.class_id, d.score) for d in first] == [(d.class_id, d.score) for d in again]


@pytest.mark.parametrize('bad_image, message', [
    (np.zeros((120, 160, 3), dtype=np.float32), 'dtype uint8'),
    (np.zeros((120, 160), dtype=np.uint8), r'shape \(H, W, 3\)'),
    ([[0, 0, 0]], 'numpy array'),
])
def test_bad_images_are_named(tiny, bad_image, message):
    with pytest.raises((TypeError, ValueError), match=f'image_rgb: .*{message}'):
        make_runner(tiny).step(bad_image, K_VGA, 0.0)


@pytest.mark.parametrize('bad_K, message', [
    (np.full((3, 3), np.nan), 'NaN'),
    (np.zeros((3, 3)), 'focal lengths'),
    (np.eye(4), 'shape'),
])
def test_bad_intrinsics_are_named(tiny, bad_K, message):
    with pytest.raises(ValueError, match=f'K: .*{message}'):
        make_runner(tiny).step(image(), bad_K, 0.0)


def test_bad_motion_stamp_and_sizes_are_named(tiny):
    runner = make_runner(tiny)
    with pytest.raises(ValueError, match='camera_motion'):
        runner.step(image(), K_VGA, 0.0, camera_motion=np.eye(3))
    with pytest.raises(ValueError, match='stamp'):
        runner.step(image(), K_VGA, float('nan'))
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
    runner = StreamRunner.from_checkpoint(path)
    assert runner.input_size == (56, 70) and runner.cfg == config.inference
    assert isinstance(runner.step(image(), K_VGA, 0.0), list)
