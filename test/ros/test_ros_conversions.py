"""seqpose_ros.conversions without DDS: image encodings and row padding, CompressedImage, CameraInfo validation,
Detection -> Detection3D / TF / markers. Message classes are built but nothing is published."""

import numpy as np
import pytest

from seqpose_core.detection import Detection
from seqpose_core.geometry import BOX_EDGES, box_corners
from seqpose_ros import camera_model, images
from seqpose_ros import conversions as C
from seqpose_ros.images import InputError

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
    rows = np.hstack([rows, np.full((5, pad), 99, np.uint8)])  # padding bytes must never leak into pixels
    out = images.image_to_rgb(5, 7, encoding, rows.shape[1], rows.tobytes())
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, RGB)
    assert out.flags.writeable and out.flags.c_contiguous


def test_mono8_becomes_grey_rgb_and_last_row_may_omit_padding():
    grey = RGB[:, :, 0]
    rows = np.hstack([grey, np.zeros((5, 1), np.uint8)]).tobytes()[:-1]  # no padding after the last row
    out = images.image_to_rgb(5, 7, 'mono8', 8, rows)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], grey)


def test_accepts_array_array_data_as_rclpy_delivers_it():
    import array

    data = array.array('B', RGB.tobytes())
    np.testing.assert_array_equal(images.image_to_rgb(5, 7, 'rgb8', 21, data), RGB)


@pytest.mark.parametrize(
    'kwargs, words',
    [
        (dict(height=5, width=7, encoding='16UC1', step=14, data=bytes(70)), "unsupported encoding '16UC1'"),
        (dict(height=0, width=0, encoding='rgb8', step=0, data=b''), 'empty image'),
        (dict(height=5, width=7, encoding='rgb8', step=21, data=b''), 'empty image'),
        (dict(height=5, width=7, encoding='rgb8', step=20, data=bytes(105)), 'step 20 is smaller'),
        (dict(height=5, width=7, encoding='rgb8', step=21, data=bytes(100)), 'needs 105'),
    ],
)
def test_bad_images_raise_a_clear_input_error(kwargs, words):
    with pytest.raises(InputError, match='^image: .*') as info:
        images.image_to_rgb(topic='image', **kwargs)
    assert words in str(info.value) and 'frame skipped' in str(info.value)


