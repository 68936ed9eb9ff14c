"""Hand-computed cases for the evaluator: values follow from the protocol by hand, not from running it."""

import math

import numpy as np
import pytest

from seqpose_core.eval import evaluate_results, score_results
from seqpose_core.eval.protocol import DEGREE_THRESHOLDS, METRIC_NAMES, SHIFT_THRESHOLDS_CM

CAMERA, BOTTLE, MUG = 3, 1, 6


def _rt(rotation=np.eye(3), translation=(0, 0, 1.0), scale=0.2):
    rt = np.eye(4)
    rt[:3, :3] = np.asarray(rotation) * scale
    rt[:3, 3] = translation
    return rt


def _rot(axis, degrees):
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    if axis == 'y':
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _image(gt, preds, visibility=None):
    """gt: list of (class, rt, scales); preds: list of (class, rt, scales, score)."""
    return {
        'gt_class_ids': np.array([g[0] for g in gt], dtype=np.int32),
        'gt_RTs': np.array([g[1] for g in gt]).reshape(-1, 4, 4),
        'gt_scales': np.array([g[2] for g in gt]).reshape(-1, 3),
        'gt_handle_visibility': np.ones(len(gt)) if visibility is None else np.asarray(visibility),
        'pred_class_ids': np.array([p[0] for p in preds], dtype=np.int32),
        'pred_RTs': np.array([p[1] for p in preds]).reshape(-1, 4, 4),
        'pred_scales': np.array([p[2] for p in preds]).reshape(-1, 3),
        'pred_scores': np.array([p[3] for p in preds], dtype=np.float64),
    }


def _scene_all_classes(rotation_of=lambda c: np.eye(3)):
    """One image per class, one object each, boxes well apart."""
    images = []
    for class_id in range(1, 7):
        rt = _rt(rotation_of(class_id), translation=(0.1 * class_id, 0, 1.0))
        images.append((class_id, rt, np.array([0.5, 0.7, 0.5])))
    return images


def test_perfect_predictions_give_100_everywhere():
    results = [_image([g], [(g[0], g[1], g[2], 0.9)]) for g in _scene_all_classes(lambda c: _rot('x', 20 * c))]
    metrics = evaluate_results(results)
    for row, values in metrics.items():
        for name in METRIC_NAMES:
            assert values[name] == pytest.approx(100.0), f'{row} {name} = {values[name]}'


def test_rotation_error_between_thresholds():
    """A camera (not symmetric) predicted 7.5 deg off, exact translation: AP 0 up to 7 deg, 100 from 8 deg."""
    gt_rt = _rt()
    pred_rt = _rt(_rot('x', 7.5))
    curves = score_results([_image([(CAMERA, gt_rt, [0.5, 0.7, 0.5])], [(CAMERA, pred_rt, [0.5, 0.7, 0.5], 0.8)])])
    no_shift_limit = SHIFT_THRESHOLDS_CM.index(100)
    camera_row = CAMERA - 1
    for index, degrees in enumerate(DEGREE_THRESHOLDS):
        expected = 0.0 if degrees <= 7 else 1.0
        assert curves.pose[camera_row, index, no_shift_limit] == expected, f'{degrees} deg'
    metrics = evaluate_results([_image([(CAMERA, gt_rt, [0.5, 0.7, 0.5])], [(CAMERA, pred_rt, [0.5, 0.7, 0.5], 0.8)])])
    assert metrics['camera']['5deg5cm'] == 0.0 and metrics['camera']['10deg5cm'] == 100.0
    # the mean is over all six classes; the five without objects score 0
    assert metrics['mean']['10deg5cm'] == pytest.approx(100.0 / 6)


@pytest.mark.parametrize('class_id, visibility', [(BOTTLE, 1), (2, 1), (4, 1), (MUG, 0)])
def test_symmetric_objects_rotated_about_y_lose_nothing(class_id, visibility):
    """Rotating the prediction about its y axis (54 deg: a multiple of the 18 deg symmetry search) changes no
    metric for symmetric classes and for mugs without a visible handle."""
    gt_rt = _rt(_rot('x', 30))
    pred_rt = gt_rt.copy()
    pred_rt[:3, :3] = gt_rt[:3, :3] @ _rot('y', 54)
    scales = [0.5, 0.7, 0.4]
    metrics = evaluate_results([_image([(class_id, gt_rt, scales)], [(class_id, pred_rt, scales, 0.5)], [visibility])])
    name = ('bottle', 'bowl', 'camera', 'can', 'laptop', 'mug')[class_id - 1]
    for metric in METRIC_NAMES:
        assert metrics[name][metric] == pytest.approx(100.0), metric


def test_mug_with_visible_handle_is_not_symmetric():
    gt_rt = _rt()
    pred_rt = _rt(_rot('y', 54))
    metrics = evaluate_results([_image([(MUG, gt_rt, [0.5, 0.7, 0.4])], [(MUG, pred_rt, [0.5, 0.7, 0.4], 0.5)], [1])])
    assert metrics['mug']['10deg'] == 0.0 and metrics['mug']['10cm'] == 100.0


