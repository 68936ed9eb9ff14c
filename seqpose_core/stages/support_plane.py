"""The surface the objects stand on (inference.support_plane): one up direction shared by the detections of a
frame, and of a video.

Objects of these categories stand upright on a table: in REAL275, in the generated scenes (a tilt of at most
4 deg), in most robot work cells. Each detection's own up axis is read from one crop and is off by a median
4-7 deg (weights/README.md, "The support plane"); the five or so objects of a frame agree on the table's up better
than any one of them, and in a video the table stays where it is while the camera turns a fraction of a degree per
frame. `SupportPlane` is that estimate, an immutable value the runner owns as it owns the query memory.

Each frame the detections vote with their up axes, weighted by score; a vote counts only within `gate_deg` of the
consensus, so an object lying on its side or a false detection on the wall does not bend it. The votes of earlier
frames carry over with weight `decay` per frame, turned by the camera motion when it is known. A detection whose
own up is within the gate then takes the shared up and keeps its azimuth (its x axis, re-orthogonalised); one
beyond the gate keeps its rotation.
"""

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from seqpose_core.stages import Stage

ITERATIONS = 3  # re-weighting rounds of the consensus: inliers of the previous round vote in the next


@dataclass(frozen=True)
class SupportPlane:
    """The up direction (3,) of the supporting surface in the current camera frame, and the score-weight of
    the votes behind it."""

    up: np.ndarray
    weight: float

    def moved(self, camera_motion: Optional[np.ndarray]) -> 'SupportPlane':
        """The same plane seen from the next camera: camera_motion (4, 4) T_current_from_previous (None: the
        camera is taken not to have turned, as the query memory does without odometry)."""
        if camera_motion is None:
            return self
        return SupportPlane(_unit(np.asarray(camera_motion, dtype=np.float64)[:3, :3] @ self.up), self.weight)


def _unit(vector):
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def consensus_up(ups, weights, gate_deg, prior: Optional[SupportPlane] = None, prior_weight=0.0):
    """ups (n, 3) unit vectors and weights (n,) -> (up (3,), weight of the votes within the gate), or None
    when nothing votes. Without a prior the start is the up with the most weight within the gate of it."""
    ups = np.asarray(ups, dtype=np.float64).reshape(-1, 3)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    cos_gate = math.cos(math.radians(gate_deg))
    if prior is not None and prior_weight > 0:
        up = prior.up
    elif len(ups):
        support = ((ups @ ups.T) >= cos_gate) @ weights  # (n,)
        up = ups[int(np.argmax(support))]
    else:
        return None
    for _ in range(ITERATIONS):
        inliers = ups @ up >= cos_gate
        total = prior_weight * (prior.up if prior is not None else 0) + weights[inliers] @ ups[inliers]
        if np.linalg.norm(total) < 1e-12:
            return None
        up = _unit(total)
    return up, float(weights[ups @ up >= cos_gate].sum())


def updated_plane(plane: Optional[SupportPlane], ups, weights, gate_deg, decay) -> Optional[SupportPlane]:
    """The plane after one more frame's votes: the earlier votes weigh `decay` x their weight."""
    prior_weight = decay * plane.weight if plane is not None else 0.0
    found = consensus_up(ups, weights, gate_deg, plane, prior_weight)
    if found is None:
        return plane
    up, weight = found
    return SupportPlane(up, prior_weight + weight)


def with_up(rotation, up):
    """rotation (3, 3) with its y column set to `up` and its x column re-orthogonalised against it."""
    x = rotation[:, 0] - (rotation[:, 0] @ up) * up
    x = _unit(x)
    return np.stack([x, up, np.cross(x, up)], axis=1)


def level_detections(detections, plane: SupportPlane, gate_deg):
    """Give the detections whose up is within `gate_deg` of the plane's the plane's up (in place); their own
    rotation stays in extras['own_rotation']."""
    cos_gate = math.cos(math.radians(gate_deg))
    for detection in detections:
        rotation = np.asarray(detection.rotation, dtype=np.float64)
        if rotation[:, 1] @ plane.up >= cos_gate:
            detection.extras['own_rotation'] = rotation
            detection.rotation = with_up(rotation, plane.up)
    return detections


class SupportPlaneStage(Stage):
    name = 'support_plane'

    def __init__(self, model, inference):
        self.settings = inference.support_plane

    def apply(self, detections, context, state):
        """state: the SupportPlane of the video so far (video mode), or None."""
        if not self.settings.enabled:
            return detections, None  # switched back on later, it starts afresh
        video = context.mode == 'video'
        previous = state.moved(context.camera_motion) if video and state is not None else None
        plane = updated_plane(
            previous,
            [d.rotation[:, 1] for d in detections],
            [d.score for d in detections],
            self.settings.gate_deg,
            self.settings.decay,
        )
        if plane is not None:
            level_detections(detections, plane, self.settings.gate_deg)
        return detections, plane if video else None