def test_compressed_jpeg_and_png_and_garbage():
    import cv2

    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:, :16] = (200, 30, 10)  # a red left half survives jpeg within a few levels
    ok, png = cv2.imencode('.png', rgb[:, :, ::-1])
    assert ok
    np.testing.assert_array_equal(images.compressed_to_rgb('png', png.tobytes()), rgb)
    ok, jpg = cv2.imencode('.jpg', rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = images.compressed_to_rgb('jpeg', jpg.tobytes())
    assert decoded.shape == rgb.shape and np.abs(decoded[4, 4].astype(int) - (200, 30, 10)).max() < 12
    with pytest.raises(InputError, match='cannot decode 5 bytes'):
        images.compressed_to_rgb('jpeg', b'hello')
    with pytest.raises(InputError, match='empty CompressedImage'):
        images.compressed_to_rgb('jpeg', b'')


K = [300.0, 0.0, 160.0, 0.0, 310.0, 120.0, 0.0, 0.0, 1.0]


def test_camera_info_K():
    np.testing.assert_array_equal(camera_model.camera_info_to_K(K, 320, 240), np.array(K).reshape(3, 3))


@pytest.mark.parametrize(
    'k, words',
    [
        ([0.0] * 9, 'all zeros'),
        (K[:8] + [float('nan')], 'NaN'),
        ([float('nan')] * 9, 'NaN'),
        (K[:4], 'has 4 values'),
        ([-300.0] + K[1:], 'focal lengths must be positive'),
        (K[:6] + [0.0, 0.0, 0.0], 'last row'),
    ],
)
def test_camera_info_invalid(k, words):
    with pytest.raises(InputError, match='camera_info') as info:
        camera_model.camera_info_to_K(k, 320, 240)
    assert words in str(info.value)


def test_image_size_must_match_camera_info():
    camera_model.check_image_matches_camera_info((240, 320), (240, 320))
    camera_model.check_image_matches_camera_info((240, 320), (0, 0))  # size not given in CameraInfo: accepted
    with pytest.raises(InputError, match=r'image is 320x240 but camera_info says 640x480'):
        camera_model.check_image_matches_camera_info((240, 320), (480, 640))


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
    det = Detection(
        class_id=class_id,
        score=score,
        rotation=_rotation(1),
        translation=np.array([0.1, -0.05, 0.7]),
        size=np.array([0.12, 0.09, 0.10]),
        track_id=track_id,
    )
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
    assert msg.detections[1].results[0].hypothesis.score == 1.0  # clipped into [0, 1]
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
    assert out.shape == rgb.shape and not rgb.any()  # input untouched
    assert out[90:150, 120:200].any() and not out[:40, :40].any()
    behind = _detection()
    behind.translation = np.array([0.0, 0.0, -1.0])
    assert not draw_detections(rgb, [behind], K).any()


# --------------------------------------------------------------------------------------------- issue 13
def _png_header(width, height):
    """The first bytes of a PNG (signature + IHDR) declaring width x height, then garbage."""
    import struct
    import zlib

    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack('>I', len(ihdr)) + b'IHDR' + ihdr + struct.pack('>I', zlib.crc32(b'IHDR' + ihdr))
    return b'\x89PNG\r\n\x1a\n' + chunk + bytes(160_000)


def test_compressed_header_declaring_a_huge_image_is_refused_before_decoding(monkeypatch):
    """Issue 13 item 6: a 157 KiB PNG declaring 12000x12000 was decoded in full (357 -> 1173 MB) before the
    size check."""
    import cv2

    data = _png_header(12000, 12000)
    assert images.compressed_image_size(data) == (12000, 12000, 'png')

    def no_decoding(*_args, **_kwargs):
        raise AssertionError('decoded although the header was refused')

    monkeypatch.setattr(cv2, 'imdecode', no_decoding)
    with pytest.raises(InputError, match=r'png header declares 12000x12000.*\(not decoded\)'):
        images.compressed_to_rgb('png', data, 'cam/image/compressed')
    with pytest.raises(InputError, match='header declares 640x480 but the CameraInfo says 320x240'):
        images.compressed_to_rgb('png', _png_header(640, 480), expected_hw=(240, 320))


def test_jpeg_header_size_is_read_without_decoding():
    import cv2

    ok, jpg = cv2.imencode('.jpg', np.zeros((48, 64, 3), np.uint8))
    assert ok and images.compressed_image_size(jpg.tobytes()) == (64, 48, 'jpeg')
    ok, progressive = cv2.imencode('.jpg', np.zeros((30, 50, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert images.compressed_image_size(progressive.tobytes()) == (50, 30, 'jpeg')
    assert images.compressed_image_size(b'hello') is None
    assert images.compressed_image_size(b'\xff\xd8\xff') is None


@pytest.mark.parametrize('width, height', [(1, 1), (4000, 1), (15, 200)])
def test_tiny_images_are_an_input_problem_not_an_error(width, height):
    """Issue 13 item 10: 1x1 and 4000x1 images reached the runner, logged an ERROR "expected shape (H, W, 3)"
    and reset the memory. They are refused before it, as a warning (InputError) naming the size."""
    with pytest.raises(InputError, match=f'image is {width}x{height}, too small for the model') as info:
        images.check_image_size(width, height, 'image')
    assert 'frame skipped' in str(info.value)
    images.check_image_size(16, 16)
    with pytest.raises(InputError, match='larger than the node accepts'):
        images.check_image_size(20000, 20)


def test_throttle_key_keeps_encodings_apart():
    """Issue 13 item 11: the numbers-blanked key folded '16UC1' and '32FC1' (and '8UC3') into one."""
    kinds = set()
    for encoding in ('16UC1', '32FC1', '8UC3'):
        with pytest.raises(InputError) as info:
            images.image_to_rgb(5, 7, encoding, 14, bytes(70), 'image')
        kinds.add(info.value.kind)
    assert len(kinds) == 3
    assert images.problem_kind("a: 12 s since 'cam_1' at 3.5") == images.problem_kind("a: 40 s since 'cam_1' at 9.5")
    assert images.problem_kind("x 'cam_1'") != images.problem_kind("x 'cam_2'")


def test_other_encodings_go_through_cv_bridge_when_installed():
    """Issue 13 item 9: cv_bridge was declared but unused. Where it is installed, encodings the node does not
    convert itself go through it; without it (the pip set-up) they are refused with the supported list."""
    from types import SimpleNamespace

    msg = SimpleNamespace(height=20, width=30, encoding='yuv422', step=60, data=bytes(1200))

    class FakeBridge:
        def imgmsg_to_cv2(self, message, desired_encoding):
            assert desired_encoding == 'rgb8' and message is msg
            return np.full((20, 30, 3), 7, np.uint8)

    assert images.image_msg_to_rgb(msg, 'image', FakeBridge()).shape == (20, 30, 3)
    with pytest.raises(InputError, match="unsupported encoding 'yuv422'"):
        images.image_msg_to_rgb(msg, 'image', None)

    class BrokenBridge:
        def imgmsg_to_cv2(self, message, desired_encoding):
            raise ValueError('bad data')

    with pytest.raises(InputError, match="cv_bridge cannot convert encoding 'yuv422'"):
        images.image_msg_to_rgb(msg, 'image', BrokenBridge())
    ok_msg = SimpleNamespace(height=20, width=30, encoding='rgb8', step=90, data=bytes(1800))
    assert images.image_msg_to_rgb(ok_msg, 'image', BrokenBridge()).shape == (20, 30, 3)  # own path first


P_OF_K = [300.0, 0.0, 160.0, 0.0, 0.0, 310.0, 120.0, 0.0, 0.0, 0.0, 1.0, 0.0]
D5 = [-0.3, 0.1, 0.001, -0.002, 0.0]


def test_camera_model_raw_with_distortion_undistorts_onto_P_and_says_so():
    """Issue 13 item 4: only K was used; D, P, binning and ROI ignored: a distorted camera gave wrong poses
    with no warning."""
    P = [280.0, 0.0, 158.0, 0.0, 0.0, 290.0, 118.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    model = camera_model.CameraModel(320, 240, K, D5, 'plumb_bob', P, image_kind='raw', topic='cam/camera_info')
    assert model.error == '' and model.needs_undistortion
    np.testing.assert_allclose(model.K, np.array(P).reshape(3, 4)[:, :3])
    assert any('non-zero D (plumb_bob) on a raw image: undistorting' in note for note in model.notes)
    grid = np.zeros((240, 320, 3), np.uint8)
    grid[::20] = 255
    grid[:, ::20] = 255
    undistorted = model.undistort(grid)
    assert undistorted.shape == grid.shape and (undistorted != grid).any()
    no_d = camera_model.CameraModel(320, 240, K, [0.0] * 5, 'plumb_bob', P, image_kind='raw')
    assert not no_d.needs_undistortion and no_d.undistort(grid) is grid
    np.testing.assert_allclose(no_d.K, np.array(K).reshape(3, 3))
    fisheye = camera_model.CameraModel(320, 240, K, [0.1, 0.01, 0.0, 0.0], 'equidistant', P, image_kind='raw')
    assert fisheye.error == '' and fisheye.undistort(grid).shape == grid.shape


def test_camera_model_rectified_uses_P_and_ignores_D():
    P = [280.0, 0.0, 158.0, 0.0, 0.0, 290.0, 118.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    model = camera_model.CameraModel(320, 240, K, D5, 'plumb_bob', P, image_kind='rectified')
    assert not model.needs_undistortion and model.K[0, 0] == 280.0
    unset = camera_model.CameraModel(320, 240, K, D5, 'plumb_bob', [0.0] * 12, image_kind='rectified')
    assert unset.K[0, 0] == 300.0 and 'P is not set' in unset.notes[0]
    assert camera_model.image_kind_for('auto', '/camera/color/image_rect_color') == 'rectified'
    assert camera_model.image_kind_for('auto', '/camera/color/image_rect/compressed') == 'rectified'
    assert camera_model.image_kind_for('auto', '/camera/color/image_raw') == 'raw'
    assert camera_model.image_kind_for('raw', '/camera/image_rect') == 'raw'


def test_camera_model_binning_and_roi_change_intrinsics_and_expected_size():
    binned = camera_model.CameraModel(640, 480, [600.0, 0, 320.0, 0, 620.0, 240.0, 0, 0, 1], binning_x=2, binning_y=2)
    assert binned.expected_hw == (240, 320)
    np.testing.assert_allclose(binned.K, [[300.0, 0, 160.0], [0, 310.0, 120.0], [0, 0, 1]])
    roi = camera_model.CameraModel(640, 480, [600.0, 0, 320.0, 0, 620.0, 240.0, 0, 0, 1], roi=(100, 50, 200, 300))
    assert roi.expected_hw == (200, 300)
    np.testing.assert_allclose(roi.K[:2, 2], (220.0, 190.0))
    refused = camera_model.CameraModel(
        640,
        480,
        [600.0, 0, 320.0, 0, 620.0, 240.0, 0, 0, 1],
        D5,
        'plumb_bob',
        binning_x=2,
        binning_y=2,
        topic='cam/camera_info',
    )
    assert refused.K is None and 'binned (2x2) or ROI-cropped raw image is not supported' in refused.error
    unknown = camera_model.CameraModel(320, 240, K, D5, 'kannala_brandt_9')
    assert "distortion_model 'kannala_brandt_9' with non-zero D is not supported" in unknown.error
    assert 'camera_model:=rectified' in unknown.error


def test_tf_prefix_follows_the_namespace():
    """Issue 13 item 5: tf_prefix ignored the namespace: two cameras published the same frame names."""
    assert C.effective_tf_prefix('/', 'seqpose') == 'seqpose'
    assert C.effective_tf_prefix('/robot1', 'seqpose') == 'robot1/seqpose'
    assert C.effective_tf_prefix('/robot1/front', 'seqpose/') == 'robot1/front/seqpose'
    assert C.effective_tf_prefix('/robot1', '/objects') == 'objects'  # absolute: as given
    assert C.effective_tf_prefix('/robot1', '') == 'robot1'


def test_published_ids_are_the_reusable_object_ids():
    pytest.importorskip('vision_msgs.msg', reason='vision_msgs is not importable (make ros-interfaces)')
    det = _detection(track_id=57)
    det.extras['object_id'] = 2
    header = _header()
    assert C.detections_to_array([det], header).detections[0].id == '2'
    assert [t.child_frame_id for t in C.detections_to_transforms([det], header, 'ns/seqpose')] == ['ns/seqpose/mug_2']
    assert C.detections_to_markers([det], header).markers[1].id == 2


def test_covariance_is_marked_unknown():
    """Issue 13 item 11: the covariance was all zeros, which reads as "exactly known"."""
    pytest.importorskip('vision_msgs.msg', reason='vision_msgs is not importable (make ros-interfaces)')
    covariance = np.array(C.detection_to_msg(_detection(), _header()).results[0].pose.covariance).reshape(6, 6)
    assert np.all(np.diag(covariance) == -1.0) and np.count_nonzero(covariance) == 6


def test_z_up_publishes_rep103_object_frames():
    """Issue 13 item 11: the NOCS object frame is y up; z_up gives the REP-103 convention (z up) with the same
    box (the size follows the axes) and the same physical up direction."""
    pytest.importorskip('vision_msgs.msg', reason='vision_msgs is not importable (make ros-interfaces)')
    det = _detection()
    rotation, translation, size = C.object_pose(det, z_up=True)
    assert np.allclose(rotation.T @ rotation, np.eye(3)) and np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(rotation[:, 2], det.rotation[:, 1])  # new z = the object's up (NOCS y)
    np.testing.assert_allclose(rotation[:, 0], det.rotation[:, 0])
    np.testing.assert_allclose(size, (0.12, 0.10, 0.09))
    corners_nocs = box_corners(det.size) @ det.rotation.T
    corners_zup = box_corners(size) @ rotation.T
    assert {tuple(np.round(c, 9)) for c in corners_nocs} == {tuple(np.round(c, 9)) for c in corners_zup}
    msg = C.detection_to_msg(det, _header(), z_up=True)
    o = msg.bbox.center.orientation
    np.testing.assert_allclose(C.quaternion_to_rotation(o.x, o.y, o.z, o.w), rotation, atol=1e-9)
    assert (msg.bbox.size.x, msg.bbox.size.y, msg.bbox.size.z) == pytest.approx((0.12, 0.10, 0.09))


def test_a_fused_detection_publishes_its_position_covariance():
    """The world fusion's per-track uncertainty (camera frame) fills the position block; rotation stays unknown."""
    from seqpose_ros import conversions as C

    fused = _detection()
    fused.extras['position_covariance'] = np.diag([1e-4, 2e-4, 9e-4])
    covariance = np.array(C.detection_to_msg(fused, _header()).results[0].pose.covariance).reshape(6, 6)
    np.testing.assert_allclose(covariance[:3, :3], np.diag([1e-4, 2e-4, 9e-4]))
    assert np.all(np.diag(covariance)[3:] == -1.0) and np.count_nonzero(covariance) == 6


def test_a_calibrated_pose_covariance_fills_all_36_values_row_major():
    """Issue 30 section 5: extras['pose_covariance'] (6x6, x y z then rotation about X Y Z, camera frame, m^2 /
    rad^2) is published whole, row-major, and wins over the world fusion's position block; a malformed one is an
    error naming it."""
    pytest.importorskip('vision_msgs.msg', reason='vision_msgs is not importable (make ros-interfaces)')
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 6)) * 0.01
    full = a @ a.T + np.diag([1e-4, 2e-4, 3e-4, 1e-2, 2e-2, 3e-2])  # symmetric, every entry different
    det = _detection()
    det.extras['pose_covariance'] = full
    det.extras['position_covariance'] = np.eye(3)
    values = C.detection_to_msg(det, _header()).results[0].pose.covariance
    assert list(values) == [float(v) for v in full.reshape(-1)]
    assert values[1] == full[0, 1] and values[6] == full[1, 0] and values[35] == full[5, 5]
    det.extras['pose_covariance'] = np.eye(3)
    with pytest.raises(ValueError, match=r"extras\['pose_covariance'\]: expected a finite 6x6 covariance, got shape"):
        C.pose_covariance(det)
    det.extras['pose_covariance'] = np.full((6, 6), np.nan)
    with pytest.raises(ValueError, match='NaN'):
        C.pose_covariance(det)
    det.extras['pose_covariance'] = None  # none given: the position block as before
    np.testing.assert_allclose(np.array(C.pose_covariance(det)).reshape(6, 6)[:3, :3], np.eye(3))
