"""Bag writing and reading: message conventions, from-nocs read back by an independent reader (mcap +
mcap-ros2-support), and every damaged-bag case read as far as it is usable with the reason reported."""

import numpy as np
import pytest

from helpers.bags import FRAMES, SCENES, generate_scenes, synthetic_frame_bag, truncate_recording
from seqpose_core.bag import messages as M
from seqpose_core.bag.frames import REORDER_WINDOW, BagFrames, ReplayTopics
from seqpose_core.bag.from_nocs import write_nocs_bag
from seqpose_core.bag.io import BagError, BagReader
from seqpose_core.detection import Detection


@pytest.fixture(scope='module')
def scenes_root(tmp_path_factory):
    return generate_scenes(tmp_path_factory.mktemp('scenes'))


def _reasons(skipped):
    return ' | '.join(f'{e["what"]}: {e["reason"]}' for e in skipped.entries())


def _frames(bag, **kwargs):
    source = BagFrames(bag, **kwargs)
    return source, list(source.frames())


def _rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


@pytest.mark.parametrize('angle', [0.0, 0.7, 3.1, np.pi])
def test_detection_array_round_trip_keeps_class_pose_size_and_handle_flag(angle):
    rotation = _rotation([0.3, -1.0, 0.2], angle)
    detections = [
        Detection(
            class_id=6,
            score=0.75,
            rotation=rotation,
            translation=np.array([0.1, -0.2, 0.9]),
            size=np.array([0.12, 0.09, 0.1]),
            track_id=4,
        ),
        Detection(
            class_id=1,
            score=0.5,
            rotation=np.eye(3),
            translation=np.array([0, 0, 1.0]),
            size=np.array([0.05, 0.2, 0.05]),
            track_id=-1,
        ),
    ]
    msg = M.detection_array_msg(detections, 1_234_000_000_567, handle_visibility=[0, 1])
    store = M.typestore()
    decoded = store.deserialize_cdr(store.serialize_cdr(msg, M.DETECTION_ARRAY_TYPE), M.DETECTION_ARRAY_TYPE)
    objects, problems = M.detection_array_to_objects(decoded)
    assert problems == []
    assert M.stamp_to_ns(decoded.header.stamp) == 1_234_000_000_567
    assert decoded.detections[0].results[0].hypothesis.class_id == 'mug'
    assert [o.handle_visibility for o in objects] == [0, 1]
    for original, read in zip(detections, objects):
        assert read.detection.class_id == original.class_id
        assert read.detection.score == pytest.approx(original.score)
        assert read.detection.track_id == original.track_id
        np.testing.assert_allclose(read.detection.rotation, original.rotation, atol=1e-12)
        np.testing.assert_array_equal(read.detection.translation, original.translation)
        np.testing.assert_array_equal(read.detection.size, original.size)


def test_detection_array_with_unknown_class_is_reported_not_guessed():
    msg = M.detection_array_msg(
        [Detection(class_id=2, score=1, rotation=np.eye(3), translation=np.ones(3), size=np.ones(3))], 5
    )
    msg.detections[0].results[0].hypothesis.class_id = 'teapot'
    objects, problems = M.detection_array_to_objects(msg)
    assert objects == [] and 'teapot' in problems[0]
    assert M.parse_object_id('7') == {'track': 7}  # what a plain publisher (the node) writes


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_from_nocs_writes_what_the_data_reader_reads(scenes_root, tmp_path, storage):
    from seqpose_core.data import NocsFrameReader, iter_scenes

    bag = tmp_path / 'scenes_bag'
    summary = write_nocs_bag([scenes_root / 'Real' / 'test'], bag, storage=storage, progress=False)
    assert [s[1] for s in summary.scenes] == [FRAMES] * SCENES
    source, frames = _frames(bag)
    assert not source.skipped, _reasons(source.skipped)
    reader = NocsFrameReader(scenes_root, 'Real/test')
    expected = [
        (scene, reader.read(prefix)) for scene, prefixes in iter_scenes(scenes_root, 'Real/test') for prefix in prefixes
    ]
    assert [(f.scene, f.frame) for f in frames] == [(s, e.frame) for s, e in expected]
    # scenes are separated by stamp jumps larger than the runner's max_frame_gap (the runner resets there)
    gaps = np.diff([f.stamp_s for f in frames])
    assert [bool(gap > 1.0) for gap in gaps] == [(i + 1) % FRAMES == 0 for i in range(FRAMES * SCENES - 1)]
    for frame, (_, nocs) in zip(frames, expected):
        np.testing.assert_array_equal(frame.rgb, nocs.color)
        np.testing.assert_array_equal(frame.K, nocs.K)
        annotation = nocs.annotation
        assert [o.detection.class_id for o in frame.gt] == annotation.class_ids.tolist()
        assert [o.handle_visibility for o in frame.gt] == annotation.handle_visibility.tolist()
        np.testing.assert_allclose([o.detection.size for o in frame.gt], annotation.sizes, rtol=1e-12)
        # labels hold float32 rotations (orthonormal to ~1e-8); a quaternion carries the nearest rotation
        np.testing.assert_allclose([o.detection.rotation for o in frame.gt], annotation.rotations, atol=1e-7)
        np.testing.assert_array_equal([o.detection.translation for o in frame.gt], annotation.translations)


