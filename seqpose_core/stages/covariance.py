"""The pose covariance of each detection (inference.covariance): the model's measured error, not a guess.

`seqpose calibrate-covariance` (seqpose_core.eval.covariance) measures, per class, how far the shipped model's
detections are from the ground truth on video it was not trained on, and stores the standard deviations with
the checkpoint: the position along x, y across the detection's viewing ray and z along it, sigma = a + b z with
z the detection's depth (a monocular model's depth error grows with the depth; the bearing is pinned well), and
the rotation about the object's own x, y, z (the azimuth about the up axis is what the model gets wrong; about
the symmetry axis of a bottle, bowl or can the rotation is unobservable: sigma pi / sqrt(3), a uniform angle).

This stage (the last: what it describes is what is published) attaches extras['pose_covariance'] (6, 6) to each
detection of a calibrated class: ROS order (x, y, z, rotation about X, Y, Z), the camera frame, m^2 and rad^2.
The position block is the ray frame's diagonal turned into the camera frame (errors along the ray and across it
are independent; in camera axes they are not, off the image centre); the rotation block is the object frame's
diagonal turned into the camera frame (a small rotation w about the object's axes is R w about the camera's).

Frames with camera motion in video mode with world fusion on take the `odometry` table (the fused centres'
error), the others the `no_motion` table; a class without a row in the odometry table takes its no_motion row.
A checkpoint without a calibration (all rows 0) gets no covariance: the stage passes detections through.
"""

import numpy as np

from seqpose_core.stages import Stage
from seqpose_core.stages.config import UNCALIBRATED

CAMERA_Y = np.array([0.0, 1.0, 0.0])


def ray_frame(translation):
    """(3, 3) rows x', y', z': z' the unit viewing ray to `translation` (camera frame), x' across it and
    level with the camera's x (at the image centre the frame is the camera's), y' = z' x x'."""
    translation = np.asarray(translation, dtype=np.float64)
    along = translation / max(float(np.linalg.norm(translation)), 1e-12)
    across = np.cross(CAMERA_Y, along)
    if np.linalg.norm(across) < 1e-9:  # a ray along the camera's y: any x' across it will do
        across = np.cross(along, [0.0, 0.0, 1.0])
    across /= np.linalg.norm(across)
    return np.stack([across, np.cross(along, across), along])


def position_sigmas(row, depth):
    """(3,) metres: the position's sigma across (x', y') and along (z') the ray at `depth` metres."""
    row = np.asarray(row, dtype=np.float64)
    return row[0:3] + row[3:6] * max(float(depth), 0.0)


def pose_covariance(row, rotation, translation):
    """(6, 6) covariance in ROS order (x, y, z, rotation about X, Y, Z; camera frame) of a detection at
    `rotation` (3, 3) and `translation` (3,) from its class's row (inference.covariance)."""
    row = np.asarray(row, dtype=np.float64)
    to_ray = ray_frame(translation)
    rotation = np.asarray(rotation, dtype=np.float64)
    covariance = np.zeros((6, 6))
    covariance[:3, :3] = to_ray.T @ np.diag(position_sigmas(row, translation[2]) ** 2) @ to_ray
    covariance[3:, 3:] = rotation @ np.diag(row[6:9] ** 2) @ rotation.T
    return covariance


class CovarianceStage(Stage):
    name = 'covariance'

    def __init__(self, model, inference):
        self.settings = inference.covariance
        self.fusing = inference.world_fusion.enabled

    def row(self, class_name, fused):
        """The row of `class_name` (None: not calibrated): the odometry table's for a frame the world fused."""
        row = getattr(self.settings.odometry, class_name) if fused else UNCALIBRATED
        if row == UNCALIBRATED:
            row = getattr(self.settings.no_motion, class_name)
        return None if row == UNCALIBRATED else row

    def apply(self, detections, context, state):
        if not self.settings.enabled:
            return detections, None
        fused = self.fusing and context.mode == 'video' and context.camera_motion is not None
        for detection in detections:
            row = self.row(detection.class_name, fused)
            if row is not None:
                detection.extras['pose_covariance'] = pose_covariance(row, detection.rotation, detection.translation)
        return detections, None
