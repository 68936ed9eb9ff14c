"""One detection per object: duplicate suppression that fits a monocular set predictor.

A DETR-style decoder trained briefly leaves several queries on one object, and a single RGB image pins an
object's viewing ray much better than its depth: duplicates lie along the same ray, 10-20 cm apart, where a
centre-distance rule (`centre_distance`) keeps them all. Their projected boxes nearly coincide, so the default
rule (`projected_iou`) compares the image rectangles of the projected 3D boxes: a candidate whose rectangle
overlaps a higher-scored kept detection of the same class by more than `iou` (inference.suppression.iou) is a
duplicate.
"""

import numpy as np

from seqpose_core.geometry import box_corners, project_points, transform_points
from seqpose_core.stages.config import SUPPRESSIONS

MIN_DEPTH = 1e-3  # metres: a box with a corner closer than this has no usable projection


def projected_rectangle(detection, K):
    """(x0, y0, x1, y1) pixels enclosing the projected 3D box, or None when part of it is behind the camera."""
    corners = transform_points(detection.pose_matrix(), box_corners(np.asarray(detection.size, dtype=np.float64)))
    if np.any(corners[:, 2] < MIN_DEPTH):
        return None
    uv = project_points(corners, np.asarray(K, dtype=np.float64))  # (8, 2)
    return np.concatenate([uv.min(0), uv.max(0)])


def rectangle_iou(a, b):
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return float(intersection / union) if union > 0 else 0.0


def suppress_duplicates(candidates, K, method='projected_iou', iou_threshold=0.5, distance=0.05, max_detections=None):
    """Greedy, class-aware: walk `candidates` (score-sorted, best first) and keep each one that is not a
    duplicate of a kept detection of its class. K (3, 3) is the intrinsics the detections' image was seen with.

    method: 'projected_iou' (rectangles of the projected boxes overlap by more than iou_threshold, or centres
    closer than `distance`), 'centre_distance' (centres closer than `distance` metres only) or 'none'."""
    if method not in SUPPRESSIONS:
        raise ValueError(f'duplicate suppression {method!r}: expected one of {SUPPRESSIONS}')
    kept, rectangles = [], []
    for candidate in candidates:
        if max_detections is not None and len(kept) >= max_detections:
            break
        rectangle = projected_rectangle(candidate, K) if method == 'projected_iou' else None
        duplicate = False
        if method != 'none':
            for other, other_rectangle in zip(kept, rectangles):
                if other.class_id != candidate.class_id:
                    continue
                if np.linalg.norm(other.translation - candidate.translation) < distance or (
                    rectangle is not None
                    and other_rectangle is not None
                    and rectangle_iou(rectangle, other_rectangle) > iou_threshold
                ):
                    duplicate = True
                    break
        if not duplicate:
            kept.append(candidate)
            rectangles.append(rectangle)
    return kept
