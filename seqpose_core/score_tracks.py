"""Scores that remember: in a video a detection's published score is the decayed mean of its scores along its track.

One frame's score says how sure the model is of this view; an object seen in every frame of a video is surer
than a false detection that flickers in and out. `ScoreTracks` holds what the runner published in the previous
frame (centres, classes and the running sums of their tracks), an immutable value the runner owns as it owns the
query memory. Each detection of the new frame takes up the track of the nearest previous detection of its class
within `distance` metres (carried by the camera motion when it is known; greedy, best score first), and publishes

    score = sum_k decay^k s_(t-k) / sum_k decay^k        (k over the frames of its track, newest first)

so a new track publishes its own score, and a long one the mean of its recent ones. Single mode has no tracks.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from seqpose_core.geometry import transform_points


@dataclass(frozen=True)
class ScoreTracks:
    """The previous frame's published detections: centres (n, 3) metres in its camera frame, class ids (n,),
    and per track the decayed sums of its scores and of its weights (n,)."""
    centres: np.ndarray
    class_ids: np.ndarray
    score_sums: np.ndarray
    weight_sums: np.ndarray

    def moved(self, camera_motion: Optional[np.ndarray]) -> 'ScoreTracks':
        """The same tracks in the next camera's frame (camera_motion (4, 4) T_current_from_previous; None: the
        camera is taken to have stood still, as the query memory does without odometry)."""
        if camera_motion is None or not len(self.centres):
            return self
        return ScoreTracks(transform_points(np.asarray(camera_motion, dtype=np.float64), self.centres),
                           self.class_ids, self.score_sums, self.weight_sums)


def check_settings(decay, distance):
    """ValueError naming the inference setting that is out of range."""
    if not 0 <= decay < 1:
        raise ValueError(f'inference.score_track_decay {decay}: expected a weight per frame in [0, 1)')
    if not distance > 0:
        raise ValueError(f'inference.score_track_distance {distance}: expected metres > 0')


def track_scores(tracks: Optional[ScoreTracks], detections, decay, distance):
    """Give the detections (in place) the decayed mean score of their tracks; returns the ScoreTracks of this
    frame. The frame's own score stays in extras['frame_score']."""
    centres = np.array([d.translation for d in detections], dtype=np.float64).reshape(-1, 3)
    class_ids = np.array([d.class_id for d in detections], dtype=np.int64)
    scores = np.array([d.score for d in detections], dtype=np.float64)
    score_sums, weight_sums = scores.copy(), np.ones(len(detections))
    if tracks is not None and len(tracks.centres) and len(detections):
        distances = np.linalg.norm(centres[:, None] - tracks.centres[None], axis=-1)            # (n, m)
        distances[class_ids[:, None] != tracks.class_ids[None]] = np.inf
        taken = np.zeros(len(tracks.centres), dtype=bool)
        for index in np.argsort(-scores, kind='stable'):
            candidates = np.where(taken, np.inf, distances[index])
            previous = int(np.argmin(candidates))
            if candidates[previous] < distance:
                taken[previous] = True
                score_sums[index] += decay * tracks.score_sums[previous]
                weight_sums[index] += decay * tracks.weight_sums[previous]
    for detection, score_sum, weight_sum in zip(detections, score_sums, weight_sums):
        detection.extras['frame_score'] = detection.score
        detection.score = float(score_sum / weight_sum)
    return ScoreTracks(centres, class_ids, score_sums, weight_sums)
