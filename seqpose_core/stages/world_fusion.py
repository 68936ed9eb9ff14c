"""Object tracks fused in the world (inference.world_fusion): what a video gives that one frame cannot.

One RGB frame pins an object's viewing ray well and its depth poorly: the depth error of a monocular model is
mostly one scale per instance that stays for the whole video (the instance's metric size is not in the image).
A camera that moves sees the object along rays that cross: with the camera's motion as the robot's odometry
reports it, the rays of a track meet at the object's centre, and that is metric, whatever the model thought
of the object's size (parallax; the same the naive triangulation of the issue that asked for this measured:
80 % of centres within 10 cm against the model's 60 % on 300-frame videos).

Per track (the tracker's ids, `seqpose_core.stages.tracks`), in the world frame of the sequence's first camera
(chained from the per-frame camera motion), the estimate is a product of Gaussians:

- each frame's ray from the camera centre o_i through the model's centre c_i (range r_i, direction d_i)
  constrains the centre across the ray: information (I - d_i d_i^T) / (bearing_sigma r_i)^2. The model's
  bearing errors of one object are correlated from frame to frame, so N rays count as N / (1 + (N - 1) rho)
  independent ones (rho: `bearing_correlation`);
- the model's own depth is the prior, counted once (its error is one bias per instance, not noise that
  averages out): along the mean ray, at the mean of the model's centres, sigma = depth_sigma x the range.

With one view the estimate is the model's centre; as the baseline grows the rays take over. The published
centre is the estimate in the current camera; the size follows the depth (the model's size and depth are one
guess: at k times the depth the object is k times as large); extras['position_covariance'] (3, 3, camera frame)
shrinks as evidence grows. An observation off the estimate by more than `move_gate` metres across its ray is
not fused, nor one whose model range over the fused range leaves the track's usual ratio by more than
`depth_gate` (a move along the ray: the model's depth bias of one instance is nearly constant): the model's own
centre is published, and after `restart_after` such frames in a row the object has moved (picked up, slid) and its
fusion starts again from its new place: at the depth the old fusion measured for this instance (`carry_depth`: its
depth bias is the instance's, wherever it stands), so it is back within a few centimetres as soon as the move is
seen instead of waiting a second for the parallax to undo the model's depth error. A new track id whose ray passes
within `move_gate` of a fused track of its class that was not seen this frame takes that track's fusion over (the
tracker loses objects that flicker out for more than a few frames; the world keeps them).

The rotation of an asymmetric object (camera, laptop, mug; `rotation`) is the score-weighted mode of its recent
world rotations (`fused_rotation`): one view may hide a mug's handle or a laptop's hinge, the views that show it
agree. Bottles, bowls and cans have only an up axis, which the support plane stage already shares.

Without camera motion (no odometry) there is no world to fuse in: the stage passes detections through, and a
frame without motion starts the world afresh; with `image_motion` the motion is measured from the image instead
(seqpose_core.stages.image_motion; off by default: it gained on selection video and lost on held-out video).
Single mode: each frame stands alone, no fusion.
"""

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from seqpose_core import SYMMETRIC_CLASS_NAMES
from seqpose_core.detection import Detection
from seqpose_core.stages import Stage
from seqpose_core.stages.image_motion import ImageMotionSettings, ImageMotionState, image_motion

# tracks unseen for this many frames are forgotten (the tracker never gives their ids again)
FORGET_AFTER_FRAMES = 300
RATIO_AVERAGING = 0.1  # weight of the newest view in the moving average of the range ratio (about 10 views)


