"""benchmarks/rotation_errors.py: the rotation error split into the up-axis tilt and the azimuth about it."""

import json
import pickle
import runpy

import numpy as np
import pytest

from seqpose_core.eval.pose_errors import pose_errors

MODULE = runpy.run_path('benchmarks/rotation_errors.py')


def rotation_x(degrees):
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rotation_y(degrees):
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def pose(rotation, translation, scale=0.2):
    rt = np.eye(4)
    rt[:3, :3] = scale * rotation
    rt[:3, 3] = translation
    return rt


@pytest.mark.parametrize('tilt, azimuth', [(0, 30), (0, -120), (0, 180), (15, 40), (25, -170), (20, 0)])
def test_tilt_and_azimuth_recover_a_swing_after_a_twist(tilt, azimuth):
    gt = rotation_y(35) @ rotation_x(-50)  # any object orientation
    pred = gt @ rotation_x(tilt) @ rotation_y(azimuth)  # in the object's frame: twist, then swing
    got_tilt, got_azimuth = MODULE['tilt_and_azimuth'](pred[None], gt[None])
    np.testing.assert_allclose(got_tilt, [tilt], atol=1e-6)
    assert abs((got_azimuth[0] - azimuth + 180) % 360 - 180) < 1e-6
    # the two together make the protocol's angle for a pure twist or a pure swing
    degrees, _ = pose_errors(pred[None], np.zeros((1, 3)), gt[None], np.zeros((1, 3)), [False])
    if tilt == 0 or azimuth == 0:
        assert degrees[0] == pytest.approx(abs(tilt) + abs(azimuth), abs=1e-5)


def one_image():
    gt_rotation = rotation_y(10)
    # GT: a laptop, a camera, a bottle (symmetric) and a mug nobody found
    gt = [
        pose(gt_rotation, [0.0, 0.0, 0.8]),
        pose(gt_rotation, [0.3, 0.0, 0.9]),
        pose(gt_rotation, [-0.3, 0.0, 0.9]),
        pose(gt_rotation, [0.0, 0.2, 1.0]),
    ]
    predictions = [
        (5, 0.9, pose(gt_rotation @ rotation_y(180), [0.02, 0.0, 0.8])),  # laptop flipped front to back
        (5, 0.8, pose(gt_rotation @ rotation_y(20), [0.0, 0.0, 0.95])),  # further one 15 cm away: not taken
        (3, 0.7, pose(gt_rotation @ rotation_y(-60), [0.3, 0.0, 0.92])),  # camera turned sideways
        (1, 0.6, pose(gt_rotation @ rotation_x(12) @ rotation_y(90), [-0.3, 0.0, 0.88])),  # bottle: twist is free
        (6, 0.01, pose(gt_rotation, [0.0, 0.2, 1.0])),  # the mug, but under the threshold
        (2, 0.9, pose(gt_rotation, [0.0, 0.2, 1.0])),  # a bowl on the mug: wrong class
    ]
    return {
        'gt_class_ids': np.array([5, 3, 1, 6]),
        'gt_RTs': np.stack(gt),
        'gt_scales': np.full((4, 3), 0.5),
        'gt_handle_visibility': np.ones(4, dtype=np.int64),
        'pred_class_ids': np.array([p[0] for p in predictions]),
        'pred_scores': np.array([p[1] for p in predictions]),
        'pred_RTs': np.stack([p[2] for p in predictions]),
        'pred_scales': np.full((len(predictions), 3), 0.5),
    }


def test_table_takes_the_nearest_detection_of_the_class_and_splits_its_error():
    rows = {row['class']: row for row in MODULE['rotation_table']([one_image()], threshold=0.05)}
    assert set(rows) == {'bottle', 'camera', 'laptop', 'mug', 'all'}
    assert rows['laptop']['found'] == 1 and rows['laptop']['median_azimuth'] == pytest.approx(180)
    assert rows['laptop']['azimuth_bins'] == [0, 0, 0, 1]
    assert rows['camera']['median_azimuth'] == pytest.approx(60) and rows['camera']['azimuth_bins'] == [0, 0, 1, 0]
    assert rows['bottle']['asymmetric'] == 0 and rows['bottle']['median_error'] == pytest.approx(12)
    assert rows['bottle']['within_10deg'] == 0.0
    assert rows['mug']['found'] == 0 and np.isnan(rows['mug']['median_error'])
    assert rows['all']['objects'] == 4 and rows['all']['found'] == 3 and rows['all']['asymmetric'] == 2


def test_benchmark_prints_and_writes_the_table(tmp_path, capsys):
    results = tmp_path / 'results'
    results.mkdir()
    with open(results / 'results_test_scene_1_0000.pkl', 'wb') as stream:
        pickle.dump(one_image(), stream)
    assert MODULE['main']([str(tmp_path), '--json', str(tmp_path / 'rotation.json')]) == 0
    printed = capsys.readouterr().out
    assert 'laptop' in printed and 'azimuth' in printed
    written = {row['class']: row for row in json.loads((tmp_path / 'rotation.json').read_text())}
    assert written['camera']['found'] == 1


def test_benchmark_names_a_missing_folder(tmp_path):
    with pytest.raises(SystemExit):
        MODULE['main']([str(tmp_path / 'nowhere')])
