"""The exact oriented-box IoU against hand-computed overlaps and Monte-Carlo estimates."""

import math

import numpy as np
import pytest

from seqpose_core.eval.box_iou import box_iou_3d, symmetric_box_iou_3d


def _rt(rotation=np.eye(3), translation=(0, 0, 0), scale=1.0):
    rt = np.eye(4)
    rt[:3, :3] = np.asarray(rotation) * scale
    rt[:3, 3] = translation
    return rt


def _random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@pytest.mark.parametrize(
    'size_a, size_b, shift, intersection',
    [
        ((1, 1, 1), (1, 1, 1), (0.5, 0, 0), 0.5),  # half overlap along x
        ((1, 2, 3), (1, 1, 1), (0.5, 0, 0), 0.5),  # small cube half inside a larger box
        ((2, 2, 2), (1, 1, 1), (0, 0, 0), 1.0),  # nested
        ((1, 1, 1), (1, 1, 1), (0.25, 0.5, 0.75), 0.75 * 0.5 * 0.25),
        ((1, 1, 1), (1, 1, 1), (1.0, 0, 0), 0.0),  # touching faces
        ((1, 1, 1), (1, 1, 1), (0, 0, 0), 1.0),  # identical (coplanar faces on every side)
    ],
)
def test_axis_aligned_known_overlap(size_a, size_b, shift, intersection):
    vol_a, vol_b = np.prod(size_a), np.prod(size_b)
    expected = intersection / (vol_a + vol_b - intersection)
    iou = box_iou_3d(_rt()[None], np.array([size_a], float), _rt(translation=shift)[None], np.array([size_b], float))
    assert iou[0] == pytest.approx(expected, abs=1e-9)


def test_rotated_boxes_match_monte_carlo():
    rng = np.random.default_rng(3)
    samples = 400_000
    for _ in range(4):
        ra, rb = _random_rotation(rng), _random_rotation(rng)
        size_a, size_b = rng.uniform(0.5, 1.5, 3), rng.uniform(0.5, 1.5, 3)
        shift = rng.normal(0, 0.25, 3)
        iou = box_iou_3d(_rt(ra)[None], size_a[None], _rt(rb, shift)[None], size_b[None])[0]
        # uniform points in A; fraction inside B estimates vol(A n B) / vol(A)
        local = (rng.random((samples, 3)) - 0.5) * size_a
        world = local @ ra.T
        in_b = np.all(np.abs((world - shift) @ rb) <= size_b / 2, axis=1)
        inter = in_b.mean() * np.prod(size_a)
        estimate = inter / (np.prod(size_a) + np.prod(size_b) - inter)
        sigma = math.sqrt(max(in_b.mean() * (1 - in_b.mean()), 1e-6) / samples)
        assert abs(iou - estimate) < 5 * sigma + 1e-4, (iou, estimate)
        assert iou > 0.02  # the cases must overlap to be informative


def test_scaled_rotation_and_normalised_extents_are_combined():
    """RT with scale folded in: extents = s * scales. Rotating a box by 90 deg about z swaps its x and y."""
    rotation = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    a = box_iou_3d(_rt(scale=2.0)[None], np.array([[0.5, 1.0, 0.5]]), _rt(rotation)[None], np.array([[2.0, 1.0, 1.0]]))
    assert a[0] == pytest.approx(1.0)


def test_symmetric_iou_takes_best_rotation_about_y():
    size = np.array([[1.0, 0.5, 2.0]])
    rotated = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0.0]])  # 90 deg about y
    plain = box_iou_3d(_rt(rotated)[None], size, _rt()[None], size)[0]
    assert plain < 0.6
    assert symmetric_box_iou_3d(_rt(rotated)[None], size, _rt()[None], size)[0] == pytest.approx(1.0)


def test_degenerate_and_far_boxes_score_zero():
    sizes = np.array([[1, 1, 1], [0, 1, 1], [1, 1, 1]], float)
    rts = np.stack([_rt(), _rt(), _rt(translation=(10, 0, 0))])
    nan_rt = _rt()
    nan_rt[0, 0] = np.nan
    ious = box_iou_3d(np.stack([_rt(), _rt(), nan_rt]), sizes, rts, np.ones((3, 3)))
    np.testing.assert_array_equal(ious, [1.0, 0.0, 0.0])
