"""Track ids for a stream of detections: the same physical object keeps the same id from frame to frame.

The network re-detects every object in every frame (its query memory improves the estimates but carries no
identity), so ids are given afterwards by association in 3D:

- a detection can only continue a track of the same class;
- pairs are matched greedily, closest centres first, while the distance is below `max_distance` metres
  (objects on a table seen at camera rate move millimetres to centimetres between frames);
- with a known camera motion `T_cur_from_prev` the tracks are first carried into the current camera frame,
  so a moving camera does not break tracks;
- a track is `confirmed` once it has been matched in `confirm_hits` frames (one-frame false positives never
  get a TF frame), and it is forgotten after `max_misses` frames without a match.

Plain numpy, no ROS: used by the ROS node and the bag / evaluation tools alike.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class Track:
    track_id: int
    class_id: int
    translation: np.ndarray       # (3,) metres, in the camera frame of the last processed frame
    hits: int = 1                 # frames in which the track was matched (creation counts)
    misses: int = 0               # consecutive frames without a match
    confirmed: bool = False


class Tracker:
    def __init__(self, max_distance=0.1, confirm_hits=2, max_misses=5):
        if max_distance <= 0:
            raise ValueError(f'max_distance must be > 0 metres, got {max_distance}')
        if confirm_hits < 1:
            raise ValueError(f'confirm_hits must be >= 1, got {confirm_hits}')
        if max_misses < 0:
            raise ValueError(f'max_misses must be >= 0, got {max_misses}')
        self.max_distance = float(max_distance)
        self.confirm_hits = int(confirm_hits)
        self.max_misses = int(max_misses)
        self.tracks = []
        self.next_id = 1

    def reset(self):
        """Forget every track. Ids keep counting up, so an id is never given to two different objects
        within one run (a consumer that still holds an old id cannot confuse it with a new object)."""
        self.tracks = []

    def update(self, detections, camera_motion=None):
        """Give every detection a `track_id` (set in place) and `extras['confirmed']` / `extras['track_hits']`;
        returns the same list."""
        if camera_motion is not None:
            motion = np.asarray(camera_motion, dtype=np.float64)
            for track in self.tracks:
                track.translation = motion[:3, :3] @ track.translation + motion[:3, 3]

        pairs = []
        for d_index, detection in enumerate(detections):
            position = np.asarray(detection.translation, dtype=np.float64)
            for t_index, track in enumerate(self.tracks):
                if track.class_id != int(detection.class_id):
                    continue
                distance = float(np.linalg.norm(position - track.translation))
                if distance < self.max_distance:
                    pairs.append((distance, d_index, t_index))
        pairs.sort()

        matched_detections, matched_tracks = {}, set()
        for _distance, d_index, t_index in pairs:
            if d_index in matched_detections or t_index in matched_tracks:
                continue
            matched_detections[d_index] = t_index
            matched_tracks.add(t_index)

        for t_index, track in enumerate(self.tracks):
            if t_index not in matched_tracks:
                track.misses += 1
        survivors = [t for i, t in enumerate(self.tracks) if i in matched_tracks or t.misses <= self.max_misses]

        for d_index, detection in enumerate(detections):
            position = np.asarray(detection.translation, dtype=np.float64).copy()
            if d_index in matched_detections:
                track = self.tracks[matched_detections[d_index]]
                track.translation = position
                track.hits += 1
                track.misses = 0
            else:
                track = Track(self.next_id, int(detection.class_id), position)
                self.next_id += 1
                survivors.append(track)
            track.confirmed = track.confirmed or track.hits >= self.confirm_hits
            detection.track_id = track.track_id
            detection.extras['confirmed'] = track.confirmed
            detection.extras['track_hits'] = track.hits
        self.tracks = survivors
        return detections
