"""seqpose_ros.conversions without DDS: image encodings and row padding, CompressedImage, CameraInfo validation,
Detection -> Detection3D / TF / markers. Message classes are built but nothing is published."""
import numpy as np
import pytest

from seqpose_core.detection import Detection
from seqpose_core.geometry import BOX_EDGES, box_corners
from seqpose_ros import conversions as C
from seqpose_ros.conversions import InputError

RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def _encode(rgb, encoding):
    if encoding == 'rgb8':
        return rgb
    if encoding == 'bgr8':
        return rgb[:, :, ::-1]
    if encoding == 'rgba8':
        return np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    if encoding == 'bgra8':
        return np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)])
    raise AssertionError(encoding)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8'])
@pytest.mark.parametrize('pad', [0, 3])
def test_colour_encodings_with_row_padding(encoding, pad):
    data = _encode(RGB, encoding)
    rows = data.reshape(5, -1)
    rows = np.hstack([rows, np.full((5, pad), 99, np.uint8)])   # padding bytes must never leak into pixels
    out = C.image_to_rgb(5, 7, encoding, rows.shape[1], rows.tobytes())
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, RGB)
    assert out.flags.writeable and out.flags.c_contiguous


def test_mono8_becomes_grey_rgb_and_last_row_may_omit_padding():
    grey = RGB[:, :, 0]
    rows = np.hstack([grey, np.zeros((5, 1), np.uint8)]).tobytes()[:-1]   # no padding after the last row
    out = C.image_to_rgb(5, 7, 'mono8', 8, rows)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], grey)


def test_accepts_array_array_data_as_rclpy_delivers_it():
    import array
    data = array.array('B', RGB.tobytes())
    np.testing.assert_array_equal(C.image_to_rgb(5, 7, 'rgb8', 21, data), RGB)


@pytest.mark.parametrize('kwargs, words', [
    (dict(height=5, width=7, encoding='16UC1', step=14, data=bytes(70)), "unsupported encoding '16UC1'"),
    (dict(height=0, width=0, encoding='rgb8', step=0, data=b''), 'empty image'),
    (dict(height=5, width=7, encoding='rgb8', step=21, data=b''), 'empty image'),
    (dict(height=5, width=7, encoding='rgb8', step=20, data=bytes(105)), 'step 20 is smaller'),
    (dict(height=5, width=7, encoding='rgb8', step=21, data=bytes(100)), 'needs 105'),
])
def test_bad_images_raise_a_clear_input_error(kwargs, words):
    with pytest.raises(InputError, match='^image: .*') as info:
        C.image_to_rgb(topic='image', **kwargs)
    assert words in str(info.value) and 'frame skipped' in str(info.value)


def test_compressed_jpeg_and_png_and_garbage():
    import cv2
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:, :16] = (200, 30, 10)                # a red left half survives jpeg within a few levels
    ok, png = cv2.imencode('.png', rgb[:, :, ::-1])
    assert ok
    np.testing.assert_array_equal(C.compressed_to_rgb('png', png.tobytes()), rgb)
    ok, jpg = cv2.imencode('.jpg', rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = C.compressed_to_rgb('jpeg', jpg.tobytes())
    assert decoded.shape == rgb.shape and np.abs(decoded[4, 4].astype(int) - (200, 30, 10)).max() < 12
    with pytest.raises(InputError, match='cannot decode 5 bytes'):
        C.compressed_to_rgb('jpeg', b'hello')
    with pytest.raises(InputError, match='empty CompressedImage'):
        C.compressed_to_rgb('jpeg', b'')


K = [300.0, 0.0, 160.0, 0.0, 310.0, 120.0, 0.0, 0.0, 1.0]


def test_camera_info_K():
    np.testing.assert_array_equal(C.camera_info_to_K(K, 320, 240), np.array(K).reshape(3, 3))


@pytest.mark.parametrize('k, words', [
    ([0.0] * 9, 'all zeros'),
    (K[:8] + [float('nan')], 'NaN'),
    ([float('nan')] * 9, 'NaN'),
    (K[:4], 'has 4 values'),
    ([-300.0] + K[1:], 'focal lengths must be positive'),
    (K[:6] + [0.0, 0.0, 0.0], 'last row'),
])
def test_camera_info_invalid(k, words):
    with pytest.raises(InputError, match='camera_info') as info:
        C.camera_info_to_K(k, 320, 240)
    assert words in str(info.value)


def test_image_size_must_match_camera_info():
    C.check_image_matches_camera_info((240, 320), (240, 320))
    C.check_image_matches_camera_info((240, 320), (0, 0))     # size not given in CameraInfo: accepted
    with pytest.raises(InputError, match=r'image is 320x240 but camera_info says 640x480'):
        C.check_image_matches_camera_info((240, 320), (480, 640))


def _rotation(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


@pytest.mark.parametrize('seed', range(6))
def test_quaternion_round_trip(seed):
    R = _rotation(seed)
    q = C.rotation_to_quaternion(R)
    assert abs(np.linalg.norm(q) - 1) < 1e-12
    np.testing.assert_allclose(C.quaternion_to_rotation(*q), R, atol=1e-10)


def test_quaternion_of_180_degree_turns():
    for R in (np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])):
        np.testing.assert_allclose(C.quaternion_to_rotation(*C.rotation_to_quaternion(R)), R, atol=1e-12)


