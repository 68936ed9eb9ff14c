"""One detection per object: class-aware duplicate suppression of the runner (seqpose_core.suppression)."""

import numpy as np
import pytest

from seqpose_core.detection import Detection
from seqpose_core.suppression import projected_rectangle, rectangle_iou, suppress_duplicates

K = np.array([[591.0, 0.0, 320.0], [0.0, 590.0, 240.0], [0.0, 0.0, 1.0]])


def detection(class_id, score, centre, size=(0.1, 0.12, 0.1)):
    return Detection(
        class_id=class_id,
        score=score,
        rotation=np.eye(3),
        translation=np.asarray(centre, float),
        size=np.asarray(size, float),
    )


def test_rectangle_of_a_box_seen_head_on():
    box = detection(1, 1.0, (0.0, 0.0, 1.0), size=(0.2, 0.2, 0.0))
    x0, y0, x1, y1 = projected_rectangle(box, K)
    assert np.allclose([x0, x1], [320 - 59.1, 320 + 59.1]) and np.allclose([y0, y1], [240 - 59.0, 240 + 59.0])
    assert projected_rectangle(detection(1, 1.0, (0.0, 0.0, 0.01)), K) is None  # straddles the camera
    assert rectangle_iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(1 / 3)


def test_duplicates_along_a_viewing_ray_are_suppressed():
    ray = np.array([0.1, 0.05, 1.0]) / np.linalg.norm([0.1, 0.05, 1.0])
    best = detection(6, 0.9, 0.70 * ray)
    behind = detection(6, 0.6, 0.83 * ray, size=(0.11, 0.13, 0.11))  # 13 cm further along the same ray
    other_class = detection(4, 0.5, 0.83 * ray)
    elsewhere = detection(6, 0.4, (-0.25, 0.0, 0.8))
    kept = suppress_duplicates([best, behind, other_class, elsewhere], K)
    assert kept == [best, other_class, elsewhere]
    # what the old rule kept: every duplicate more than 5 cm away
    assert suppress_duplicates([best, behind], K, method='centre_distance') == [best, behind]
    assert suppress_duplicates([best, behind], K, method='none') == [best, behind]
    assert suppress_duplicates([best, behind, other_class, elsewhere], K, max_detections=2) == [best, other_class]
    with pytest.raises(ValueError, match='duplicate suppression'):
        suppress_duplicates([best], K, method='nms')
