"""The legacy 3D IoU that the RGB category-level papers report (NOCS / object-deformnet `compute_3d_IoU`),
vectorised and reproduced bit for bit.

It is not a box IoU: the reference takes min/max of the transformed corner array (3, 8) over axis 0, i.e. over
x, y, z of each corner, so its "extents" are 8 per-corner spans (max - min of a corner's coordinates) and its
"volume" is their product (hughw19/NOCS_CVPR2019 issue 47). We keep every arithmetic step in the order and
dtype the reference uses (float32 inputs stay float32, batched matmuls give the same bits as per-item ones,
products run over the 8 corners in the same order), because the result is stored in float32 and compared
against thresholds in float32, where a last-bit difference can move a match.
"""

import numpy as np

from .protocol import NUM_SYMMETRY_ROTATIONS, y_rotations

# corner order of the reference's box (x, y, z signs); the per-corner spans are multiplied in this order
_CORNER_SIGNS = np.array(
    [[+1, +1, +1], [+1, +1, -1], [-1, +1, +1], [-1, +1, -1], [+1, -1, +1], [+1, -1, -1], [-1, -1, +1], [-1, -1, -1]],
    dtype=np.float64,
)
_Y_ROTATIONS = y_rotations(NUM_SYMMETRY_ROTATIONS)


def _homogeneous_corners(sizes):
    """(n, 3) sizes -> (n, 4, 8) homogeneous corner columns in the sizes' dtype (float32 stays float32)."""
    half = sizes / 2  # exact, like the reference's size[k] / 2
    corners = _CORNER_SIGNS.astype(sizes.dtype)[None] * half[:, None, :]  # (n, 8, 3)
    ones = np.ones((len(sizes), 1, 8), dtype=np.result_type(sizes.dtype, np.float32))
    return np.concatenate([np.swapaxes(corners, 1, 2).astype(ones.dtype), ones], axis=1)


def _spans(points_h):
    """(..., 4, 8) transformed homogeneous corners -> per-corner max and min over x, y, z, and their "volume"."""
    points = points_h[..., :3, :] / points_h[..., 3:4, :]
    maxs, mins = points.max(axis=-2), points.min(axis=-2)
    return maxs, mins, np.prod(maxs - mins, axis=-1)


def legacy_extents(rts, sizes):
    """Per object (n, 4, 4) sRT and (n, 3) normalised sizes, in their own dtypes (float32 or float64).

    Returns (maxs (n, 8), mins (n, 8), volumes (n,)) in the dtype the reference computes them in.
    """
    coords = _homogeneous_corners(sizes)
    dtype = np.result_type(rts.dtype, coords.dtype)
    return _spans(rts.astype(dtype, copy=False) @ coords.astype(dtype, copy=False))


def legacy_extents_rotated(rts, sizes):
    """Like `legacy_extents` for the prediction of a symmetric object: (n, 20, 8) spans of sRT @ Ry_k, always
    float64 because the reference's rotation matrices are float64."""
    coords = _homogeneous_corners(sizes).astype(np.float64)
    rotated = rts.astype(np.float64)[:, None] @ _Y_ROTATIONS[None]  # (n, 20, 4, 4)
    return _spans(rotated @ coords[:, None])


def legacy_pair_iou(maxs_1, mins_1, volumes_1, maxs_2, mins_2, volumes_2):
    """IoU of paired extents (..., 8): the reference's `asymmetric_3d_iou` after the corner transform.

    Inputs keep their dtypes; numpy's promotion then matches the reference's scalar arithmetic.
    """
    overlap = np.minimum(maxs_1, maxs_2) - np.maximum(mins_1, mins_2)
    intersection = np.where(overlap.min(axis=-1) < 0, 0, np.prod(overlap, axis=-1))
    intersection = intersection.astype(overlap.dtype, copy=False)
    union = volumes_1 + volumes_2 - intersection
    with np.errstate(invalid='ignore', divide='ignore'):
        return intersection / union


def best_over_rotations(ious):
    """(..., 20) -> (...): the reference's running `max(max_iou, iou)` from 0 (NaN never wins)."""
    return np.fmax.reduce(np.fmax(ious, 0.0), axis=-1)
