"""benchmarks/score_threshold.py: detections per object, precision and recall per threshold, and the ceiling's."""

import json
import pickle
import runpy

import numpy as np
import pytest

MODULE = runpy.run_path('benchmarks/score_threshold.py')


def pose(translation, diagonal=0.3):
    rt = np.eye(4)
    rt[:3, :3] *= diagonal
    rt[:3, 3] = translation
    return rt


def image(gt_classes, gt_poses, predictions):
    """predictions: (class id, score, 4x4 pose)."""
    return {
        'gt_class_ids': np.asarray(gt_classes),
        'gt_RTs': np.stack(gt_poses),
        'gt_scales': np.full((len(gt_classes), 3), 0.5),
        'gt_handle_visibility': np.ones(len(gt_classes)),
        'pred_class_ids': np.array([p[0] for p in predictions], dtype=np.int64),
        'pred_scores': np.array([p[1] for p in predictions]),
        'pred_RTs': np.stack([p[2] for p in predictions]) if predictions else np.zeros((0, 4, 4)),
        'pred_scales': np.full((len(predictions), 3), 0.5),
    }


def laptop_and_camera():
    return image(
        [5, 3],
        [pose([0.0, 0.0, 0.8]), pose([0.3, 0.0, 0.9])],
        [
            (5, 0.9, pose([0.02, 0.0, 0.8])),  # the laptop
            (5, 0.8, pose([0.0, 0.03, 0.8])),  # its duplicate: the laptop is taken already
            (2, 0.4, pose([0.3, 0.0, 0.9])),  # a bowl on the camera: wrong class
            (3, 0.2, pose([0.3, 0.0, 1.05])),  # the camera, 15 cm too far
        ],
    )


def test_each_object_is_found_once_by_class_and_distance():
    rows = {row['threshold']: row for row in MODULE['table']([laptop_and_camera()], [0.1, 0.5, 0.95])}
    assert rows[0.5]['precision'] == 0.5 and rows[0.5]['recall'] == 0.5 and rows[0.5]['detections_per_object'] == 1
    assert rows[0.1]['precision'] == 0.25 and rows[0.1]['recall'] == 0.5 and rows[0.1]['detections_per_object'] == 2
    assert np.isnan(rows[0.95]['precision']) and rows[0.95]['recall'] == 0


def test_ceiling_row_lacks_only_the_scale(tmp_path, capsys):
    # two cans, 0.1 and 0.3 m across, 1 m away: at the class's mean size (0.2 m) both slide along their rays by
    # more than 10 cm, so even the ideal monocular predictor finds neither
    cans = image([4, 4], [pose([0.0, 0.0, 1.0], 0.1), pose([0.2, 0.0, 1.0], 0.3)], [])
    results = tmp_path / 'results'
    results.mkdir()
    for index, result in enumerate([laptop_and_camera(), cans]):
        with open(results / f'results_test_scene_1_{index:04d}.pkl', 'wb') as stream:
            pickle.dump(result, stream)
    assert MODULE['main']([str(tmp_path), '--thresholds', '0.5', '--json', str(tmp_path / 't.json')]) == 0
    assert 'class-mean reference' in capsys.readouterr().out
    written = json.loads((tmp_path / 't.json').read_text())
    ceiling = written['class_mean_reference']
    assert ceiling['detections_per_object'] == 1.0
    assert ceiling['precision'] == pytest.approx(0.5) and ceiling['recall'] == pytest.approx(0.5)
    assert written['thresholds'][0]['recall'] == pytest.approx(0.25)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(SystemExit):
        MODULE['main']([str(tmp_path / 'nowhere')])


def test_breakdown_says_what_each_detection_is():
    assert MODULE['detection_kinds'](laptop_and_camera(), 0.1) == ['correct', 'duplicate', 'wrong_class', 'off_10_25cm']
    lost = image([5], [pose([0.0, 0.0, 0.8])], [(5, 0.9, pose([0.0, 0.0, 1.2]))])
    assert MODULE['detection_kinds'](lost, 0.1) == ['far']
    shares = MODULE['kind_shares']([laptop_and_camera(), lost], 0.5)
    assert shares == {
        'correct': pytest.approx(1 / 3),
        'duplicate': pytest.approx(1 / 3),
        'wrong_class': 0.0,
        'off_10_25cm': 0.0,
        'far': pytest.approx(1 / 3),
    }
