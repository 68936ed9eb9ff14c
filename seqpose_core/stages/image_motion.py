"""The camera's motion from the images themselves: video without odometry (world_fusion.image_motion).

A phone held by hand, a camera on a robot that publishes no odometry: the world fusion still needs how the
camera moved between frames. The image gives it in two parts that each fail where the other holds:

- corners tracked from a keyframe into each new frame (Lucas-Kanade optical flow, kept when it tracks back within a
  pixel and fits the essential matrix of some motion under RANSAC) constrain the motion through the epipolar
  geometry. Alone they confuse a turn with a sideways step (the bas-relief ambiguity: a camera circling what it
  looks at sees almost no flow at the centre of the image), and they carry no scale;
- the objects the model sees in both frames: for a static object i the model's centres satisfy
  c_i(now) = R c_i(keyframe) + k_i t, k_i the model's depth scale of that instance (the depth error of one instance
  is mostly one factor for the whole video). They pin the translation, at the scene's common scale, but jitter by
  centimetres from frame to frame.

`image_motion` fits T_now_from_keyframe to both at once (Sampson distances of the corners, the objects' offsets;
a Huber loss lets mistracked corners and moved objects go), and the motion since the previous frame follows.
Measuring from a keyframe, not frame to frame, keeps the parallax large and the error from adding up between
keyframes; a new keyframe is taken every `keyframe_distance` of travel or when half its corners are lost.
What the world fusion triangulates from this motion has one scale for the whole scene (the mean of its
instances') instead of one per object. A frame whose corners are lost (a blank wall, motion blur) or that shares
no object with its keyframe gives no motion, and the world fusion starts again from it.

Measured (docs/experiments/2026-12-08-image-motion.md): 0.2-0.4 deg of error per frame, 3-25 deg and 5-30 cm of
drift over 10 s of generated video; wood grain on the table makes corners slide along its stripes.
"""

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np


@dataclass(frozen=True)
class ImageMotionSettings:
    centre_sigma: float  # how far the model's centre of an object jitters between frames, metres
    keyframe_distance: float  # metres from the keyframe at which a frame becomes the next keyframe
    width: int = 320  # the images are tracked at most this wide (pixels)
    corners: int = 600  # corners sought in a keyframe
    min_tracked: int = 30  # fewer corners tracked into a frame than this: no motion from it
    corner_sigma_px: float = 1.0  # how far a tracked corner is off its epipolar line, pixels
    keyframe_tracked: float = 0.5  # share of the keyframe's corners still tracked below which it is replaced

    @classmethod
    def of(cls, world_fusion):
        """The settings the inference section `world_fusion` (WorldFusionSettings) names."""
        return cls(world_fusion.image_motion_centre_sigma, world_fusion.image_motion_keyframe_distance)


@dataclass(frozen=True)
class ImageMotionState:
    """The keyframe: its gray image, its corners (n, 2), the model's centres {track_id: (3,)} in its camera, and
    the pose of the last frame relative to it (T_last_from_keyframe, (4, 4))."""

    gray: np.ndarray
    corners: np.ndarray
    centres: dict
    last_from_keyframe: np.ndarray


def _gray(image_rgb, K, width):
    """(gray image at most `width` pixels wide, its intrinsics): corners move by whole pixels of the image they
    are tracked in, and a 640-pixel frame costs four times a 320-pixel one for the same motion."""
    gray = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2GRAY)
    factor = width / gray.shape[1]
    if factor >= 1.0:
        return gray, K
    gray = cv2.resize(gray, (width, int(round(gray.shape[0] * factor))), interpolation=cv2.INTER_AREA)
    scaled = K.copy()
    scaled[:2] *= factor
    return gray, scaled


def _keyframe(gray, detections, settings):
    corners = cv2.goodFeaturesToTrack(gray, settings.corners, qualityLevel=0.001, minDistance=5, blockSize=7)
    corners = np.zeros((0, 2), np.float32) if corners is None else corners.reshape(-1, 2)
    centres = {d.track_id: np.asarray(d.translation, np.float64) for d in detections if d.track_id >= 0}
    return ImageMotionState(gray, corners, centres, np.eye(4))


def _tracked(previous_gray, gray, corners):
    """(corners, their positions in gray) for the corners tracked both ways within a pixel."""
    if len(corners) == 0:
        return corners, corners
    window = dict(winSize=(21, 21), maxLevel=3)
    forward, status, _ = cv2.calcOpticalFlowPyrLK(previous_gray, gray, corners.reshape(-1, 1, 2), None, **window)
    backward, status_back, _ = cv2.calcOpticalFlowPyrLK(gray, previous_gray, forward, None, **window)
    error = np.linalg.norm(backward.reshape(-1, 2) - corners, axis=1)
    good = (status.ravel() == 1) & (status_back.ravel() == 1) & (error < 1.0)
    return corners[good], forward.reshape(-1, 2)[good]


