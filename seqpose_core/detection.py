"""The one detection type every consumer (ROS node, bag tools, evaluation, overlays) receives."""

from dataclasses import dataclass, field

import numpy as np

from seqpose_core import class_name as _class_name


@dataclass
class Detection:
    """One object in the camera frame (OpenCV convention: x right, y down, z forward), metres.

    The object frame is the NOCS frame: origin at the box centre, axes along the box edges, y up for the
    object (the symmetry axis of bottles, bowls, cans and mugs), and `size` the box extents along x, y, z.
    """

    class_id: int  # NOCS class id 1..6
    score: float  # in [0, 1]
    rotation: np.ndarray  # (3, 3) object -> camera
    translation: np.ndarray  # (3,) box centre in the camera frame, metres
    size: np.ndarray  # (3,) metric box extents along the object's x, y, z, metres
    track_id: int = -1  # stable across frames for the same object (-1: not tracked)
    extras: dict = field(default_factory=dict)

    @property
    def class_name(self) -> str:
        return _class_name(self.class_id)

    def pose_matrix(self) -> np.ndarray:
        """4x4 rigid transform object -> camera (no scale)."""
        pose = np.eye(4)
        pose[:3, :3] = self.rotation
        pose[:3, 3] = self.translation
        return pose

    def nocs_rt_and_scales(self):
        """The evaluation's (sRT, scales): scale s = box diagonal, folded into RT; scales = size / s."""
        scale = float(np.linalg.norm(self.size))
        rt = self.pose_matrix()
        rt[:3, :3] *= scale
        return rt, np.asarray(self.size, dtype=np.float64) / max(scale, 1e-12)
