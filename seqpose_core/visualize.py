"""OpenCV overlays of 3D boxes and axes on RGB images (predictions red, GT green by convention).

Images are RGB uint8 (H, W, 3), drawn in place and returned. Geometry comes from seqpose_core.geometry, in the
OpenCV camera frame; anything at or behind the camera plane is not drawn (a segment is drawn only when both
ends are in front of the camera), because projecting it would wrap it across the image.
"""

import cv2
import numpy as np

from seqpose_core.geometry import BOX_EDGES, box_corners, project_points, transform_points

PRED_COLOR = (255, 0, 0)
GT_COLOR = (0, 255, 0)
AXIS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # x red, y green, z blue (RGB)
# points closer than this (metres) count as behind the camera
MIN_DEPTH = 1e-3
OVERLAY_MIN_HEIGHT = 480  # pixels: overlays of smaller images are upscaled by an integer factor
OVERLAY_MIN_SCORE = 0.3  # predictions drawn in overlays (and the best one per object in the frame)


def _pixel(point):
    return int(round(float(point[0]))), int(round(float(point[1])))


def _finite_segment(uv_a, uv_b):
    # cv2 draws with int coordinates; refuse absurd values instead of overflowing
    return np.all(np.isfinite([uv_a, uv_b])) and np.all(np.abs([uv_a, uv_b]) < 1e6)


def draw_box(image, corners_2d, color, thickness=2, visible=None):
    """Draw the 12 edges of a box from its 8 projected corners (geometry.box_corners order).

    `visible` (8,) bool: corners in front of the camera; edges touching a hidden corner are skipped.
    """
    corners_2d = np.asarray(corners_2d, dtype=np.float64).reshape(8, 2)
    visible = np.ones(8, dtype=bool) if visible is None else np.asarray(visible, dtype=bool)
    for start, end in BOX_EDGES:
        if visible[start] and visible[end] and _finite_segment(corners_2d[start], corners_2d[end]):
            cv2.line(
                image,
                _pixel(corners_2d[start]),
                _pixel(corners_2d[end]),
                tuple(int(c) for c in color),
                thickness,
                cv2.LINE_AA,
            )
    return image


def draw_axes(image, R, t, K, length=0.1, thickness=2):
    """Draw the object's x (red), y (green), z (blue) axes of `length` metres from its origin t."""
    R, t, K = np.asarray(R, np.float64), np.asarray(t, np.float64), np.asarray(K, np.float64)
    points = t[None, :] + np.vstack([np.zeros(3), (R * length).T])  # origin, then the three axis tips
    if points[0, 2] <= MIN_DEPTH:
        return image
    uv = project_points(points, K)
    for axis in range(3):
        tip = axis + 1
        if points[tip, 2] > MIN_DEPTH and _finite_segment(uv[0], uv[tip]):
            cv2.line(image, _pixel(uv[0]), _pixel(uv[tip]), AXIS_COLORS[axis], thickness, cv2.LINE_AA)
    return image


def draw_detections(image_rgb, detections, K, color=PRED_COLOR, gt=False, axes=True, label=True):
    """Boxes, axes and a label ("class score" for predictions, "class" for GT) for each Detection.

    `gt=True` switches the default red to green (pass `color` to override both).
    """
    if gt and color == PRED_COLOR:
        color = GT_COLOR
    K = np.asarray(K, np.float64)
    for detection in detections:
        pose = detection.pose_matrix()
        corners = transform_points(pose, box_corners(np.asarray(detection.size, np.float64)))
        visible = corners[:, 2] > MIN_DEPTH
        uv = project_points(corners, K)
        draw_box(image_rgb, uv, color, visible=visible)
        if axes:
            length = 0.5 * float(np.max(detection.size))
            draw_axes(image_rgb, detection.rotation, detection.translation, K, length=length)
        if label and visible.any():
            text = detection.class_name if gt else f'{detection.class_name} {detection.score:.2f}'
            anchor = uv[visible][np.argmin(uv[visible, 1])]  # above the highest visible corner
            if _finite_segment(anchor, anchor):
                x, y = _pixel(anchor)
                cv2.putText(
                    image_rgb,
                    text,
                    (x, max(y - 4, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.45,
                    tuple(int(c) for c in color),
                    1,
                    cv2.LINE_AA,
                )
    return image_rgb


def overlay_predictions(detections, ground_truth, min_score=OVERLAY_MIN_SCORE, match_distance=0.10):
    """The predictions an overlay draws, one box per object: for each ground-truth object the best-scored
    detection of its class whose centre is within `match_distance` metres of it (however low its score: a weak
    model is still shown where it is right), plus the false positives, i.e. the detections scoring at least
    `min_score` that lie near no object of their class. The mAP uses every detection; a picture with five boxes
    on an object is unreadable."""
    ranked = sorted(detections, key=lambda detection: -detection.score)
    chosen, matched = [], set()
    for truth in ground_truth:
        for index, candidate in enumerate(ranked):
            if (
                index not in matched
                and candidate.class_id == truth.class_id
                and np.linalg.norm(candidate.translation - truth.translation) < match_distance
            ):
                matched.add(index)
                chosen.append(candidate)
                break
    near_any = {
        index
        for index, candidate in enumerate(ranked)
        if any(
            candidate.class_id == truth.class_id
            and np.linalg.norm(candidate.translation - truth.translation) < match_distance
            for truth in ground_truth
        )
    }
    false_positives = [
        candidate for index, candidate in enumerate(ranked) if index not in near_any and candidate.score >= min_score
    ]
    return sorted(chosen + false_positives, key=lambda detection: -detection.score)