def _rays(points, K):
    """(n, 3) normalised homogeneous coordinates (x, y, 1) of pixels (n, 2)."""
    return np.linalg.solve(K, np.concatenate([points, np.ones((len(points), 1))], axis=1).T).T


def _skew(vector):
    return np.array([[0.0, -vector[2], vector[1]], [vector[2], 0.0, -vector[0]], [-vector[1], vector[0], 0.0]])


def _epipolar_pixels(rotation, translation, before, after, focal):
    """Sampson distances (n,) in pixels of the corner pairs (normalised homogeneous (n, 3) each) under the motion
    (after = R before + t): how far each pair is from the epipolar geometry the motion implies."""
    essential = _skew(translation) @ rotation
    mapped, back = before @ essential.T, after @ essential
    numerator = np.sum(after * mapped, axis=1)
    denominator = mapped[:, 0] ** 2 + mapped[:, 1] ** 2 + back[:, 0] ** 2 + back[:, 1] ** 2
    return focal * numerator / np.sqrt(denominator + 1e-18)


def _fitted_motion(start, before, after, keyframe_centres, centres, K, settings):
    """T_now_from_keyframe (4, 4) that best explains both the corners (epipolar, corner_sigma_px) and the objects
    seen in both frames (c(now) = R c(keyframe) + t, centre_sigma metres), from `start`. The corners alone confuse
    a turn with a sideways step (a camera circling what it looks at); the objects alone jitter by centimetres;
    together each pins what the other cannot. A robust (Huber) loss lets moved objects and mistracked corners go."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    before_rays, after_rays = _rays(before, K), _rays(after, K)

    def residuals(x):
        rotation = Rotation.from_rotvec(x[:3]).as_matrix()
        corner = _epipolar_pixels(rotation, x[3:], before_rays, after_rays, K[0, 0]) / settings.corner_sigma_px
        objects = (centres - keyframe_centres @ rotation.T - x[3:]).ravel() / settings.centre_sigma
        return np.concatenate([corner, objects])

    x0 = np.concatenate([Rotation.from_matrix(start[:3, :3]).as_rotvec(), start[:3, 3]])
    solution = least_squares(residuals, x0, loss='huber', f_scale=2.0, max_nfev=50)
    motion = np.eye(4)
    motion[:3, :3] = Rotation.from_rotvec(solution.x[:3]).as_matrix()
    motion[:3, 3] = solution.x[3:]
    return motion


def image_motion(state: Optional[ImageMotionState], image_rgb, K, detections, settings: ImageMotionSettings):
    """(T_current_from_previous (4, 4) or None, the next state) for one frame of a video: None on the first frame
    (state None) and when too few corners or no object could be followed (the next frame measures from this one)."""
    gray, K = _gray(image_rgb, np.asarray(K, dtype=np.float64), settings.width)
    if state is None:
        return None, _keyframe(gray, detections, settings)
    before, after = _tracked(state.gray, gray, state.corners)
    common = [d for d in detections if d.track_id in state.centres]
    if len(before) < settings.min_tracked or not common:
        return None, _keyframe(gray, detections, settings)
    # corners off the epipolar geometry of every motion RANSAC tried (mistracked, on an edge that slides) go first
    essential, inliers = cv2.findEssentialMat(before, after, K, method=cv2.RANSAC, prob=0.999, threshold=2.0)
    if essential is not None and inliers is not None and inliers.sum() >= settings.min_tracked:
        before, after = before[inliers.ravel() == 1], after[inliers.ravel() == 1]
    keyframe_centres = np.stack([state.centres[d.track_id] for d in common])  # (m, 3)
    centres = np.stack([np.asarray(d.translation, np.float64) for d in common])  # (m, 3)
    start = state.last_from_keyframe.copy()
    if np.linalg.norm(start[:3, 3]) < 1e-3:  # the epipolar geometry of no translation is degenerate: the objects'
        start[:3, 3] = np.mean(centres - keyframe_centres @ start[:3, :3].T, axis=0)
    now_from_keyframe = _fitted_motion(start, before, after, keyframe_centres, centres, K, settings)
    motion = now_from_keyframe @ np.linalg.inv(state.last_from_keyframe)
    baseline = float(np.linalg.norm(now_from_keyframe[:3, 3]))
    if baseline >= settings.keyframe_distance or len(before) < settings.keyframe_tracked * len(state.corners):
        return motion, _keyframe(gray, detections, settings)
    return motion, ImageMotionState(state.gray, state.corners, state.centres, now_from_keyframe)