@dataclass(frozen=True)
class FusedTrack:
    """Sums over one track's fused observations, all in the world frame."""

    ray_information: np.ndarray  # (3, 3) sum of (I - d d^T) / (bearing_sigma r)^2
    ray_weighted: np.ndarray  # (3,) the same matrices times each observation's centre
    centre_sum: np.ndarray  # (3,) sum of the model's centres
    direction_sum: np.ndarray  # (3,) sum of the viewing directions
    range_sum: float
    views: int
    outliers: int = 0  # consecutive observations off the estimate
    last_frame: int = 0
    class_id: int = 0
    # the latest `rotation_history` world rotations (k, 3, 3) and their scores (k,): asymmetric classes only
    rotations: Optional[np.ndarray] = None
    rotation_scores: Optional[np.ndarray] = None
    rotation_support: Optional[np.ndarray] = None  # (k,) the score of the rotations within the gate of each
    # what the track last published: (score, size (3,), world rotation (3, 3)), for coasting
    published: Optional[tuple] = None
    # the model's range over the fused range, a moving average over the fused views (it follows the estimate as it
    # converges): one instance's depth bias is nearly constant, so a view whose ratio leaves it saw the object
    # somewhere else along its ray (it moved)
    range_ratio: float = 1.0
    range_ratios: int = 0
    # what the model's ranges of this track are divided by before they are fused: 1, or, after the object moved,
    # the range ratio its earlier fusion measured (the same instance keeps its depth bias wherever it stands, so
    # the new place starts at the metric depth instead of waiting for parallax)
    depth_correction: float = 1.0
    depth_sigma: Optional[float] = None  # the prior's sigma as a fraction of the range (None: settings.depth_sigma)


@dataclass(frozen=True)
class WorldState:
    """world_from_camera (4, 4) of the current frame (the world: the sequence's first camera with motion),
    the frame count, and the fused tracks by track id."""

    world_from_camera: np.ndarray
    frame: int = 0
    tracks: dict = field(default_factory=dict)
    image_motion: Optional[ImageMotionState] = None  # the keyframe of the image's motion (no odometry)


def _observation(settings, world_from_camera, centre_camera, class_id=0):
    """(FusedTrack of one observation, its centre in the world, camera centre, direction, range)."""
    origin = world_from_camera[:3, 3]
    centre = world_from_camera[:3, :3] @ centre_camera + origin
    offset = centre - origin
    distance = max(float(np.linalg.norm(offset)), 1e-6)
    direction = offset / distance
    information = (np.eye(3) - np.outer(direction, direction)) / (settings.bearing_sigma * distance) ** 2
    single = FusedTrack(information, information @ centre, centre, direction, distance, 1, class_id=class_id)
    return single, centre, origin, direction, distance


def _agreeing(rotations, rotation, gate_deg):
    """(k,) bool: which of rotations (k, 3, 3) lie within gate_deg of `rotation` (trace(Ra^T Rb) = 1 + 2 cos)."""
    return np.einsum('kij,ij->k', rotations, rotation) >= 1.0 + 2.0 * np.cos(np.radians(gate_deg))


def _with_rotation(track: FusedTrack, rotation_world, score, settings):
    """The track with one more world rotation (the oldest dropped beyond rotation_history), each rotation's
    support (the score within the gate of it) kept up to date in O(k)."""
    if track.rotations is None:
        return replace(
            track, rotations=rotation_world[None], rotation_scores=np.array([score]), rotation_support=np.array([score])
        )
    rotations, scores, support = track.rotations, track.rotation_scores, track.rotation_support
    agree = _agreeing(rotations, rotation_world, settings.rotation_gate_deg)
    support = np.concatenate([support + score * agree, [score + agree @ scores]])
    rotations = np.concatenate([rotations, rotation_world[None]])
    scores = np.concatenate([scores, [score]])
    if len(rotations) > settings.rotation_history:
        oldest = _agreeing(rotations, rotations[0], settings.rotation_gate_deg)
        support = (support - scores[0] * oldest)[1:]
        rotations, scores = rotations[1:], scores[1:]
    return replace(track, rotations=rotations, rotation_scores=scores, rotation_support=support)


def fused_rotation(rotations, scores, support, gate_deg):
    """The score-weighted mode of rotations (k, 3, 3): the one with the most support (score within gate_deg of
    it), then the chordal mean of those (the nearest rotation to their weighted sum). A mug whose handle shows in
    some views and not in others keeps the azimuth most views agreed on, not the average of two."""
    chosen = _agreeing(rotations, rotations[int(np.argmax(support))], gate_deg)
    u, _, vt = np.linalg.svd(np.einsum('k,kij->ij', scores[chosen], rotations[chosen]))
    return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


def _merged(track: FusedTrack, new: FusedTrack, frame, keep=1.0):
    """The track with one more view; the evidence before it weighs `keep` (world_fusion.forget)."""
    return replace(
        track,
        ray_information=keep * track.ray_information + new.ray_information,
        ray_weighted=keep * track.ray_weighted + new.ray_weighted,
        centre_sum=keep * track.centre_sum + new.centre_sum,
        direction_sum=keep * track.direction_sum + new.direction_sum,
        range_sum=keep * track.range_sum + new.range_sum,
        views=track.views + 1 if keep == 1.0 else keep * track.views + 1,
        outliers=0,
        last_frame=frame,
    )


