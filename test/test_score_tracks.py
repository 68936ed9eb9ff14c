"""Score tracks: a detection's published score is the decayed mean of its scores along its track (video mode)."""

import numpy as np
import pytest

from seqpose_core.detection import Detection
from seqpose_core.score_tracks import ScoreTracks, track_scores
from tiny_runner import make_runner, tiny_model


def detection(class_id, centre, score):
    return Detection(class_id=class_id, score=score, rotation=np.eye(3), translation=np.asarray(centre, dtype=float),
                     size=np.full(3, 0.1))


def test_a_track_publishes_the_decayed_mean_of_its_scores():
    tracks = None
    published = []
    for score in (0.9, 0.3, 0.6):
        mug = detection(6, [0.0, 0.0, 1.0], score)
        tracks = track_scores(tracks, [mug], decay=0.5, distance=0.1)
        published.append(mug.score)
        assert mug.extras['frame_score'] == score
    assert published[0] == pytest.approx(0.9)                          # a new track: its own score
    assert published[1] == pytest.approx((0.3 + 0.5 * 0.9) / 1.5)
    assert published[2] == pytest.approx((0.6 + 0.5 * 0.3 + 0.25 * 0.9) / 1.75)


def test_tracks_join_the_nearest_of_the_same_class_once():
    tracks = track_scores(None, [detection(6, [0.0, 0.0, 1.0], 0.8), detection(4, [0.3, 0.0, 1.0], 0.2)], 0.5, 0.1)
    same_place_other_class = detection(4, [0.0, 0.0, 1.02], 0.6)
    near_mug = detection(6, [0.02, 0.0, 1.0], 0.4)
    second_near_mug = detection(6, [0.0, 0.03, 1.0], 0.3)        # the mug's track is taken by the better one
    far_mug = detection(6, [0.5, 0.0, 1.0], 0.5)
    track_scores(tracks, [same_place_other_class, near_mug, second_near_mug, far_mug], 0.5, 0.1)
    assert same_place_other_class.score == pytest.approx(0.6)
    assert near_mug.score == pytest.approx((0.4 + 0.5 * 0.8) / 1.5)
    assert second_near_mug.score == pytest.approx(0.3) and far_mug.score == pytest.approx(0.5)


def test_tracks_follow_the_camera_motion():
    tracks = track_scores(None, [detection(6, [0.0, 0.0, 1.0], 0.8)], 0.5, 0.1)
    motion = np.eye(4)
    motion[0, 3] = 0.3                                                  # the scene moves 30 cm in the camera
    moved = detection(6, [0.3, 0.0, 1.0], 0.4)
    track_scores(tracks.moved(motion), [moved], 0.5, 0.1)
    assert moved.score == pytest.approx((0.4 + 0.5 * 0.8) / 1.5)
    stayed = detection(6, [0.3, 0.0, 1.0], 0.4)
    track_scores(tracks, [stayed], 0.5, 0.1)
    assert stayed.score == pytest.approx(0.4)
    assert tracks.moved(None) is tracks


tiny = pytest.fixture(scope='module', name='tiny')(tiny_model)


def test_runner_tracks_in_video_mode_only_and_thresholds_the_mean(tiny):
    video = make_runner(tiny, mode='video', score_threshold=0.5, score_track_decay=0.5)
    first = video.track_detection_scores([detection(6, [0.0, 0.0, 1.0], 0.9)], None)
    assert [d.score for d in first] == [pytest.approx(0.9)] and isinstance(video.score_tracks, ScoreTracks)
    # 0.55 alone passes 0.5; the track's mean with the earlier 0.9 is higher, a new 0.52 stays itself
    second = video.track_detection_scores([detection(6, [0.0, 0.0, 1.0], 0.55), detection(3, [0.4, 0, 1], 0.52)],
                                          None)
    assert [d.score for d in second] == [pytest.approx((0.55 + 0.45) / 1.5), pytest.approx(0.52)]
    dropped = video.track_detection_scores([detection(6, [0.0, 0.0, 1.0], 0.1)], None)
    assert dropped == []                                                 # (0.1 + 0.5 x 1.0) / 1.75 < 0.5
    video.reset()
    assert video.score_tracks is None

    single = make_runner(tiny, mode='single', score_track_decay=0.5)
    alone = [detection(6, [0.0, 0.0, 1.0], 0.7)]
    single.track_detection_scores(alone, None)
    assert alone[0].score == 0.7 and single.score_tracks is None


@pytest.mark.parametrize('setting, value', [('score_track_decay', 1.0), ('score_track_decay', -0.1),
                                            ('score_track_distance', 0.0)])
def test_bad_track_settings_are_named(tiny, setting, value):
    with pytest.raises(ValueError, match=f'inference.{setting}'):
        make_runner(tiny, **{setting: value})
