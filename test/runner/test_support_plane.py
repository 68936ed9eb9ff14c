"""The shared support plane: consensus of the detections' up axes, carried over a video, given back to them."""

import math

import numpy as np
import pytest

from helpers.evaluation import eval_results
from helpers.generated_scenes import generate_scenes
from helpers.tiny_runner import apply_stage, make_runner
from seqpose_core.config_schema import ConfigError
from seqpose_core.detection import Detection
from seqpose_core.model import save_checkpoint
from seqpose_core.stages.support_plane import SupportPlane, consensus_up, level_detections, updated_plane, with_up

TABLE_UP = np.array([0.0, -math.cos(math.radians(40)), math.sin(math.radians(40))])  # seen from 40 deg above


def rotation_about(axis, degrees):
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = math.radians(degrees)
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def standing_rotation(yaw_degrees, tilt_axis=(1.0, 0.0, 0.0), tilt_degrees=0.0):
    """An object on the table of TABLE_UP, turned by yaw about it and tilted by tilt_degrees."""
    base = np.stack([[1.0, 0.0, 0.0], TABLE_UP, np.cross([1.0, 0.0, 0.0], TABLE_UP)], axis=1)
    return rotation_about(tilt_axis, tilt_degrees) @ rotation_about(TABLE_UP, yaw_degrees) @ base


def angle_deg(a, b):
    return math.degrees(math.acos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))


def detection(rotation, score=0.9):
    return Detection(
        class_id=6,
        score=score,
        rotation=rotation,
        translation=np.array([0.0, 0.0, 0.8]),
        size=np.array([0.1, 0.1, 0.1]),
    )


def test_consensus_ignores_an_object_on_its_side():
    tilts = [((1, 0, 0), 5), ((0, 0, 1), -5), ((1, 0, 1), 4), ((0, 1, 1), -4)]
    ups = [standing_rotation(30 * i, axis, degrees)[:, 1] for i, (axis, degrees) in enumerate(tilts)]
    ups.append(standing_rotation(0, (1, 0, 0), 90)[:, 1])  # lying down: 90 deg off
    up, weight = consensus_up(ups, [0.6, 0.7, 0.8, 0.9, 1.0], gate_deg=20)
    assert angle_deg(up, TABLE_UP) < 3.0  # each is 4-5 deg off
    assert weight == pytest.approx(3.0)  # the lying object did not vote


def test_without_votes_there_is_no_consensus_and_the_plane_fades():
    assert consensus_up(np.zeros((0, 3)), [], gate_deg=20) is None
    plane = SupportPlane(TABLE_UP, 2.0)
    decayed = updated_plane(plane, np.zeros((0, 3)), [], 20, 0.9)  # the past fades, the up stays
    assert np.allclose(decayed.up, TABLE_UP) and decayed.weight == pytest.approx(1.8)
    assert updated_plane(None, np.zeros((0, 3)), [], 20, 0.9) is None


def test_earlier_votes_decay_and_follow_the_camera():
    plane = SupportPlane(TABLE_UP, 4.0)
    tilted = standing_rotation(0, (1, 0, 0), 6)[:, 1]
    heavy_past = updated_plane(plane, [tilted], [1.0], gate_deg=20, decay=0.9)
    light_past = updated_plane(plane, [tilted], [1.0], gate_deg=20, decay=0.1)
    assert heavy_past.weight == pytest.approx(0.9 * 4 + 1) and light_past.weight == pytest.approx(0.1 * 4 + 1)
    assert angle_deg(heavy_past.up, TABLE_UP) < angle_deg(light_past.up, TABLE_UP) < 6.0
    turn = np.eye(4)
    turn[:3, :3] = rotation_about((0, 1, 0), 10)  # T_current_from_previous
    assert np.allclose(plane.moved(turn).up, turn[:3, :3] @ TABLE_UP) and plane.moved(None) is plane


def test_with_up_keeps_the_azimuth_and_stays_a_rotation():
    own = standing_rotation(35, (1, 0, 1), 8)
    leveled = with_up(own, TABLE_UP)
    assert np.allclose(leveled.T @ leveled, np.eye(3), atol=1e-9) and np.linalg.det(leveled) == pytest.approx(1.0)
    assert np.allclose(leveled[:, 1], TABLE_UP)
    assert np.allclose(leveled, standing_rotation(35), atol=0.1)  # the yaw survives, the tilt is gone
    assert angle_deg(leveled[:, 0], standing_rotation(35)[:, 0]) < angle_deg(own[:, 0], standing_rotation(35)[:, 0])


