"""The camera's trajectory as a robot's odometry reports it: never the exact one.

A robot knows how its camera moved from wheel odometry, visual-inertial odometry on a phone or headset, or an
arm's kinematics. All of them drift: the error of the pose grows with the distance travelled and the time
elapsed, and each reading jitters. `simulate_odometry` turns the true camera trajectory of a generated video
into such a reading, with this noise model (the figures are `OdometryNoise`'s defaults):

- scale: every measured displacement is (1 + s) times the true one, s ~ N(0, 1 %) per video (VIO's scale error,
  a wheel radius off by a millimetre);
- translation drift: each frame's measured displacement gains N(0, (2 % of its length)^2) per axis, a random
  walk: after travelling d metres the position is off by about 2 % x d / sqrt(3 x steps) per axis plus the
  scale error's s x d (1-3 % of the distance in all, the range measured on phones' VIO);
- rotation drift: a gyro bias of N(0, 0.1 deg/s) per axis per video plus a random walk of 0.02 deg/sqrt(s);
- jitter: each reported pose gains N(0, 1 mm) per axis and N(0, 0.05 deg) per axis, not accumulated.

The odometry frame is the first camera pose (the reading starts at the identity), as a robot's odom frame
starts wherever it was switched on: only the motion between frames means anything, which is what the runner
takes (`T_current_from_previous`).
"""

from dataclasses import dataclass

import numpy as np

from seqpose_core.synth.scene import rotation_about


@dataclass(frozen=True)
class OdometryNoise:
    scale_sigma: float = 0.01  # relative scale error per video
    translation_drift: float = 0.02  # per-axis sigma of each step's error, as a fraction of the step's length
    gyro_bias_deg_s: float = 0.1  # per-axis sigma of the rotation rate bias per video, deg/s
    rotation_walk_deg_sqrt_s: float = 0.02  # rotation random walk, deg/sqrt(s)
    jitter_m: float = 0.001  # per-axis sigma of each reading's position noise, metres
    jitter_deg: float = 0.05  # per-axis sigma of each reading's rotation noise, degrees


def _small_rotation(vector_rad):
    angle = float(np.linalg.norm(vector_rad))
    if angle < 1e-15:
        return np.eye(3)
    return rotation_about(vector_rad / angle, angle)


def simulate_odometry(rng, camera_from_world, fps, noise: OdometryNoise = OdometryNoise()):
    """(frames, 4, 4) odom_from_camera readings of the trajectory camera_from_world (frames, 4, 4), drawn from
    `rng` with the noise model of the module doc."""
    world_from_camera = np.linalg.inv(np.asarray(camera_from_world, dtype=np.float64))
    frames = len(world_from_camera)
    dt = 1.0 / fps
    scale = 1.0 + rng.normal(0.0, noise.scale_sigma)
    gyro_bias = np.radians(rng.normal(0.0, noise.gyro_bias_deg_s, 3))
    odom = [np.eye(4)]
    for index in range(1, frames):
        # the true motion of the camera, in the previous camera's frame
        step = np.linalg.inv(world_from_camera[index - 1]) @ world_from_camera[index]
        length = float(np.linalg.norm(step[:3, 3]))
        measured = np.eye(4)
        rotation_error = gyro_bias * dt + rng.normal(0.0, np.radians(noise.rotation_walk_deg_sqrt_s) * np.sqrt(dt), 3)
        measured[:3, :3] = _small_rotation(rotation_error) @ step[:3, :3]
        measured[:3, 3] = scale * step[:3, 3] + rng.normal(0.0, noise.translation_drift * length, 3)
        odom.append(odom[-1] @ measured)
    readings = []
    for pose in odom:
        jitter = np.eye(4)
        jitter[:3, :3] = _small_rotation(np.radians(rng.normal(0.0, noise.jitter_deg, 3)))
        jitter[:3, 3] = rng.normal(0.0, noise.jitter_m, 3)
        readings.append(pose @ jitter)
    return np.stack(readings)
