"""The debug image: projected boxes, axes and labels drawn on a copy of the input image by the project's one
overlay drawer (`seqpose_core.visualize.draw_detections`, shared with eval overlays and bag videos)."""

import numpy as np

from seqpose_core import visualize


def draw_detections(rgb, detections, K):
    """(H, W, 3) uint8 RGB with the detections drawn (a new array; the input is not modified)."""
    canvas = np.ascontiguousarray(rgb).copy()
    visualize.draw_detections(canvas, detections, K)
    return canvas
