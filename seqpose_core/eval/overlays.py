"""The overlay picture of one evaluated frame: ground-truth boxes green, predicted boxes red, object axes and
labels (the paper's Fig. 4)."""

from pathlib import Path

import cv2

from seqpose_core.detection import Detection
from seqpose_core.geometry import scale_intrinsics
from seqpose_core.visualize import OVERLAY_MIN_HEIGHT, draw_detections, overlay_predictions


def spread_indices(total, count):
    """Indices of `count` frames spread evenly over `total` (the frames that get an overlay)."""
    if count <= 0 or total <= 0:
        return set()
    if count >= total:
        return set(range(total))
    return {round(i * (total - 1) / (count - 1)) if count > 1 else 0 for i in range(count)}


def write_overlay(path, frame, detections):
    """`frame` (a data NocsFrame, with its annotation) with its GT and `detections` drawn, as a PNG at `path`."""
    annotation = frame.annotation
    ground_truth = [
        Detection(class_id=int(class_id), score=1.0, rotation=rotation, translation=translation, size=size)
        for class_id, rotation, translation, size in zip(
            annotation.class_ids, annotation.rotations, annotation.translations, annotation.sizes
        )
    ]
    # small renders are upscaled so boxes and labels stay legible (K follows the resize)
    factor = max(1, -(-OVERLAY_MIN_HEIGHT // frame.color.shape[0]))
    height, width = frame.color.shape[0] * factor, frame.color.shape[1] * factor
    image = cv2.resize(frame.color, (width, height), interpolation=cv2.INTER_LINEAR)
    K = scale_intrinsics(frame.K, frame.color.shape[:2], (height, width))
    draw_detections(image, ground_truth, K, gt=True)
    draw_detections(image, overlay_predictions(detections, ground_truth), K)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