def test_higher_scoring_false_positive_lowers_ap_by_hand_computed_amount():
    """Two cameras predicted perfectly (scores 0.9, 0.8) and a false positive far away scored 0.95.
    Ranked: FP, TP, TP -> precision 0, 1/2, 2/3 at recall 0, 1/2, 1; envelope 2/3 everywhere;
    AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3 for the IoU metrics. The pose metrics only see predictions matched at
    IoU 0.1 (use_matches_for_pose), so the far false positive leaves them at 100."""
    scales = [0.5, 0.7, 0.5]
    gt = [(CAMERA, _rt(translation=(-0.3, 0, 1)), scales), (CAMERA, _rt(translation=(0.3, 0, 1)), scales)]
    preds = [
        (CAMERA, gt[0][1], scales, 0.9),
        (CAMERA, gt[1][1], scales, 0.8),
        (CAMERA, _rt(translation=(0, 0.5, 2)), scales, 0.95),
    ]
    metrics = evaluate_results([_image(gt, preds)])
    for metric in METRIC_NAMES:
        expected = 200.0 / 3 if metric.startswith('IoU') else 100.0
        assert metrics['camera'][metric] == pytest.approx(expected), metric
    # the same false positive scored below both true positives costs nothing
    preds[2] = preds[2][:3] + (0.1,)
    assert evaluate_results([_image(gt, preds)])['camera']['IoU50'] == pytest.approx(100.0)


def test_missed_object_caps_recall():
    """One of two cameras found: precision 1 up to recall 1/2, then the appended recall 1 scores 0 -> AP 1/2."""
    scales = [0.5, 0.7, 0.5]
    gt = [(CAMERA, _rt(translation=(-0.3, 0, 1)), scales), (CAMERA, _rt(translation=(0.3, 0, 1)), scales)]
    metrics = evaluate_results([_image(gt, [(CAMERA, gt[0][1], scales, 0.9)])])
    assert metrics['camera']['IoU25'] == pytest.approx(50.0)
    assert metrics['camera']['5deg2cm'] == pytest.approx(100.0)  # pose recall counts only GT matched at IoU 0.1


def test_legacy_and_exact_iou_differ_on_a_known_shift():
    """Two equal axis-aligned cubes of side 0.2 m, shifted by 0.1 m along x: true IoU = 0.5 / 1.5 = 1/3, below
    50 but above 25. The legacy IoU (per-corner spans) gives another value; both are reported."""
    cube = [1 / math.sqrt(3)] * 3
    scale = 0.2 * math.sqrt(3)
    gt_rt, pred_rt = _rt(scale=scale), _rt(translation=(0.1, 0, 1.0), scale=scale)
    metrics = evaluate_results([_image([(CAMERA, gt_rt, cube)], [(CAMERA, pred_rt, cube, 0.9)])])
    assert metrics['camera']['IoU25_exact'] == 100.0 and metrics['camera']['IoU50_exact'] == 0.0
    curves = score_results([_image([(CAMERA, gt_rt, cube)], [(CAMERA, pred_rt, cube, 0.9)])])
    # exact AP is 1 exactly for thresholds below 1/3 and 0 from 0.34 on
    assert curves.iou_exact[CAMERA - 1, 33] == 1.0 and curves.iou_exact[CAMERA - 1, 34] == 0.0


def test_depth_oracle_slides_predictions_along_their_rays_onto_the_ground_truth():
    from seqpose_core.eval.depth_oracle import slide_to_ground_truth_depth

    gt = np.eye(4)
    gt[:3, :3] *= 0.2
    gt[:3, 3] = (0.1, -0.05, 0.8)
    twice = gt.copy()
    twice[:3, :] *= 2.0  # twice as large and twice as far: the same image
    result = {
        'gt_class_ids': np.array([6]),
        'gt_RTs': gt[None],
        'gt_scales': np.full((1, 3), 0.5),
        'gt_handle_visibility': np.ones(1),
        'pred_class_ids': np.array([6, 2]),
        'pred_RTs': np.stack([twice, twice]),
        'pred_scales': np.full((2, 3), 0.5),
        'pred_scores': np.array([0.9, 0.8]),
    }
    slid = slide_to_ground_truth_depth(result)
    np.testing.assert_allclose(slid['pred_RTs'][0], gt, atol=1e-12)
    np.testing.assert_array_equal(slid['pred_RTs'][1], twice)  # a class without GT stays where it was
    np.testing.assert_array_equal(result['pred_RTs'][0], twice)  # the input is not modified
    assert evaluate_results([result])['mug']['IoU50'] == 0.0
    assert evaluate_results([slid])['mug']['IoU50'] == 100.0


def test_overlays_draw_one_box_per_object_and_the_false_positives():
    from seqpose_core.detection import Detection
    from seqpose_core.visualize import overlay_predictions

    def detection(class_id, score, x):
        return Detection(
            class_id=class_id,
            score=score,
            rotation=np.eye(3),
            translation=np.array([x, 0.0, 1.0]),
            size=np.full(3, 0.1),
        )

    mug, can = detection(6, 1.0, 0.0), detection(4, 1.0, 0.3)
    duplicates = [detection(6, 0.9, 0.02), detection(6, 0.8, 0.05), detection(6, 0.2, -0.03)]
    weak_can = detection(4, 0.1, 0.32)  # right, but below the threshold: still drawn
    false_positive, faint_false = detection(2, 0.5, -0.4), detection(2, 0.1, -0.6)
    drawn = overlay_predictions(duplicates + [weak_can, false_positive, faint_false], [mug, can], min_score=0.3)
    assert drawn == [duplicates[0], false_positive, weak_can]
    assert overlay_predictions(duplicates, []) == duplicates[:2]  # no ground truth: the confident ones