def test_from_nocs_bag_is_read_by_mcap_ros2_independent_reader(scenes_root, tmp_path):
    from mcap_ros2.reader import read_ros2_messages

    bag = tmp_path / 'independent'
    write_nocs_bag([scenes_root / 'Real' / 'test' / 'scene_1'], bag, progress=False)
    counts, first_gt, first_image, stamps = {}, None, None, []
    odometry = {}
    for item in read_ros2_messages(str(next(bag.glob('*.mcap')))):
        counts[item.channel.topic] = counts.get(item.channel.topic, 0) + 1
        if item.channel.topic == M.GT_TOPIC and first_gt is None:
            first_gt = item.ros_msg
        if item.channel.topic == M.IMAGE_TOPIC:
            first_image = first_image or item.ros_msg
            stamps.append(item.ros_msg.header.stamp.sec * 10**9 + item.ros_msg.header.stamp.nanosec)
        if item.channel.topic in (M.ODOMETRY_TOPIC, M.TF_TOPIC):
            odometry.setdefault(item.channel.topic, item.ros_msg)
    assert counts == {
        M.IMAGE_TOPIC: FRAMES,
        M.CAMERA_INFO_TOPIC: FRAMES,
        M.GT_TOPIC: FRAMES,
        M.FRAME_NAME_TOPIC: FRAMES,
        M.ODOMETRY_TOPIC: FRAMES,  # the scene's odometry.txt, as nav_msgs/Odometry and TF odom -> camera
        M.TF_TOPIC: FRAMES,
    }
    reading = odometry[M.ODOMETRY_TOPIC]
    assert reading.header.frame_id == 'odom' and reading.child_frame_id == M.CAMERA_FRAME_ID
    (transform,) = odometry[M.TF_TOPIC].transforms
    assert transform.header.frame_id == 'odom' and transform.child_frame_id == M.CAMERA_FRAME_ID
    assert transform.transform.translation.x == reading.pose.pose.position.x
    assert first_image.encoding == 'rgb8' and (first_image.width, first_image.height) == (160, 120)
    assert np.all(np.diff(stamps) == 33_333_333)
    det = first_gt.detections[0]
    assert det.results[0].hypothesis.class_id in ('bottle', 'bowl', 'camera', 'can', 'laptop', 'mug')
    assert 'handle_visibility=' in det.id and det.bbox.size.x > 0.01


def test_compressed_png_is_lossless_and_jpeg_close(scenes_root, tmp_path):
    scene = scenes_root / 'Real' / 'test' / 'scene_1'
    write_nocs_bag([scene], tmp_path / 'raw', progress=False)
    raw = [f.rgb for f in _frames(tmp_path / 'raw')[1]]
    write_nocs_bag([scene], tmp_path / 'png', compressed='png', progress=False)
    write_nocs_bag([scene], tmp_path / 'jpeg', compressed='jpeg', progress=False)
    png_source, png = _frames(tmp_path / 'png')
    assert png_source.topics.image == M.COMPRESSED_IMAGE_TOPIC
    for a, b in zip(raw, png):
        np.testing.assert_array_equal(a, b.rgb)
    jpeg = _frames(tmp_path / 'jpeg')[1]
    assert len(jpeg) == len(raw)
    assert np.mean([np.abs(a.astype(int) - b.rgb).mean() for a, b in zip(raw, jpeg)]) < 8