def _corrected_observation(settings, world_from_camera, detection, correction):
    """The FusedTrack of one observation whose model range is divided by `correction` (depth_correction)."""
    return _observation(settings, world_from_camera, detection.translation / correction, detection.class_id)[0]


def _restarted(track: FusedTrack, detection, world_from_camera, frame, settings):
    """The fusion of a track that moved, started again from this observation: at the depth its earlier fusion
    measured for this instance (settings.carry_depth and a ratio of at least 10 views), else at the model's."""
    known = settings.carry_depth and track.range_ratios >= 10
    correction = track.range_ratio if known else 1.0
    new = _corrected_observation(settings, world_from_camera, detection, correction)
    if not known:
        return replace(new, last_frame=frame)
    return replace(
        new,
        last_frame=frame,
        depth_correction=correction,
        depth_sigma=settings.carried_depth_sigma,
        range_ratio=track.range_ratio,
        range_ratios=track.range_ratios,
    )


def _across(centre, origin, direction):
    """Distance of `centre` from the ray (origin, unit direction)."""
    return float(np.linalg.norm((np.eye(3) - np.outer(direction, direction)) @ (centre - origin)))


def _lost_track(tracks, seen, class_id, origin, direction, settings):
    """The id of the fused track of `class_id` not seen this frame whose estimate lies nearest the ray, within
    move_gate of it: a new track id there is the same object, which the tracker lost for a while."""
    best, best_distance = None, settings.move_gate
    for track_id, track in tracks.items():
        if track_id in seen or track.class_id != class_id or track.views < 2:
            continue
        distance = _across(estimate(track, settings)[0], origin, direction)
        if distance < best_distance:
            best, best_distance = track_id, distance
    return best


def estimate(track: FusedTrack, settings):
    """(centre (3,), covariance (3, 3)) of a track in the world frame."""
    views = track.views
    independent = 1.0 / (1.0 + (views - 1) * settings.bearing_correlation)
    prior_centre = track.centre_sum / views
    direction = track.direction_sum / max(float(np.linalg.norm(track.direction_sum)), 1e-12)
    relative = settings.depth_sigma if track.depth_sigma is None else track.depth_sigma
    prior_sigma = relative * track.range_sum / views
    prior = np.outer(direction, direction) / prior_sigma**2
    information = independent * track.ray_information + prior
    covariance = np.linalg.inv(information)
    centre = covariance @ (independent * track.ray_weighted + prior @ prior_centre)
    return centre, covariance


def coasted_detections(tracks, seen, detections, frame, camera_from_world, context, settings):
    """Detections for the well-fused tracks not detected this frame (unseen for at most coast_frames, at least
    coast_min_views fused) whose centre is in view and has no detection of its class near it: the object is still
    there, the detector missed it in this view. Their score decays by coast_decay a frame unseen."""
    height, width = context.image_rgb.shape[:2]
    out = []
    for track_id, track in tracks.items():
        unseen = frame - track.last_frame
        if track_id in seen or track.published is None or track.views < settings.coast_min_views:
            continue
        if not 1 <= unseen <= settings.coast_frames:
            continue
        centre = camera_from_world[:3, :3] @ estimate(track, settings)[0] + camera_from_world[:3, 3]
        if centre[2] < 0.05:
            continue
        u, v, _ = np.asarray(context.K, dtype=np.float64) @ (centre / centre[2])
        if not (0 <= u < width and 0 <= v < height):
            continue
        if any(
            d.class_id == track.class_id and np.linalg.norm(d.translation - centre) < settings.move_gate
            for d in detections
        ):
            continue
        score, size, rotation_world = track.published
        out.append(
            Detection(
                track.class_id,
                score * settings.coast_decay**unseen,
                camera_from_world[:3, :3] @ rotation_world,
                centre,
                size.copy(),
                track_id=track_id,
                extras={'coasted_frames': unseen, 'fused_views': track.views},
            )
        )
    return out


