"""Overlays: boxes and axes land where the projection says, in the right colours, and nothing behind the
camera is drawn."""

import numpy as np

from seqpose_core.detection import Detection
from seqpose_core.geometry import box_corners, project_points
from seqpose_core.visualize import GT_COLOR, PRED_COLOR, draw_axes, draw_box, draw_detections

K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])


def _blank():
    return np.zeros((480, 640, 3), dtype=np.uint8)


def test_draw_box_touches_projected_corners():
    corners = project_points(box_corners(np.array([0.2, 0.2, 0.2])) + [0, 0, 1.0], K)
    image = draw_box(_blank(), corners, (255, 0, 0), thickness=1)
    for u, v in corners:
        assert image[int(round(v)), int(round(u)), 0] > 0
    assert image[240, 320].sum() == 0  # the centre of the box is not on an edge


def test_draw_axes_colours_and_direction():
    image = draw_axes(_blank(), np.eye(3), np.array([0, 0, 1.0]), K, length=0.1, thickness=1)
    # x axis goes right from the centre (red), y axis down (green)
    assert image[240, 345, 0] > 0 and image[240, 345, 1] == 0
    assert image[265, 320, 1] > 0 and image[265, 320, 0] == 0


def test_points_behind_camera_are_not_drawn():
    behind = Detection(1, 0.9, np.eye(3), np.array([0, 0, -1.0]), np.array([0.2, 0.2, 0.2]))
    assert draw_detections(_blank(), [behind], K).sum() == 0
    # a box straddling the camera plane draws only edges with both ends in front
    straddling = Detection(1, 0.9, np.eye(3), np.array([0, 0, 0.1]), np.array([0.2, 0.2, 0.3]))
    image = draw_detections(_blank(), [straddling], K, label=False, axes=False)
    assert image.sum() > 0


def test_prediction_red_and_gt_green():
    detection = Detection(6, 0.75, np.eye(3), np.array([0.0, 0.0, 1.0]), np.array([0.2, 0.2, 0.2]))
    pred = draw_detections(_blank(), [detection], K, axes=False)
    gt = draw_detections(_blank(), [detection], K, gt=True, axes=False)
    assert pred[..., 0].sum() > 0 and pred[..., 1].sum() == 0 and pred[..., 2].sum() == 0
    assert gt[..., 1].sum() > 0 and gt[..., 0].sum() == 0
    assert PRED_COLOR == (255, 0, 0) and GT_COLOR == (0, 255, 0)
    # the label is drawn above the box (rows above the top edge are touched)
    top = int(project_points(box_corners(np.array([0.2, 0.2, 0.2])) + [0, 0, 1.0], K)[:, 1].min())
    assert pred[: top - 2].sum() > 0
