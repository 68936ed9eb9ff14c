"""Greedy matching of predictions to GT, one image and class at a time, for many thresholds at once.

Both of the reference's matchers reduce to the same rule: predictions are visited by descending score; each
takes, among the GT not yet taken at that threshold, the first one in its own preference order that is
acceptable at that threshold (for 3D IoU: order by descending IoU, acceptable = IoU > threshold, NaN never;
for pose: order by ascending degrees + cm, acceptable = not above either threshold). Groups of the same shape
(predictions x GT) are stacked, so the only Python loop is over the prediction rank.
"""

import numpy as np


def greedy_match(preference, acceptable):
    """preference: (B, P, G) GT indices in the order each prediction tries them.
    acceptable(rank) -> (B, T, G) bool: may the prediction at `rank` take each GT, at each of T thresholds.

    Returns (pred_matched (B, P, T), gt_matched (B, T, G)) boolean arrays.
    """
    num_groups, num_pred, num_gt = preference.shape
    pred_matched = None
    gt_matched = None
    for rank in range(num_pred):
        ok = acceptable(rank)
        if gt_matched is None:
            gt_matched = np.zeros(ok.shape, dtype=bool)
            pred_matched = np.zeros((num_groups, num_pred, ok.shape[1]), dtype=bool)
        order = np.broadcast_to(preference[:, rank, None, :], ok.shape)
        available = np.take_along_axis(ok, order, axis=2) & ~np.take_along_axis(gt_matched, order, axis=2)
        found = available.any(axis=2)
        chosen = np.take_along_axis(order, available.argmax(axis=2)[:, :, None], axis=2)
        taken = np.take_along_axis(gt_matched, chosen, axis=2) | found[:, :, None]
        np.put_along_axis(gt_matched, chosen, taken, axis=2)
        pred_matched[:, rank] = found
    return pred_matched, gt_matched


def iou_acceptable(ious, thresholds):
    """acceptable(rank) for a (B, P, G) IoU matrix: IoU strictly above each threshold (compared in the IoU's
    dtype, as numpy compares a float32 IoU with a Python float threshold)."""
    thresholds = np.asarray(thresholds, dtype=ious.dtype)
    return lambda rank: ious[:, rank, None, :] > thresholds[None, :, None]


def pose_acceptable(degrees, centimetres, degree_thresholds, shift_thresholds):
    """acceptable(rank) over the flattened (degree, shift) grid, written as the reference's `not (err > thr)`
    so that a NaN error is accepted exactly where the reference accepts it."""
    grid_degrees = np.repeat(np.asarray(degree_thresholds, dtype=np.float64), len(shift_thresholds))
    grid_shifts = np.tile(np.asarray(shift_thresholds, dtype=np.float64), len(degree_thresholds))
    return lambda rank: (
        ~(degrees[:, rank, None, :] > grid_degrees[None, :, None])
        & ~(centimetres[:, rank, None, :] > grid_shifts[None, :, None])
    )