class WorldFusionStage(Stage):
    name = 'world_fusion'
    changes_scores = True  # coasted detections carry a decayed score

    def __init__(self, model, inference):
        self.settings = inference.world_fusion
        self.image_motion_settings = ImageMotionSettings.of(self.settings)

    def apply(self, detections, context, state: Optional[WorldState]):
        settings = self.settings
        if not settings.enabled or context.mode != 'video':
            return detections, None
        motion, image_state = context.camera_motion, None
        if motion is None and settings.image_motion:
            motion, image_state = image_motion(
                state.image_motion if state is not None else None,
                context.image_rgb,
                context.K,
                detections,
                self.image_motion_settings,
            )
        if state is None or motion is None:
            # the first frame of a sequence, or no motion known: the world starts at this camera
            state = WorldState(np.eye(4), image_motion=image_state)
        else:
            previous_from_current = np.linalg.inv(np.asarray(motion, dtype=np.float64))
            state = WorldState(
                state.world_from_camera @ previous_from_current, state.frame + 1, state.tracks, image_state
            )
        world_from_camera, frame = state.world_from_camera, state.frame
        camera_from_world = np.linalg.inv(world_from_camera)
        tracks = {
            track_id: track
            for track_id, track in state.tracks.items()
            if frame - track.last_frame <= FORGET_AFTER_FRAMES
        }
        seen = {detection.track_id for detection in detections}
        for detection in detections:
            if detection.track_id < 0:
                continue
            new, centre, origin, direction, distance = _observation(
                settings, world_from_camera, detection.translation, detection.class_id
            )
            track = tracks.get(detection.track_id)
            if track is None:
                lost = _lost_track(tracks, seen, detection.class_id, origin, direction, settings)
                if lost is None:
                    tracks[detection.track_id] = replace(new, last_frame=frame)
                    continue
                track = tracks.pop(lost)  # the same object under a new track id: its fusion carries over
                detection.extras['fused_from_track'] = lost
            if track.depth_correction != 1.0:
                new = _corrected_observation(settings, world_from_camera, detection, track.depth_correction)
            fused, _ = estimate(track, settings)
            ratio = distance / max(float(np.linalg.norm(fused - origin)), 1e-6)
            usual = track.range_ratio if track.range_ratios else ratio
            off_depth = (
                settings.depth_gate > 0 and track.range_ratios >= 10 and abs(ratio / usual - 1.0) > settings.depth_gate
            )
            if _across(fused, origin, direction) > settings.move_gate or off_depth:
                if track.outliers + 1 >= settings.restart_after:  # it moved: fuse again from its new place
                    tracks[detection.track_id] = _restarted(track, detection, world_from_camera, frame, settings)
                else:
                    tracks[detection.track_id] = replace(track, outliers=track.outliers + 1, last_frame=frame)
                continue  # the model's own centre this frame
            track = replace(
                _merged(track, new, frame, settings.keep),
                range_ratio=usual + RATIO_AVERAGING * (ratio - usual),
                range_ratios=track.range_ratios + 1,
            )
            if settings.rotation and detection.class_name not in SYMMETRIC_CLASS_NAMES:
                rotation_world = world_from_camera[:3, :3] @ detection.rotation
                track = _with_rotation(track, rotation_world, detection.score, settings)
                detection.extras['model_rotation'] = detection.rotation
                detection.rotation = camera_from_world[:3, :3] @ fused_rotation(
                    track.rotations, track.rotation_scores, track.rotation_support, settings.rotation_gate_deg
                )
            tracks[detection.track_id] = track
            fused, covariance = estimate(track, settings)
            centre_camera = camera_from_world[:3, :3] @ fused + camera_from_world[:3, 3]
            model_range = max(float(np.linalg.norm(detection.translation)), 1e-6)
            detection.extras['model_translation'] = detection.translation
            detection.extras['model_size'] = detection.size
            detection.translation = centre_camera
            detection.size = detection.size * (float(np.linalg.norm(centre_camera)) / model_range)
            detection.extras['fused_views'] = track.views
            detection.extras['position_covariance'] = camera_from_world[:3, :3] @ covariance @ world_from_camera[:3, :3]
            tracks[detection.track_id] = replace(
                track, published=(detection.score, detection.size, world_from_camera[:3, :3] @ detection.rotation)
            )
        if settings.coast_frames > 0:
            detections = list(detections) + coasted_detections(
                tracks, seen, detections, frame, camera_from_world, context, settings
            )
        return detections, WorldState(world_from_camera, frame, tracks, state.image_motion)
