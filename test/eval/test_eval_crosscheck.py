"""The vectorised evaluator against a slow, literal loop version of object-deformnet's compute_mAP
(test/eval_slow_reference.py), on random prediction sets: every legacy AP curve must agree to 1e-4 percent,
and the per-pair legacy IoU and pose errors bit for bit."""

import numpy as np
import pytest

from helpers.eval_slow_reference import legacy_iou, pose_error, slow_compute_map
from seqpose_core.eval import score_results
from seqpose_core.eval.evaluator import _ObjectTable, _pair_ious, _pair_pose_errors
from seqpose_core.eval.legacy_iou import legacy_extents_rotated
from seqpose_core.eval.protocol import is_symmetric
from seqpose_core.eval.synthetic import synthetic_results

TOLERANCE_PERCENT = 1e-4


def _as_dtype(results, keys, dtype):
    for result in results:
        for key in keys:
            result[key] = result[key].astype(dtype)
    return results


def _random_sets():
    """Named prediction sets that stress different parts of the protocol."""
    rng = np.random.default_rng(7)
    sets = {
        'noisy': synthetic_results(30, seed=1),
        # scores rounded to one decimal: many ties, decided by the reference's argsort calls
        'tied_scores': synthetic_results(30, seed=2, score_decimals=1),
        # large errors: matches spread over the whole threshold range, many false positives
        'rough': synthetic_results(
            30, seed=3, rotation_noise_deg=30, translation_noise_m=0.08, size_noise=0.4, false_positives=4
        ),
        # float32 GT as SPD's label files store it; float32 everything
        'float32_gt': _as_dtype(synthetic_results(25, seed=4), ('gt_RTs', 'gt_scales'), np.float32),
        'float32_all': _as_dtype(
            synthetic_results(25, seed=5, score_decimals=2),
            ('gt_RTs', 'gt_scales', 'pred_RTs', 'pred_scales', 'pred_scores'),
            np.float32,
        ),
    }
    # images without GT, without predictions, without either; a class that has predictions but no GT (NaN AP)
    sparse = synthetic_results(20, seed=6, objects=(0, 3), false_positives=2.0)
    for result in sparse:
        keep = result['gt_class_ids'] != 5
        for key in ('gt_class_ids', 'gt_RTs', 'gt_scales', 'gt_handle_visibility'):
            result[key] = result[key][keep]
    sparse[0] = {key: value[:0] for key, value in sparse[0].items()}
    sets['sparse_no_laptop_gt'] = sparse
    # duplicated GT (identical boxes) and duplicated predictions: IoU ties between GT
    dup = synthetic_results(15, seed=8)
    for result in dup:
        for prefix in ('gt', 'pred'):
            for key in [k for k in result if k.startswith(prefix)]:
                result[key] = np.concatenate([result[key], result[key][:2]])
    sets['duplicates'] = dup
    del rng
    return sets


RANDOM_SETS = _random_sets()


@pytest.mark.filterwarnings('ignore:invalid value encountered:RuntimeWarning')
@pytest.mark.parametrize('name', sorted(RANDOM_SETS))
def test_legacy_curves_match_slow_reference(name):
    results = RANDOM_SETS[name]
    slow_iou, slow_pose = slow_compute_map(results)
    curves = score_results(results)
    # row 0 of the reference is the background class
    np.testing.assert_array_equal(np.isnan(curves.iou), np.isnan(slow_iou[1:]))
    np.testing.assert_array_equal(np.isnan(curves.pose), np.isnan(slow_pose[1:]))
    iou_diff = np.nanmax(np.abs(100 * curves.iou - 100 * slow_iou[1:]))
    pose_diff = np.nanmax(np.abs(100 * curves.pose - 100 * slow_pose[1:]))
    assert iou_diff <= TOLERANCE_PERCENT, f'{name}: legacy IoU AP differs by {iou_diff} percent'
    assert pose_diff <= TOLERANCE_PERCENT, f'{name}: pose AP differs by {pose_diff} percent'
    # the sets must exercise the metrics, not just agree on zeros
    assert np.nanmax(curves.iou[:, 25]) > 0.2 and np.nanmax(curves.pose[:, 30, 20]) > 0.1


def test_sparse_set_has_nan_for_class_without_gt():
    curves = score_results(RANDOM_SETS['sparse_no_laptop_gt'])
    assert np.isnan(curves.iou[4]).all() and np.isnan(curves.iou[-1]).all()


def _all_pairs(results):
    """Every same-image, same-class (prediction, GT) pair as global indices."""
    preds, gts = _ObjectTable(results, 'pred'), _ObjectTable(results, 'gt')
    pairs = []
    for image, result in enumerate(results):
        for i, class_id in enumerate(result['pred_class_ids']):
            for j in np.flatnonzero(result['gt_class_ids'] == class_id):
                pairs.append((image, i, j, preds.offsets[image] + i, gts.offsets[image] + j))
    return preds, gts, pairs


@pytest.mark.parametrize('name', ['noisy', 'float32_gt', 'float32_all'])
def test_pairwise_legacy_iou_and_pose_errors_are_bit_identical(name):
    results = RANDOM_SETS[name]
    preds, gts, pairs = _all_pairs(results)
    assert len(pairs) > 50
    visibility = np.concatenate([r['gt_handle_visibility'] for r in results])
    visibility = np.where(gts.class_ids == 6, visibility, 1)
    symmetric = is_symmetric(gts.class_ids, visibility)
    pred_ids = np.array([p[3] for p in pairs])
    gt_ids = np.array([p[4] for p in pairs])
    all_preds = np.arange(len(preds.class_ids))
    rotated = legacy_extents_rotated(preds.rts, preds.scales)
    fast_iou, _ = _pair_ious(
        pred_ids,
        gt_ids,
        preds,
        gts,
        symmetric,
        preds.legacy_extents(all_preds),
        all_preds,
        rotated,
        gts.legacy_extents(np.arange(len(gts.class_ids))),
        exact=False,
    )
    degrees, centimetres = _pair_pose_errors(
        pred_ids,
        gt_ids,
        preds.rotations_translations(all_preds),
        gts.rotations_translations(np.arange(len(gts.class_ids))),
        symmetric,
    )
    for k, (image, i, j, _, g) in enumerate(pairs):
        r = results[image]
        class_id = int(r['gt_class_ids'][j])
        handle = visibility[g]
        expected = np.float32(
            legacy_iou(
                np.array(r['pred_RTs'])[i],
                np.array(r['gt_RTs'])[j],
                r['pred_scales'][i],
                r['gt_scales'][j],
                class_id,
                handle,
            )
        )
        assert fast_iou[k] == expected, f'pair {k}: legacy IoU {fast_iou[k]!r} != {expected!r}'
        errors = pose_error(np.array(r['pred_RTs'])[i], np.array(r['gt_RTs'])[j], class_id, handle)
        assert degrees[k] == errors[0] and centimetres[k] == errors[1], f'pair {k}: pose errors differ'
