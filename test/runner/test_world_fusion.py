"""World fusion (seqpose_core.stages.world_fusion): with the camera's motion, a track's rays across frames give its
metric centre, which one frame cannot; without motion nothing changes; an object that moves starts again."""

import numpy as np
import pytest

from helpers.tiny_runner import apply_stage, make_runner
from seqpose_core.config_schema import ConfigError
from seqpose_core.detection import Detection
from seqpose_core.synth.scene import look_at

OBJECT = np.array([0.05, 0.02, 0.0])  # world, metres
K_CAMERA = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])


def orbit(frames, degrees_per_frame=0.5, distance=0.8):
    """camera_from_world (frames, 4, 4) circling the object at 35 deg elevation."""
    poses = []
    for index in range(frames):
        azimuth = np.radians(degrees_per_frame * index)
        eye = distance * np.array([np.cos(azimuth) * 0.82, 0.57, np.sin(azimuth) * 0.82])
        poses.append(look_at(eye, np.zeros(3)))
    return np.stack(poses)


def observed(camera_from_world, centre, depth_bias=1.2, size=0.1):
    """What a monocular model reports: the right viewing ray, the depth (and so the size) off by depth_bias."""
    in_camera = camera_from_world[:3, :3] @ centre + camera_from_world[:3, 3]
    return Detection(
        class_id=6,
        score=0.9,
        rotation=np.eye(3),
        translation=in_camera * depth_bias,
        size=np.full(3, size * depth_bias),
        track_id=7,
    )


def run(runner, cameras, centres, with_motion=True):
    published = []
    for index, camera in enumerate(cameras):
        motion = camera @ np.linalg.inv(cameras[index - 1]) if index and with_motion else None
        (detection,) = apply_stage(runner, 'world_fusion', [observed(camera, centres[index])], camera_motion=motion)
        published.append(detection)
    return published


def error(detection, camera, centre):
    return float(np.linalg.norm(detection.translation - (camera[:3, :3] @ centre + camera[:3, 3])))


def test_rays_across_frames_give_the_metric_centre_and_the_size_follows(tiny):
    runner = make_runner(tiny, mode='video')
    cameras = orbit(150)  # 75 deg of orbit: 5 s at 30 Hz
    published = run(runner, cameras, [OBJECT] * len(cameras))
    first, last = published[0], published[-1]
    assert error(first, cameras[0], OBJECT) > 0.12  # one frame: the model's depth, 20 % off
    assert error(last, cameras[-1], OBJECT) < 0.02  # the video: the rays meet at the object
    np.testing.assert_allclose(last.size, np.full(3, 0.1), rtol=0.05)  # metric size from the metric depth
    assert last.extras['fused_views'] == 150
    np.testing.assert_allclose(last.extras['model_translation'], observed(cameras[-1], OBJECT).translation)
    spread = [np.trace(d.extras['position_covariance']) for d in published[1:]]
    assert spread[-1] < 0.2 * spread[0]  # the uncertainty shrinks as evidence grows
    assert np.all(np.linalg.eigvalsh(last.extras['position_covariance']) > 0)


def test_without_camera_motion_or_in_single_mode_nothing_changes(tiny):
    cameras = orbit(20)
    for runner, with_motion in ((make_runner(tiny, mode='video'), False), (make_runner(tiny, mode='single'), True)):
        for camera, detection in zip(cameras, run(runner, cameras, [OBJECT] * 20, with_motion)):
            np.testing.assert_array_equal(detection.translation, observed(camera, OBJECT).translation)
            assert 'fused_views' not in detection.extras
    off = make_runner(tiny, mode='video', **{'world_fusion.enabled': False})
    (last,) = [run(off, cameras, [OBJECT] * 20)[-1]]
    np.testing.assert_array_equal(last.translation, observed(cameras[-1], OBJECT).translation)