# ---------------------------------------------------------------------------------------- damaged bags


def test_missing_image_topic_names_the_topic_and_lists_what_is_there(tmp_path):
    bag = synthetic_frame_bag(tmp_path / 'b', frames=2)
    with pytest.raises(BagError, match=r'/wrong/image is not in the bag.*/camera/color/camera_info'):
        BagFrames(bag, ReplayTopics(image='/wrong/image'))
    with pytest.raises(BagError, match='no such bag'):
        BagFrames(tmp_path / 'nothing_here')


def test_images_without_camera_info_are_skipped_unless_intrinsics_are_given(tmp_path):
    bag = synthetic_frame_bag(tmp_path / 'b', frames=4, camera_info=False)
    source, frames = _frames(bag)
    assert frames == []
    assert 'no CameraInfo' in _reasons(source.skipped) and source.skipped.entries()[0]['count'] == 4
    source, frames = _frames(bag, intrinsics=(150, 150, 80, 60))
    assert len(frames) == 4 and np.allclose(frames[0].K[0], [150, 0, 80])


def test_unknown_encoding_is_skipped_with_its_name(tmp_path):
    bag = synthetic_frame_bag(tmp_path / 'b', frames=3, encoding='yuv422')
    source, frames = _frames(bag)
    assert frames == []
    assert "unsupported image encoding 'yuv422'" in _reasons(source.skipped)


def test_out_of_order_stamps_are_reordered_duplicates_and_very_late_frames_skipped(tmp_path):
    period = 33_333_333
    stamps = [1_000_000_000 + i * period for i in range(REORDER_WINDOW + 6)]
    stamps[3], stamps[4] = stamps[4], stamps[3]  # swapped: reordered
    stamps.append(stamps[10])  # duplicate of a frame long replayed
    stamps.append(stamps[0] - period)  # far too late to reorder
    bag = synthetic_frame_bag(tmp_path / 'b', stamps_ns=stamps)
    source, frames = _frames(bag)
    replayed = [f.stamp_ns for f in frames]
    assert replayed == sorted(set(stamps[:-2]))
    reasons = _reasons(source.skipped)
    assert 'duplicate header stamp' in reasons and 'out of order by more than' in reasons
    assert any('replayed in stamp order' in note for note in source.skipped.notes)


def test_killed_mcap_recording_is_read_up_to_the_damage(tmp_path):
    bag = synthetic_frame_bag(tmp_path / 'b', frames=40)  # ~57 kB images: several 1 MiB chunks
    killed = truncate_recording(bag, tmp_path / 'killed', keep_fraction=0.6)
    source, frames = _frames(killed)
    assert 0 < len(frames) < 40
    assert [f.stamp_ns for f in frames] == sorted(f.stamp_ns for f in frames)
    reasons = _reasons(source.skipped)
    assert 'metadata.yaml: missing' in reasons and 'no mcap footer' in reasons


def test_sqlite3_recording_without_metadata_is_read_completely(tmp_path):
    bag = synthetic_frame_bag(tmp_path / 'b', frames=6, storage='sqlite3')
    killed = truncate_recording(bag, tmp_path / 'killed')
    source, frames = _frames(killed)
    assert len(frames) == 6 and all(f.gt is not None for f in frames)
    assert 'metadata.yaml: missing' in _reasons(source.skipped)
    with BagReader(killed / 'b.db3') as reader:  # the bare storage file too
        assert reader.topics()[M.IMAGE_TOPIC].count == 6


def test_ground_truth_for_some_frames_only(tmp_path):
    bag = synthetic_frame_bag(tmp_path / 'b', frames=6, gt_every=3)
    source, frames = _frames(bag)
    assert len(frames) == 6
    assert [f.gt is not None for f in frames] == [True, False, False, True, False, False]
    entry = [e for e in source.skipped.entries() if 'not scored' in e['reason']][0]
    assert entry['count'] == 4
