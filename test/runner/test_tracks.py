"""The one tracker (seqpose_core.stages.tracks): track ids, confirmation, coasting, camera motion, and in video
mode scores that remember (a detection's published score is the decayed mean of its scores along its track)."""

import functools

import numpy as np
import pytest

from helpers.tiny_runner import apply_stage, make_runner
from seqpose_core.config_schema import ConfigError
from seqpose_core.detection import Detection
from seqpose_core.stages.config import TrackSettings
from seqpose_core.stages.tracks import Tracks, update_tracks


def detection(class_id, centre, score=0.9):
    return Detection(
        class_id=class_id,
        score=score,
        rotation=np.eye(3),
        translation=np.asarray(centre, dtype=float),
        size=np.full(3, 0.1),
    )


def track(tracks, detections, motion=None, smooth=True, **settings):
    settings = TrackSettings(**{'score_decay': 0.5, 'distance': 0.1, **settings})
    return update_tracks((tracks or Tracks.empty()).moved(motion), detections, settings, smooth)


# --------------------------------------------------------------------------------------------- scores
def test_a_track_publishes_the_decayed_mean_of_its_scores():
    tracks, published = None, []
    for score in (0.9, 0.3, 0.6):
        mug = detection(6, [0.0, 0.0, 1.0], score)
        tracks = track(tracks, [mug])
        published.append(mug.score)
        assert mug.extras['frame_score'] == score
    assert published[0] == pytest.approx(0.9)  # a new track: its own score
    assert published[1] == pytest.approx((0.3 + 0.5 * 0.9) / 1.5)
    assert published[2] == pytest.approx((0.6 + 0.5 * 0.3 + 0.25 * 0.9) / 1.75)


def test_tracks_join_the_nearest_of_the_same_class_once_best_score_first():
    tracks = track(None, [detection(6, [0.0, 0.0, 1.0], 0.8), detection(4, [0.3, 0.0, 1.0], 0.2)])
    same_place_other_class = detection(4, [0.0, 0.0, 1.02], 0.6)
    near_mug = detection(6, [0.02, 0.0, 1.0], 0.4)
    second_near_mug = detection(6, [0.0, 0.03, 1.0], 0.3)  # the mug's track is taken by the better one
    far_mug = detection(6, [0.5, 0.0, 1.0], 0.5)
    track(tracks, [same_place_other_class, near_mug, second_near_mug, far_mug])
    assert same_place_other_class.score == pytest.approx(0.6)
    assert near_mug.score == pytest.approx((0.4 + 0.5 * 0.8) / 1.5) and near_mug.track_id == 1
    assert second_near_mug.score == pytest.approx(0.3) and far_mug.score == pytest.approx(0.5)
    assert len({d.track_id for d in (same_place_other_class, near_mug, second_near_mug, far_mug)}) == 4


def test_tracks_follow_the_camera_motion():
    tracks = track(None, [detection(6, [0.0, 0.0, 1.0], 0.8)])
    motion = np.eye(4)
    motion[0, 3] = 0.3  # the scene moves 30 cm in the camera
    moved = detection(6, [0.3, 0.0, 1.0], 0.4)
    track(tracks, [moved], motion)
    assert moved.score == pytest.approx((0.4 + 0.5 * 0.8) / 1.5) and moved.track_id == 1
    stayed = detection(6, [0.3, 0.0, 1.0], 0.4)
    track(tracks, [stayed])
    assert stayed.score == pytest.approx(0.4) and stayed.track_id == 2
    assert tracks.moved(None) is tracks


def test_ids_only_without_score_smoothing():
    tracks = track(None, [detection(6, [0.0, 0.0, 1.0], 0.8)], smooth=False)
    again = detection(6, [0.0, 0.0, 1.0], 0.4)
    track(tracks, [again], smooth=False)
    assert again.score == 0.4 and again.track_id == 1 and 'frame_score' not in again.extras


# --------------------------------------------------------------------------------------------- ids
def test_ids_are_stable_and_confirmed_after_two_hits():
    first = [detection(1, [0.0, 0, 1]), detection(6, [0.3, 0, 1])]
    tracks = track(None, first, confirm_hits=2)
    assert [d.track_id for d in first] == [1, 2] and [d.extras['confirmed'] for d in first] == [False, False]
    second = [detection(6, [0.32, 0, 1]), detection(1, [0.02, 0, 1])]  # moved a little, other order
    track(tracks, second, confirm_hits=2)
    assert [d.track_id for d in second] == [2, 1] and all(d.extras['confirmed'] for d in second)
    assert [d.extras['track_hits'] for d in second] == [2, 2]


def test_a_track_coasts_max_misses_frames_and_ids_are_never_reused():
    tracks = track(None, [detection(1, [0.0, 0, 1])], max_misses=1)
    tracks = track(tracks, [], max_misses=1)
    assert tracks.live_ids == {1}  # unseen once: still alive
    again = detection(1, [0.0, 0, 1], 0.3)
    tracks = track(tracks, [again], max_misses=1)
    assert again.track_id == 1 and again.score == pytest.approx(0.3)  # its id continues, its score starts afresh
    tracks = track(track(tracks, [], max_misses=1), [], max_misses=1)
    assert tracks.live_ids == frozenset()  # unseen twice: ended
    new = detection(1, [0.0, 0, 1])
    tracks = track(tracks, [new], max_misses=1)
    assert new.track_id == 2


def test_runner_tracks_thresholds_the_mean_and_reset_keeps_counting_ids(tiny):
    video = make_runner(tiny, mode='video', score_threshold=0.5, **{'tracks.score_decay': 0.5})
    run = functools.partial(apply_stage, video, 'tracks')
    assert [d.score for d in run([detection(6, [0.0, 0.0, 1.0], 0.9)])] == [pytest.approx(0.9)]
    # 0.55 alone passes 0.5; the track's mean with the earlier 0.9 is higher, a new 0.52 stays itself
    second = run([detection(6, [0.0, 0.0, 1.0], 0.55), detection(3, [0.4, 0, 1], 0.52)])
    assert [d.score for d in second] == [pytest.approx((0.55 + 0.45) / 1.5), pytest.approx(0.52)]
    assert run([detection(6, [0.0, 0.0, 1.0], 0.1)]) == []  # (0.1 + 0.5 x 1.0) / 1.75 < 0.5
    next_id = video.tracks.next_id
    video.reset()
    assert len(video.tracks.ids) == 0 and video.tracks.next_id == next_id
    video.configure(mode='single')
    (alone,) = run([detection(6, [0.0, 0.0, 1.0], 0.7)])
    assert alone.score == 0.7 and alone.track_id == next_id  # single mode: ids, no smoothing


@pytest.mark.parametrize(
    'setting, value',
    [('tracks.score_decay', 1.0), ('tracks.score_decay', -0.1), ('tracks.distance', 0.0), ('tracks.confirm_hits', 0)],
)
def test_bad_track_settings_are_named(tiny, setting, value):
    with pytest.raises(ConfigError, match=f'inference.{setting}'):
        make_runner(tiny, **{setting: value})