def test_an_object_that_moves_restarts_its_track_within_half_a_second(tiny):
    runner = make_runner(tiny, mode='video')
    cameras = orbit(240)
    moved = OBJECT + np.array([0.25, 0.0, -0.1])  # picked up and put down 27 cm away
    centres = [OBJECT] * 150 + [moved] * 90
    published = run(runner, cameras, centres)
    assert error(published[149], cameras[149], OBJECT) < 0.02
    # never the stale place: the frames right after the move publish the model's own centre, then the new fusion
    after = [error(d, c, moved) for d, c in zip(published[150:], cameras[150:])]
    assert all(e < 0.2 for e in after)  # the model's 20 % depth error at most, never 27 cm
    assert max(after[15:]) < max(after[:3])  # within 0.5 s it fuses again from the new place
    assert published[150 + 15].extras.get('fused_views', 0) >= 2
    # the same instance keeps its depth bias: the new place starts at the depth the old fusion measured for it,
    # so it is within 5 cm once the move is seen (3 frames), not after the parallax of the next second
    assert max(after[3:]) < 0.05
    # without it, the new place starts at the model's depth (20 % off)
    alone = run(make_runner(tiny, mode='video', **{'world_fusion.carry_depth': False}), cameras, centres)
    assert error(alone[150 + 3], cameras[150 + 3], moved) > 0.1


@pytest.mark.parametrize('name, value', [('bearing_sigma', 0.0), ('bearing_correlation', 1.5), ('restart_after', 0)])
def test_bad_settings_are_named(tiny, name, value):
    with pytest.raises(ConfigError, match=f'inference.world_fusion.{name}'):
        make_runner(tiny, **{f'world_fusion.{name}': value})


def test_a_mugs_rotation_is_the_azimuth_most_views_agreed_on(tiny):
    """The handle shows in 60 % of the views: there the model has the azimuth, elsewhere it is 180 deg off. The
    fused rotation keeps the right one in every frame once the track has a few views; bottles are left alone."""
    runner = make_runner(tiny, mode='video')
    cameras = orbit(60)
    truth = look_at([0.3, 0.0, 0.4], [0.0, 0.0, 0.0])[:3, :3].T  # the mug's rotation in the world
    flip = np.diag([-1.0, 1.0, -1.0])  # 180 deg about its up axis
    rng = np.random.default_rng(0)
    wrong_frames = rng.random(60) < 0.4
    published = []
    for index, camera in enumerate(cameras):
        mug = observed(camera, OBJECT)
        mug.rotation = camera[:3, :3] @ truth @ (flip if wrong_frames[index] else np.eye(3))
        bottle = observed(camera, OBJECT + np.array([0.3, 0.0, 0.0]))
        bottle.class_id, bottle.track_id = 1, 8
        bottle_rotation = bottle.rotation.copy()
        motion = camera @ np.linalg.inv(cameras[index - 1]) if index else None
        mug, bottle = apply_stage(runner, 'world_fusion', [mug, bottle], camera_motion=motion)
        published.append(mug.rotation)
        np.testing.assert_array_equal(bottle.rotation, bottle_rotation)
    assert wrong_frames[10:].sum() >= 10
    for index in range(10, 60):
        np.testing.assert_allclose(cameras[index][:3, :3].T @ published[index], truth, atol=1e-6)


def test_a_well_fused_object_the_detector_misses_coasts_where_the_world_puts_it(tiny):
    runner = make_runner(tiny, mode='video', score_threshold=0.3, **{'world_fusion.coast_frames': 5})
    cameras = orbit(40)
    published = []
    for index, camera in enumerate(cameras):
        motion = camera @ np.linalg.inv(cameras[index - 1]) if index else None
        missed = 30 <= index < 38  # the detector misses the mug for 8 frames
        detections = [] if missed else [observed(camera, OBJECT)]
        published.append(
            apply_stage(
                runner,
                'world_fusion',
                detections,
                camera_motion=motion,
                image_rgb=np.zeros((480, 640, 3), np.uint8),
                K=K_CAMERA,
            )
        )
    coasted = [frames for frames in published[30:38]]
    # 0.9 x 0.9^k >= 0.3 for k <= 5 (coast_frames), then nothing: the threshold and the limit both hold
    assert [len(frames) for frames in coasted] == [1, 1, 1, 1, 1, 0, 0, 0]
    first = coasted[0][0]
    assert first.track_id == 7 and first.extras['coasted_frames'] == 1 and first.score == pytest.approx(0.9 * 0.9)

    def in_world(detection, camera):
        return np.linalg.inv(camera)[:3, :3] @ detection.translation + np.linalg.inv(camera)[:3, 3]

    # where the world fusion last put it (not where the model would, 20 % deeper)
    np.testing.assert_allclose(in_world(first, cameras[30]), in_world(published[29][0], cameras[29]), atol=1e-9)
    assert error(first, cameras[30], OBJECT) < 0.5 * error(observed(cameras[30], OBJECT), cameras[30], OBJECT)
    assert len(published[38]) == 1 and 'coasted_frames' not in published[38][0].extras