def test_level_detections_leaves_objects_beyond_the_gate():
    standing, lying = detection(standing_rotation(10, (1, 0, 0), 7)), detection(standing_rotation(0, (1, 0, 0), 80))
    lying_rotation = lying.rotation.copy()
    level_detections([standing, lying], SupportPlane(TABLE_UP, 1.0), gate_deg=20)
    assert np.allclose(standing.rotation[:, 1], TABLE_UP) and 'own_rotation' in standing.extras
    assert np.array_equal(lying.rotation, lying_rotation) and 'own_rotation' not in lying.extras


def frame_detections(seed):
    rng = np.random.default_rng(seed)
    return [
        detection(
            standing_rotation(rng.uniform(0, 360), rng.normal(size=3), rng.uniform(0, 6)), score=rng.uniform(0.3, 1.0)
        )
        for _ in range(4)
    ]


def test_video_mode_carries_the_plane_single_mode_does_not(tiny):
    video = make_runner(tiny, mode='video', **{'support_plane.gate_deg': 20, 'support_plane.decay': 0.9})
    apply_stage(video, 'support_plane', frame_detections(0))
    first = video.stage_states['support_plane']
    apply_stage(video, 'support_plane', frame_detections(1))
    assert first is not None and video.stage_states['support_plane'].weight > first.weight
    video.reset()
    assert video.stage_states['support_plane'] is None
    apply_stage(video, 'support_plane', frame_detections(2))
    video.configure(**{'support_plane.enabled': False})
    apply_stage(video, 'support_plane', frame_detections(3))
    assert video.stage_states['support_plane'] is None  # no stale estimate when switched back on

    single = make_runner(tiny, mode='single')
    detections = apply_stage(single, 'support_plane', frame_detections(0))
    assert single.stage_states['support_plane'] is None
    ups = [d.rotation[:, 1] for d in detections]
    assert all(np.allclose(up, ups[0]) for up in ups)  # one shared up
    assert angle_deg(ups[0], TABLE_UP) < 3.0


def test_support_plane_off_keeps_each_rotation(tiny):
    runner = make_runner(tiny, **{'support_plane.enabled': False})
    detections = frame_detections(2)
    before = [d.rotation.copy() for d in detections]
    apply_stage(runner, 'support_plane', detections)
    assert all(np.array_equal(d.rotation, r) for d, r in zip(detections, before))


@pytest.mark.parametrize(
    'setting, value, message',
    [
        ('gate_deg', 0.0, 'support_plane.gate_deg 0.0'),
        ('gate_deg', 95.0, 'support_plane.gate_deg 95.0'),
        ('decay', 1.0, 'support_plane.decay 1.0'),
    ],
)
def test_bad_settings_are_named(tiny, setting, value, message):
    name = f'support_plane.{setting}'
    with pytest.raises(ConfigError, match=message):
        make_runner(tiny, **{name: value})
    runner = make_runner(tiny)
    with pytest.raises(ConfigError, match=message):
        runner.configure(**{name: value})
    assert getattr(runner.cfg.support_plane, setting) != value  # the old settings stay


def test_eval_levels_rotations_only_and_the_flag_turns_it_off(tiny, tmp_path):
    """Through `seqpose eval` (the runner every path uses): the support plane changes rotations only, and the
    rotations it changed share one up per frame; --set inference.support_plane.enabled=false gives the plain ones."""
    config, model = tiny
    root = tmp_path / 'scenes'
    generate_scenes(root, scenes=2, frames=3, size='160x120', split='test', seed=8, objects='3-4')
    checkpoint = save_checkpoint(tmp_path / 'tiny.pt', model, config)
    outputs = {}
    for name, extra in (
        ('plain', ['--set', 'inference.support_plane.enabled=false']),
        ('level', ['--set', 'inference.support_plane.gate_deg=60']),
    ):
        outputs[name] = eval_results(checkpoint, root, tmp_path / name, 'mf', *extra)
    leveled = 0
    for plain, level in zip(outputs['plain'], outputs['level']):
        np.testing.assert_array_equal(plain['pred_RTs'][:, :3, 3], level['pred_RTs'][:, :3, 3])
        np.testing.assert_array_equal(plain['pred_scores'], level['pred_scores'])
        changed = np.abs(plain['pred_RTs'][:, :3, :3] - level['pred_RTs'][:, :3, :3]).max(axis=(1, 2)) > 1e-6
        ups = level['pred_RTs'][changed, :3, 1] / np.linalg.norm(level['pred_RTs'][changed, :3, 1], axis=1)[:, None]
        assert np.allclose(ups, ups[:1], atol=1e-6)
        leveled += int(changed.sum())
    assert outputs['plain'] and leveled > 0
