"""The debug image: projected boxes, axes and labels drawn on the input image.

Uses `seqpose_core.visualize.draw_detections` (the project's shared overlay) when that module is there, and
this small OpenCV fallback otherwise, so the node does not depend on the order in which modules land.
"""
import numpy as np

from seqpose_ros.conversions import CLASS_COLORS
from seqpose_core.geometry import BOX_EDGES, box_corners, project_points


def _draw_fallback(rgb, detections, K):
    import cv2
    image = np.ascontiguousarray(rgb).copy()
    K = np.asarray(K, dtype=np.float64)
    for detection in detections:
        color = tuple(int(255 * c) for c in CLASS_COLORS.get(int(detection.class_id), (1.0, 1.0, 1.0)))
        pose = detection.pose_matrix()
        corners = box_corners(np.asarray(detection.size)) @ pose[:3, :3].T + pose[:3, 3]
        if np.any(corners[:, 2] <= 1e-3):
            continue   # behind or at the camera: a projection would be meaningless
        uv = project_points(corners, K)
        if not np.all(np.isfinite(uv)) or np.any(np.abs(uv) > 1e5):
            continue
        points = np.round(uv).astype(int)
        for i, j in BOX_EDGES:
            cv2.line(image, tuple(points[i]), tuple(points[j]), color, 1, cv2.LINE_AA)
        length = 0.6 * float(np.max(detection.size))
        axes = np.vstack([np.zeros(3), np.eye(3) * length]) @ pose[:3, :3].T + pose[:3, 3]
        if np.all(axes[:, 2] > 1e-3):
            a = np.round(project_points(axes, K)).astype(int)
            for k, axis_color in enumerate(((255, 0, 0), (0, 255, 0), (0, 0, 255))):
                cv2.line(image, tuple(a[0]), tuple(a[k + 1]), axis_color, 2, cv2.LINE_AA)
        top = points[np.argmin(points[:, 1])]
        cv2.putText(image, f'{detection.class_name} #{detection.track_id} {detection.score:.2f}',
                    (int(top[0]), max(int(top[1]) - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return image


def draw_detections(rgb, detections, K):
    """(H, W, 3) uint8 RGB with the detections drawn (a new array; the input is not modified)."""
    try:
        from seqpose_core import visualize
    except ImportError:
        visualize = None
    if visualize is not None and hasattr(visualize, 'draw_detections'):
        try:
            canvas = np.ascontiguousarray(rgb).copy()
            result = visualize.draw_detections(canvas, detections, K)
            if result is None:
                return canvas        # drew in place
            if isinstance(result, np.ndarray) and result.shape == rgb.shape:
                return result
        except TypeError:
            pass   # a different signature than expected: the fallback still gives a useful image
    return _draw_fallback(rgb, detections, K)
