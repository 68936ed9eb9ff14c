"""The covariance stage (seqpose_core.stages.covariance): each detection of a calibrated class carries its class's
measured error as a 6x6 pose covariance in the camera frame, growing with the depth; without a calibration, none."""

import math

import numpy as np
import pytest

from helpers.tiny_runner import apply_stage, make_runner
from seqpose_core import CLASS_NAMES
from seqpose_core.config_schema import ConfigError
from seqpose_core.detection import Detection
from seqpose_core.runner import Frame
from seqpose_core.stages.covariance import ray_frame

# (a_x, a_y, a_z, b_x, b_y, b_z, r_x, r_y, r_z): across the ray 1 cm, along it 10 % of the depth
ROW = (0.01, 0.01, 0.0, 0.0, 0.0, 0.1, 0.05, 0.3, 0.05)
ODOMETRY_ROW = (0.005, 0.005, 0.02, 0.0, 0.0, 0.0, 0.05, 0.1, 0.05)


def calibrated(tiny, **settings):
    rows = {f'covariance.no_motion.{name}': ROW for name in CLASS_NAMES}
    return make_runner(tiny, **rows, **settings)


def detection(translation, rotation=np.eye(3), class_id=6):
    return Detection(class_id, 0.9, np.asarray(rotation, float), np.asarray(translation, float), np.full(3, 0.1))


def rotation_about_y(degrees):
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def test_a_calibrated_detection_carries_a_symmetric_positive_definite_6x6_that_grows_with_depth(tiny):
    runner = calibrated(tiny)
    near, far = apply_stage(runner, 'covariance', [detection([0, 0, 0.5]), detection([0, 0, 1.0])])
    for item in (near, far):
        covariance = item.extras['pose_covariance']
        assert covariance.shape == (6, 6)
        np.testing.assert_allclose(covariance, covariance.T, atol=1e-15)
        assert np.all(np.linalg.eigvalsh(covariance) > 0)
    # on the optical axis the ray frame is the camera's: x, y 1 cm at any depth, z 10 % of the depth
    np.testing.assert_allclose(np.diag(near.extras['pose_covariance'])[:3], [1e-4, 1e-4, 0.05**2])
    np.testing.assert_allclose(np.diag(far.extras['pose_covariance'])[:3], [1e-4, 1e-4, 0.1**2])
    np.testing.assert_allclose(np.diag(far.extras['pose_covariance'])[3:], [0.05**2, 0.3**2, 0.05**2])
    assert not np.any(near.extras['pose_covariance'][:3, 3:])  # position and rotation independent


def test_off_the_image_centre_the_largest_variance_lies_along_the_viewing_ray(tiny):
    translation = np.array([0.4, -0.2, 0.8])
    (item,) = apply_stage(calibrated(tiny), 'covariance', [detection(translation)])
    values, vectors = np.linalg.eigh(item.extras['pose_covariance'][:3, :3])
    ray = translation / np.linalg.norm(translation)
    assert abs(vectors[:, -1] @ ray) == pytest.approx(1.0)
    assert values[-1] == pytest.approx((0.1 * 0.8) ** 2)  # sigma grows with the depth z, not the range
    np.testing.assert_allclose(ray_frame(translation) @ ray_frame(translation).T, np.eye(3), atol=1e-12)


def test_the_rotation_block_is_about_the_objects_axes_in_the_camera_frame(tiny):
    rotation = rotation_about_y(90)  # the object's y stays the camera's y; its x is the camera's -z
    (item,) = apply_stage(calibrated(tiny), 'covariance', [detection([0, 0, 1.0], rotation)])
    block = item.extras['pose_covariance'][3:, 3:]
    np.testing.assert_allclose(block, rotation @ np.diag(np.square(ROW[6:])) @ rotation.T)
    np.testing.assert_allclose(np.diag(block), [0.05**2, 0.3**2, 0.05**2], atol=1e-15)


def test_without_a_calibration_or_switched_off_no_covariance_is_attached(tiny):
    (plain,) = apply_stage(make_runner(tiny), 'covariance', [detection([0, 0, 1.0])])
    assert 'pose_covariance' not in plain.extras  # an older checkpoint: every row 0
    (off,) = apply_stage(calibrated(tiny, **{'covariance.enabled': False}), 'covariance', [detection([0, 0, 1.0])])
    assert 'pose_covariance' not in off.extras
    only_mugs = make_runner(tiny, **{'covariance.no_motion.mug': ROW})
    mug, bottle = apply_stage(only_mugs, 'covariance', [detection([0, 0, 1.0]), detection([0, 0, 1.0], class_id=1)])
    assert 'pose_covariance' in mug.extras and 'pose_covariance' not in bottle.extras


def test_frames_with_camera_motion_take_the_odometry_table_where_it_has_the_class(tiny):
    runner = calibrated(tiny, mode='video', **{'covariance.odometry.mug': ODOMETRY_ROW})
    items = [detection([0, 0, 1.0]), detection([0, 0, 1.0], class_id=1)]
    mug, bottle = apply_stage(runner, 'covariance', items, camera_motion=np.eye(4))
    assert mug.extras['pose_covariance'][2, 2] == pytest.approx(0.02**2)
    assert bottle.extras['pose_covariance'][2, 2] == pytest.approx(0.1**2)  # no odometry row: no_motion's
    (still,) = apply_stage(runner, 'covariance', [detection([0, 0, 1.0])], camera_motion=None)
    assert still.extras['pose_covariance'][2, 2] == pytest.approx(0.1**2)
    unfused = calibrated(tiny, mode='video', **{'covariance.odometry.mug': ODOMETRY_ROW, 'world_fusion.enabled': False})
    (alone,) = apply_stage(unfused, 'covariance', [detection([0, 0, 1.0])], camera_motion=np.eye(4))
    assert alone.extras['pose_covariance'][2, 2] == pytest.approx(0.1**2)


def test_every_detection_of_a_runner_step_carries_it(tiny):
    runner = calibrated(tiny, score_threshold=0.0, mode='single')
    K = np.array([[120.0, 0, 80], [0, 120.0, 60], [0, 0, 1]])
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    result = runner.step(Frame(image, K, 0.0))
    assert result.detections
    for item in result.detections:
        covariance = item.extras['pose_covariance']
        assert covariance.shape == (6, 6) and np.all(np.linalg.eigvalsh(covariance) > 0)


@pytest.mark.parametrize(
    'row, message',
    [
        ((0.01,) * 8, 'inference.covariance.no_motion.mug .*expected 9 numbers, got 8'),
        ((0.01,) * 8 + (-0.1,), 'inference.covariance.no_motion.mug .*>= 0'),
        ((0.0, 0.01, 0.01, 0.0, 0.01, 0.01, 0.1, 0.1, 0.1), 'no_motion.mug .*every sigma must be positive'),
        ((0.01,) * 6 + (0.1, 0.0, 0.1), 'no_motion.mug .*every sigma must be positive'),
        (('a',) * 9, 'inference.covariance.no_motion.mug .*expected 9 numbers'),
    ],
)
def test_bad_rows_are_named(tiny, row, message):
    with pytest.raises(ConfigError, match=message):
        make_runner(tiny, **{'covariance.no_motion.mug': row})
