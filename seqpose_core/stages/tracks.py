"""The one tracker (inference.tracks): the same physical object keeps its track id from frame to frame, and in
video mode a detection publishes the decayed mean of its scores along its track.

The network re-detects every object in every frame (its query memory improves the estimates but carries no
identity), so identity is given afterwards, in 3D. Each detection, best score first, continues the nearest
track of its class within `distance` metres, the tracks carried into the current camera frame by the camera
motion when it is known:

1. first among the tracks seen in the previous frame: their scores carry over,
       score = sum_k decay^k s_(t-k) / sum_k decay^k       (k over the frames of the track, newest first)
   so a new track publishes its own score and a long one the mean of its recent ones (one frame's score says
   how sure the model is of this view; an object seen in every frame is surer than a flicker);
2. then among the tracks that went unseen for at most `max_misses` frames: the track (its id) continues, its
   score starts afresh.

A track is confirmed once seen in `confirm_hits` frames (a one-frame false positive never gets a TF frame).
Ids count up over the runner's life, across resets, so an id is never given to two objects in one run.
`Tracks` is an immutable value the runner owns, as it owns the query memory.
"""

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from seqpose_core.geometry import transform_points
from seqpose_core.stages import Stage


@dataclass(frozen=True)
class Tracks:
    """The live tracks after a frame, one row each: ids (n,), class ids (n,), centres (n, 3) metres in that
    frame's camera frame, the decayed sums of their scores and of their weights (n,), frames seen (n,),
    consecutive frames unseen (n,: 0 for those seen in that frame), confirmed (n,) bool; and the next new id."""

    ids: np.ndarray
    class_ids: np.ndarray
    centres: np.ndarray
    score_sums: np.ndarray
    weight_sums: np.ndarray
    hits: np.ndarray
    misses: np.ndarray
    confirmed: np.ndarray
    next_id: int = 1

    @staticmethod
    def empty(next_id=1) -> 'Tracks':
        return Tracks(
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros((0, 3)),
            np.zeros(0),
            np.zeros(0),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, bool),
            next_id,
        )

    def moved(self, camera_motion: Optional[np.ndarray]) -> 'Tracks':
        """The same tracks in the next camera's frame (camera_motion (4, 4) T_current_from_previous; None: the
        camera is taken to have stood still, as the query memory does without odometry)."""
        if camera_motion is None or not len(self.ids):
            return self
        return replace(self, centres=transform_points(np.asarray(camera_motion, dtype=np.float64), self.centres))

    @property
    def live_ids(self):
        return frozenset(int(i) for i in self.ids)


def _nearest(order, distances, candidates, distance, assigned):
    """Greedy: each detection of `order` (not yet assigned) takes the nearest free track among `candidates`
    (bool (m,)) within `distance`; distances (n, m) metres, inf across classes. Fills assigned[detection] = row."""
    if not candidates.any():
        return
    taken = np.zeros(distances.shape[1], dtype=bool)
    taken[list(assigned.values())] = True
    for index in order:
        if index in assigned:
            continue
        row_distances = np.where(taken | ~candidates, np.inf, distances[index])
        row = int(np.argmin(row_distances))
        if row_distances[row] < distance:
            taken[row] = True
            assigned[index] = row


def update_tracks(tracks: Tracks, detections, settings, smooth_scores):
    """Give the detections (in place) their track_id, extras['confirmed'] / ['track_hits'] and, with
    `smooth_scores`, the decayed mean score of their tracks (the frame's own in extras['frame_score']); returns
    the Tracks after this frame. `tracks` must already be in this frame's camera frame (Tracks.moved)."""
    count = len(detections)
    centres = np.array([d.translation for d in detections], dtype=np.float64).reshape(-1, 3)
    class_ids = np.array([d.class_id for d in detections], dtype=np.int64)
    scores = np.array([d.score for d in detections], dtype=np.float64)
    order = np.argsort(-scores, kind='stable')
    assigned = {}  # detection index -> row of `tracks`
    if len(tracks.ids) and count:
        distances = np.linalg.norm(centres[:, None] - tracks.centres[None], axis=-1)  # (n, m)
        distances[class_ids[:, None] != tracks.class_ids[None]] = np.inf
        _nearest(order, distances, tracks.misses == 0, settings.distance, assigned)
        _nearest(order, distances, tracks.misses > 0, settings.distance, assigned)

    decay = settings.score_decay
    ids, hits, confirmed = np.zeros(count, np.int64), np.ones(count, np.int64), np.zeros(count, bool)
    score_sums, weight_sums = scores.copy(), np.ones(count)
    next_id = tracks.next_id
    for index in range(count):
        row = assigned.get(index)
        if row is None:
            ids[index], next_id = next_id, next_id + 1
            continue
        ids[index], hits[index] = tracks.ids[row], tracks.hits[row] + 1
        confirmed[index] = tracks.confirmed[row]
        if tracks.misses[row] == 0:
            score_sums[index] += decay * tracks.score_sums[row]
            weight_sums[index] += decay * tracks.weight_sums[row]
    confirmed |= hits >= settings.confirm_hits
    for index, detection in enumerate(detections):
        detection.track_id = int(ids[index])
        detection.extras['confirmed'] = bool(confirmed[index])
        detection.extras['track_hits'] = int(hits[index])
        if smooth_scores:
            detection.extras['frame_score'] = detection.score
            detection.score = float(score_sums[index] / weight_sums[index])

    # the tracks not seen in this frame live on for max_misses frames
    unseen = np.ones(len(tracks.ids), dtype=bool)
    unseen[list(assigned.values())] = False
    unseen &= tracks.misses + 1 <= settings.max_misses
    return Tracks(
        ids=np.concatenate([ids, tracks.ids[unseen]]),
        class_ids=np.concatenate([class_ids, tracks.class_ids[unseen]]),
        centres=np.concatenate([centres, tracks.centres[unseen]]),
        score_sums=np.concatenate([score_sums, tracks.score_sums[unseen]]),
        weight_sums=np.concatenate([weight_sums, tracks.weight_sums[unseen]]),
        hits=np.concatenate([hits, tracks.hits[unseen]]),
        misses=np.concatenate([np.zeros(count, np.int64), tracks.misses[unseen] + 1]),
        confirmed=np.concatenate([confirmed, tracks.confirmed[unseen]]),
        next_id=next_id,
    )


class TrackStage(Stage):
    name = 'tracks'
    changes_scores = True

    def __init__(self, model, inference):
        self.settings = inference.tracks

    def initial_state(self):
        return Tracks.empty()

    def reset(self, state):
        return Tracks.empty(state.next_id if state is not None else 1)

    def apply(self, detections, context, state):
        # single mode: ids only (every frame stands alone for the scores, as for the memory)
        smooth = context.mode == 'video' and self.settings.score_decay > 0
        state = update_tracks(state.moved(context.camera_motion), detections, self.settings, smooth)
        return detections, state
