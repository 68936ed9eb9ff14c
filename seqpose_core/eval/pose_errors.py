"""Rotation and translation errors exactly as the reference's `compute_RT_errors`, vectorised over pairs.

The scale is removed as sR / cbrt(det(sR)) in the prediction's own dtype; a symmetric object (decided by the
GT) is compared by the angle between the y axes only. Batched matmuls and row-wise dots through `matmul`
give the same bits as the reference's per-pair BLAS calls (checked in the tests), so thresholds at integer
degrees and half centimetres see the same values.
"""

import numpy as np


def unscaled_rotations(rts):
    """(n, 4, 4) sRT -> (n, 3, 3) R = sR / cbrt(det(sR)), in the dtype of `rts`."""
    scaled = rts[:, :3, :3]
    return scaled / np.cbrt(np.linalg.det(scaled))[:, None, None]


def _row_dot(a, b):
    return np.matmul(a[:, None, :], b[:, :, None])[:, 0, 0]


def pose_errors(rotations_pred, translations_pred, rotations_gt, translations_gt, symmetric):
    """Paired (n,) errors: (degrees, centimetres) as float64 arrays, like the reference's `overlaps[i, j, :]`.

    Inputs keep their dtypes (a float32 prediction is compared in float32, as the reference does).
    """
    num = len(rotations_pred)
    degrees = np.zeros(num)
    symmetric = np.asarray(symmetric, dtype=bool)
    full = ~symmetric
    if full.any():
        relative = rotations_pred[full] @ np.swapaxes(rotations_gt[full], 1, 2)
        trace = relative[:, 0, 0] + relative[:, 1, 1] + relative[:, 2, 2]
        degrees[full] = np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0)) * 180 / np.pi
    if symmetric.any():
        # the reference multiplies by an integer y axis, which lifts float32 rotations to float64
        y_pred = rotations_pred[symmetric][:, :, 1].astype(np.float64)
        y_gt = rotations_gt[symmetric][:, :, 1].astype(np.float64)
        cos = _row_dot(y_pred, y_gt) / (np.sqrt(_row_dot(y_pred, y_pred)) * np.sqrt(_row_dot(y_gt, y_gt)))
        degrees[symmetric] = np.arccos(np.clip(cos, -1.0, 1.0)) * 180 / np.pi
    difference = translations_pred - translations_gt
    centimetres = np.sqrt(_row_dot(difference, difference)) * 100
    return degrees, centimetres.astype(np.float64)