def _detection(class_id=6, track_id=4, confirmed=True, score=0.8):
    det = Detection(class_id=class_id, score=score, rotation=_rotation(1), translation=np.array([0.1, -0.05, 0.7]),
                    size=np.array([0.12, 0.09, 0.10]), track_id=track_id)
    det.extras['confirmed'] = confirmed
    return det


def _header():
    pytest.importorskip('std_msgs.msg', reason='std_msgs (ROS 2) is not importable')
    from std_msgs.msg import Header
    header = Header(frame_id='camera_optical')
    header.stamp.sec, header.stamp.nanosec = 12, 500
    return header


def test_detection_to_detection3d():
    pytest.importorskip('vision_msgs.msg', reason='vision_msgs is not importable (make ros-interfaces)')
    det = _detection()
    header = _header()
    msg = C.detections_to_array([det, _detection(1, 7, score=1.7)], header)
    assert msg.header.frame_id == 'camera_optical' and msg.header.stamp.sec == 12
    first = msg.detections[0]
    assert first.id == '4' and first.header.stamp.nanosec == 500
    hyp = first.results[0]
    assert hyp.hypothesis.class_id == 'mug' and hyp.hypothesis.score == pytest.approx(0.8)
    assert msg.detections[1].results[0].hypothesis.score == 1.0          # clipped into [0, 1]
    for pose in (hyp.pose.pose, first.bbox.center):
        assert (pose.position.x, pose.position.y, pose.position.z) == pytest.approx((0.1, -0.05, 0.7))
        o = pose.orientation
        np.testing.assert_allclose(C.quaternion_to_rotation(o.x, o.y, o.z, o.w), det.rotation, atol=1e-9)
    assert (first.bbox.size.x, first.bbox.size.y, first.bbox.size.z) == pytest.approx((0.12, 0.09, 0.10))
    assert C.detections_to_array([], header).detections == []


def test_transforms_only_for_confirmed_tracks_and_frame_names():
    pytest.importorskip('geometry_msgs.msg', reason='geometry_msgs is not importable')
    header = _header()
    transforms = C.detections_to_transforms([_detection(), _detection(2, 9, confirmed=False)], header, 'seqpose')
    assert [t.child_frame_id for t in transforms] == ['seqpose/mug_4']
    assert transforms[0].header.frame_id == 'camera_optical'
    assert transforms[0].transform.translation.z == pytest.approx(0.7)
    assert C.object_frame_name(_detection(), '') == 'mug_4'
    assert C.object_frame_name(_detection(), '/robot/seqpose/') == 'robot/seqpose/mug_4'


def test_markers_deleteall_then_box_axes_label_in_class_colour():
    pytest.importorskip('visualization_msgs.msg', reason='visualization_msgs is not importable')
    from visualization_msgs.msg import Marker
    header = _header()
    array = C.detections_to_markers([_detection(), _detection(4, 5)], header, lifetime=0.25)
    markers = array.markers
    assert markers[0].action == Marker.DELETEALL
    assert len(markers) == 1 + 3 * 2
    box, axes, label = markers[1:4]
    assert box.type == Marker.LINE_LIST and len(box.points) == 2 * len(BOX_EDGES) == 24
    corners = box_corners(np.array([0.12, 0.09, 0.10]))
    got = np.array([[p.x, p.y, p.z] for p in box.points])
    assert {tuple(np.round(c, 9)) for c in got} == {tuple(np.round(c, 9)) for c in corners}
    assert box.pose.position.z == pytest.approx(0.7) and box.header.frame_id == 'camera_optical'
    assert box.lifetime.sec == 0 and box.lifetime.nanosec == 250_000_000
    assert axes.type == Marker.LINE_LIST and len(axes.points) == 6 and len(axes.colors) == 6
    assert label.type == Marker.TEXT_VIEW_FACING and label.text.startswith('mug #4')
    mug, can = C.CLASS_COLORS[6], C.CLASS_COLORS[4]
    assert (box.color.r, box.color.g, box.color.b) == pytest.approx(mug)
    assert (markers[4].color.r, markers[4].color.g, markers[4].color.b) == pytest.approx(can)
    assert len({m.id for m in markers[1:4]}) == 1 and markers[4].id != box.id
    assert C.detections_to_markers([], header).markers[0].action == Marker.DELETEALL


def test_debug_overlay_draws_in_the_box():
    from seqpose_ros.overlay import draw_detections
    rgb = np.zeros((240, 320, 3), np.uint8)
    det = _detection()
    det.rotation = np.eye(3)
    det.translation = np.array([0.0, 0.0, 0.6])
    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    out = draw_detections(rgb, [det], K)
    assert out.shape == rgb.shape and not rgb.any()      # input untouched
    assert out[90:150, 120:200].any() and not out[:40, :40].any()
    behind = _detection()
    behind.translation = np.array([0.0, 0.0, -1.0])
    assert not draw_detections(rgb, [behind], K).any()
