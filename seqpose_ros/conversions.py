"""ROS message <-> numpy / Detection conversions for `seqpose_node`.

The image and CameraInfo checks are plain functions over the message fields (so they are tested without ROS);
the message builders import their ROS types lazily. Every problem raises `InputError` whose text names the
input and what was wrong: the node logs it as is.

Pose convention of the published objects (docs/architecture.md): the pose maps the NOCS object frame (origin
at the box centre, axes along the box edges, y = the object's up / symmetry axis) into the image's optical
frame (OpenCV: x right, y down, z forward); `bbox.size` is the metric extent along the object's x, y, z.
"""

import numpy as np

from seqpose_core import CLASS_NAMES
from seqpose_core.geometry import BOX_EDGES, box_corners, quaternion_to_rotation, rotation_to_quaternion

# encoding -> (channels in the message, channel order to get RGB)
ENCODINGS = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, (0, 0, 0)),
}

# One colour per NOCS class (RGB 0..1), used for markers and the debug overlay.
CLASS_COLORS = {
    1: (0.12, 0.47, 0.71),   # bottle: blue
    2: (1.00, 0.50, 0.05),   # bowl: orange
    3: (0.17, 0.63, 0.17),   # camera: green
    4: (0.84, 0.15, 0.16),   # can: red
    5: (0.58, 0.40, 0.74),   # laptop: purple
    6: (0.89, 0.47, 0.76),   # mug: pink
}


# The smallest and largest image the node processes (the model resizes to its input: an image with a side
# under MIN_IMAGE_SIDE carries no usable object, and one over MAX_IMAGE_PIXELS is refused before decoding).
MIN_IMAGE_SIDE = 16
MAX_IMAGE_SIDE = 16384
MAX_IMAGE_PIXELS = 40_000_000


class InputError(ValueError):
    """A message the node cannot use; the text is the log line (names the input and what was wrong).

    `kind` is the log-throttling key: one problem repeating is logged once per period, while two different
    problems (two encodings, say) each get their own line. Default: the text with its numbers blanked."""

    def __init__(self, text, kind=None):
        super().__init__(text)
        self.kind = kind or problem_kind(text)


def problem_kind(text):
    """Throttling key: the message with its numbers blanked, so repeats of one problem (differing only in
    sizes, stamps or ages) share a key. Quoted words (encodings, formats, frame ids) are kept as they are."""
    import re
    parts = re.split(r"('[^']*')", str(text))
    return ''.join(part if part.startswith("'") else re.sub(r'[-+]?\d[\d.e+-]*', '#', part) for part in parts)


def check_image_size(width, height, topic='image'):
    """Raise InputError (a warning, frame skipped) for images too small or too large for the model."""
    width, height = int(width), int(height)
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(f'{topic}: image is {width}x{height}, too small for the model (each side must be at '
                         f'least {MIN_IMAGE_SIDE} px); frame skipped', kind=f'{topic}:too small')
    if max(width, height) > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise InputError(f'{topic}: image is {width}x{height}, larger than the node accepts (at most '
                         f'{MAX_IMAGE_SIDE} px a side and {MAX_IMAGE_PIXELS / 1e6:g} Mpixel); frame skipped',
                         kind=f'{topic}:too large')


# --------------------------------------------------------------------------------------------- images
def image_to_rgb(height, width, encoding, step, data, topic='image'):
    """sensor_msgs/Image fields -> (H, W, 3) uint8 RGB (a fresh, writable, contiguous array).

    Rows may be padded (`step` > width * channels, as many drivers align rows): only the first
    width * channels bytes of each row are image data."""
    height, width, step = int(height), int(width), int(step)
    if encoding not in ENCODINGS:
        raise InputError(f"{topic}: unsupported encoding '{encoding}' (supported: {', '.join(ENCODINGS)}); "
                         'frame skipped', kind=f'{topic}:encoding:{encoding}')
    channels, order = ENCODINGS[encoding]
    if height <= 0 or width <= 0 or len(data) == 0:
        raise InputError(f'{topic}: empty image ({width}x{height}, {len(data)} bytes); frame skipped')
    row_bytes = width * channels
    if step < row_bytes:
        raise InputError(f"{topic}: step {step} is smaller than width {width} x {channels} channels of "
                         f"'{encoding}'; frame skipped")
    if len(data) < step * (height - 1) + row_bytes:
        raise InputError(f'{topic}: data holds {len(data)} bytes but {width}x{height} {encoding} with step '
                         f'{step} needs {step * height}; frame skipped')
    buffer = np.frombuffer(data, dtype=np.uint8)
    if len(buffer) < step * height:
        # the last row may legally omit its padding
        buffer = np.concatenate([buffer, np.zeros(step * height - len(buffer), np.uint8)])
    rows = buffer[:step * height].reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if encoding == 'rgb8':
        return np.array(rows, copy=True)   # a copy: the runner wants a writable array it can own
    if encoding == 'mono8':
        return np.repeat(rows, 3, axis=2)
    return np.ascontiguousarray(rows[:, :, list(order)])


def _cv_bridge():
    """cv_bridge's CvBridge where a ROS install has it (None in the pip-only set-up)."""
    try:
        from cv_bridge import CvBridge
    except ImportError:
        return None
    return CvBridge()


def image_msg_to_rgb(msg, topic='image', bridge=None):
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB. The encodings in ENCODINGS are converted here (checked
    field by field, with a clear reason for each problem); any other encoding goes through cv_bridge when it
    is installed (yuv422, bayer_*, 16-bit colour, ...), else it is refused with the list of supported ones."""
    if msg.encoding not in ENCODINGS and bridge is not None:
        check_image_size(msg.width, msg.height, topic)
        try:
            rgb = bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8')
        except Exception as error:  # noqa: BLE001 - cv_bridge raises CvBridgeError and cv2 errors
            raise InputError(f"{topic}: cv_bridge cannot convert encoding '{msg.encoding}' to rgb8 ({error}); "
                             'frame skipped', kind=f'{topic}:encoding:{msg.encoding}') from None
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputError(f"{topic}: cv_bridge gave shape {rgb.shape} for encoding '{msg.encoding}'; frame "
                             'skipped', kind=f'{topic}:encoding:{msg.encoding}')
        return rgb
    return image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data, topic)


def compressed_image_size(data):
    """(width, height, 'png' | 'jpeg') read from the PNG IHDR or the JPEG start-of-frame header, without
    decoding the pixels; None when the bytes are neither (cv2 then decides). Lets the node refuse a small
    file that declares a huge image before the decoder allocates it."""
    data = bytes(data[:65536]) if not isinstance(data, (bytes, bytearray)) else data
    if data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) >= 24 and data[12:16] == b'IHDR':
        return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big'), 'png'
    if data[:2] == b'\xff\xd8':
        index = 2
        while index + 4 <= len(data):
            if data[index] != 0xFF:
                index += 1                      # tolerate fill bytes / garbage between segments
                continue
            marker = data[index + 1]
            if marker == 0xFF:
                index += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                index += 2                      # markers without a length
                continue
            length = int.from_bytes(data[index + 2:index + 4], 'big')
            # start of frame: C0-CF except C4 (huffman tables), C8 (reserved), CC (arithmetic coding)
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                if index + 9 > len(data):
                    return None
                height = int.from_bytes(data[index + 5:index + 7], 'big')
                width = int.from_bytes(data[index + 7:index + 9], 'big')
                return width, height, 'jpeg'
            if marker == 0xDA or length < 2:    # start of scan before any frame header: not a usable jpeg
                return None
            index += 2 + length
    return None


def compressed_to_rgb(image_format, data, topic='image/compressed', expected_hw=None):
    """sensor_msgs/CompressedImage fields -> (H, W, 3) uint8 RGB (jpeg / png through cv2.imdecode). The size
    in the file's header is checked first (limits, and `expected_hw` from the CameraInfo when given), so a
    small file declaring a huge image is refused without decoding it."""
    import cv2
    if len(data) == 0:
        raise InputError(f'{topic}: empty CompressedImage (format {image_format!r}); frame skipped')
    header = compressed_image_size(data)
    if header is not None:
        width, height, kind = header
        try:
            check_image_size(width, height, topic)
        except InputError as error:
            raise InputError(f'{topic}: {kind} header declares {width}x{height}: {str(error).split(": ", 1)[1]}'
                             ' (not decoded)', kind=error.kind) from None
        if expected_hw is not None and tuple(int(v) for v in expected_hw) != (0, 0) \
                and (height, width) != tuple(int(v) for v in expected_hw):
            raise InputError(f'{topic}: {kind} header declares {width}x{height} but the CameraInfo says '
                             f'{int(expected_hw[1])}x{int(expected_hw[0])}; frame skipped (not decoded)',
                             kind=f'{topic}:size mismatch')
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if decoded is None or decoded.size == 0:
        raise InputError(f'{topic}: cannot decode {len(data)} bytes of format {image_format!r} '
                         '(expected jpeg or png); frame skipped')
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def rgb_to_image_fields(rgb):
    """(H, W, 3) uint8 RGB -> dict of sensor_msgs/Image fields (rgb8, no padding)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    return dict(height=height, width=width, encoding='rgb8', is_bigendian=0, step=width * 3,
                data=rgb.tobytes())


# --------------------------------------------------------------------------------------------- camera info
def camera_info_to_K(k, width, height, topic='camera_info'):
    """CameraInfo.k (9 numbers, row-major) -> validated 3x3 K. Width / height are only used in messages."""
    values = np.asarray(list(k), dtype=np.float64)
    if values.size != 9:
        raise InputError(f'{topic}: K has {values.size} values, expected 9; frames skipped until a valid '
                         'CameraInfo arrives')
    K = values.reshape(3, 3)
    if not np.all(np.isfinite(K)):
        raise InputError(f'{topic}: K contains NaN or infinite values {K.tolist()}; frames skipped until a valid '
                         'CameraInfo arrives')
    if not np.any(K):
        raise InputError(f'{topic}: K is all zeros (uncalibrated camera?); frames skipped until a calibrated '
                         'CameraInfo arrives')
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f'{topic}: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}; frames '
                         'skipped')
    if not np.allclose(K[2], (0.0, 0.0, 1.0)) or K[1, 0] != 0:
        raise InputError(f'{topic}: K is not an upper-triangular intrinsics matrix with last row [0, 0, 1]: '
                         f'{K.tolist()}; frames skipped')
    return K


DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial', 'equidistant')


def _valid_pinhole(M):
    return (M.shape == (3, 3) and np.all(np.isfinite(M)) and M[0, 0] > 0 and M[1, 1] > 0
            and np.allclose(M[2], (0.0, 0.0, 1.0)))


class CameraModel:
    """What the node needs from a CameraInfo, validated once per distinct CameraInfo (sensor_msgs/CameraInfo
    semantics, as image_geometry's PinholeCameraModel):

    - `raw` images (image_raw): K describes them; a non-zero D means the pixels are distorted, so each image
      is undistorted (cv2, maps built once) onto the camera matrix of P (K when P is not set) and that matrix
      is what the model sees. Models: plumb_bob, rational_polynomial, equidistant.
    - `rectified` images (image_rect, image_proc's output): P[0:3, 0:3] describes them; D is ignored.
    - binning_x/y and roi (x_offset, y_offset, width, height) describe a sub-sampled or cropped image of the
      calibrated one: the intrinsics are shifted by the ROI offset and divided by the binning, and the
      expected image size follows. Undistorting a binned or cropped raw image is refused (rectify it upstream).

    `K` is the 3x3 intrinsics of the image the runner gets; `expected_hw` the (height, width) the image must
    have ((0, 0): the CameraInfo gives none); `notes` are one-time log lines (what was decided and why);
    `error` is set (and K None) when the CameraInfo cannot be used."""

    def __init__(self, width, height, k, d=(), distortion_model='', p=None, r=None, binning_x=0, binning_y=0,
                 roi=(0, 0, 0, 0), image_kind='raw', topic='camera_info'):
        self.topic = topic
        self.notes = []
        self.error = ''
        self.K = None
        self.undistort_from = None          # (K, D, R, model) when images must be undistorted
        self._maps = {}
        try:
            self._build(int(width), int(height), k, d, distortion_model, p, r, int(binning_x or 0),
                        int(binning_y or 0), tuple(int(v) for v in roi), image_kind)
        except InputError as error:
            self.error = str(error)
            self.K = None

    def _build(self, width, height, k, d, distortion_model, p, r, binning_x, binning_y, roi, image_kind):
        topic = self.topic
        K = camera_info_to_K(k, width, height, topic)
        D = np.asarray(list(d), dtype=np.float64)
        P = np.asarray(list(p), dtype=np.float64).reshape(3, 4)[:, :3] if p is not None and len(p) == 12 else None
        P_valid = P is not None and _valid_pinhole(P)
        distorted = D.size > 0 and bool(np.any(np.abs(D) > 1e-12))
        x_offset, y_offset, roi_h, roi_w = roi
        bx, by = max(binning_x, 1), max(binning_y, 1)
        cropped = roi_w > 0 and roi_h > 0 and (roi_w, roi_h) != (width, height)
        if image_kind == 'rectified':
            if P_valid:
                intrinsics = P.copy()
            else:
                intrinsics = K.copy()
                self.notes.append(f'{topic}: P is not set; using K for the rectified image')
        else:
            intrinsics = K.copy()
            if distorted:
                if not np.all(np.isfinite(D)):
                    raise InputError(f'{topic}: D contains NaN or infinite values; frames skipped')
                if distortion_model not in DISTORTION_MODELS:
                    raise InputError(f"{topic}: distortion_model '{distortion_model}' with non-zero D is not "
                                     f"supported (supported: {', '.join(DISTORTION_MODELS)}): publish a "
                                     'rectified image (image_proc) and set camera_model:=rectified; frames skipped')
                if bx > 1 or by > 1 or cropped:
                    raise InputError(f'{topic}: undistorting a binned ({bx}x{by}) or ROI-cropped raw image is not '
                                     'supported: rectify it upstream (image_proc) and set camera_model:=rectified; '
                                     'frames skipped')
                R = np.asarray(list(r), dtype=np.float64).reshape(3, 3) if r is not None and len(r) == 9 else None
                if R is None or not np.all(np.isfinite(R)) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6):
                    R = np.eye(3)
                intrinsics = P.copy() if P_valid else K.copy()
                self.undistort_from = (K, D, R, distortion_model)
                self.notes.append(f"{topic}: non-zero D ({distortion_model}) on a raw image: undistorting each image "
                                  'onto ' + ('P' if P_valid else 'K') + ' before the model (subscribe to a rectified '
                                  'topic and set camera_model:=rectified to save this work)')
        if cropped or (x_offset or y_offset):
            intrinsics[0, 2] -= x_offset
            intrinsics[1, 2] -= y_offset
        if bx > 1 or by > 1:
            intrinsics[0, :] /= bx
            intrinsics[1, :] /= by
            self.notes.append(f'{topic}: binning {bx}x{by} applied to the intrinsics')
        if cropped:
            self.notes.append(f'{topic}: ROI {roi_w}x{roi_h} at ({x_offset}, {y_offset}) applied to the intrinsics')
        full_w, full_h = (roi_w, roi_h) if cropped else (width, height)
        self.expected_hw = (full_h // by, full_w // bx) if (full_w and full_h) else (0, 0)
        self.K = intrinsics

    @property
    def needs_undistortion(self):
        return self.undistort_from is not None

    def undistort(self, rgb):
        """The image undistorted onto self.K (the same array when no undistortion is needed)."""
        if self.undistort_from is None:
            return rgb
        import cv2
        h, w = rgb.shape[:2]
        maps = self._maps.get((h, w))
        if maps is None:
            K, D, R, model = self.undistort_from
            if model == 'equidistant':
                maps = cv2.fisheye.initUndistortRectifyMap(K, D[:4], R, self.K, (w, h), cv2.CV_16SC2)
            else:
                maps = cv2.initUndistortRectifyMap(K, D, R, self.K, (w, h), cv2.CV_16SC2)
            self._maps = {(h, w): maps}
        return cv2.remap(rgb, maps[0], maps[1], cv2.INTER_LINEAR)


def camera_model_from_msg(msg, image_kind='raw', topic='camera_info'):
    roi = msg.roi
    return CameraModel(msg.width, msg.height, msg.k, msg.d, msg.distortion_model, msg.p, msg.r, msg.binning_x,
                       msg.binning_y, (roi.x_offset, roi.y_offset, roi.height, roi.width), image_kind, topic)


def image_kind_for(camera_model, image_topic):
    """'raw' | 'rectified' for the camera_model parameter ('auto': by the image topic's name)."""
    if camera_model in ('raw', 'rectified'):
        return camera_model
    name = image_topic.rstrip('/').split('/')
    last = name[-2] if name[-1] == 'compressed' and len(name) > 1 else name[-1]
    return 'rectified' if 'rect' in last else 'raw'


def check_image_matches_camera_info(image_hw, info_hw, image_topic='image', info_topic='camera_info'):
    """Raise when the image size disagrees with the CameraInfo's (0 x 0 in CameraInfo = not given)."""
    info_h, info_w = int(info_hw[0]), int(info_hw[1])
    if info_h == 0 and info_w == 0:
        return
    if (int(image_hw[0]), int(image_hw[1])) != (info_h, info_w):
        raise InputError(f'{image_topic}: image is {image_hw[1]}x{image_hw[0]} but {info_topic} says '
                         f'{info_w}x{info_h} (K would be wrong); frame skipped')


# --------------------------------------------------------------------------------------------- geometry
def transform_to_matrix(translation, rotation_xyzw):
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_rotation(*rotation_xyzw)
    matrix[:3, 3] = translation
    return matrix


def effective_tf_prefix(namespace, tf_prefix):
    """The prefix of the object TF frames: `<namespace>/<tf_prefix>` (two cameras in two namespaces do not
    collide); a tf_prefix that starts with '/' is used as given, without the namespace. TF frame ids carry no
    leading slash (tf2)."""
    if tf_prefix.startswith('/'):
        return tf_prefix.strip('/')
    return '/'.join(part for part in (namespace.strip('/'), tf_prefix.strip('/')) if part)


def object_id(detection):
    """The published id: the reusable object id (pipeline.ReusableIds) when set, else the track id."""
    return int(detection.extras.get('object_id', detection.track_id))


def object_frame_name(detection, tf_prefix):
    """`<tf_prefix>/<class>_<id>` (no prefix when empty; slashes trimmed so '' or '/x/' work)."""
    child = f'{detection.class_name}_{object_id(detection)}'
    prefix = tf_prefix.strip('/')
    return f'{prefix}/{child}' if prefix else child


# NOCS object frame (y up) -> REP-103 object frame (z up, x kept): columns are the new axes in NOCS coordinates
NOCS_FROM_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def object_pose(detection, z_up=False):
    """(rotation 3x3, translation (3,), size (3,)) as published: the NOCS object frame (y up), or with z_up the
    REP-103 convention (x the same, z = the object's up axis, y = z cross x); the size follows the axes."""
    rotation = np.asarray(detection.rotation, dtype=np.float64)
    size = np.asarray(detection.size, dtype=np.float64)
    if z_up:
        return rotation @ NOCS_FROM_Z_UP, np.asarray(detection.translation, dtype=np.float64), size[[0, 2, 1]]
    return rotation, np.asarray(detection.translation, dtype=np.float64), size


# Detection3D pose covariance: the model gives no uncertainty, so -1 on the diagonal (the ROS convention for
# "unknown", e.g. sensor_msgs/Imu), zeros elsewhere. All zeros would read as "exactly known".
UNKNOWN_COVARIANCE = tuple(-1.0 if i % 7 == 0 else 0.0 for i in range(36))


# --------------------------------------------------------------------------------------------- messages
def _pose(rotation, translation):
    from geometry_msgs.msg import Pose
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in translation)
    q = rotation_to_quaternion(rotation)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in q)
    return pose


def detection_to_msg(detection, header, z_up=False):
    """Detection -> vision_msgs/Detection3D (id = object id, class_id = category name, pose twice; pose
    covariance unknown: -1 on the diagonal)."""
    from vision_msgs.msg import Detection3D, ObjectHypothesisWithPose
    rotation, translation, size = object_pose(detection, z_up)
    msg = Detection3D()
    msg.header = header
    msg.id = str(object_id(detection)) if detection.track_id >= 0 else ''
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = detection.class_name
    hypothesis.hypothesis.score = float(min(max(detection.score, 0.0), 1.0))
    hypothesis.pose.pose = _pose(rotation, translation)
    hypothesis.pose.covariance = list(UNKNOWN_COVARIANCE)
    msg.results = [hypothesis]
    msg.bbox.center = _pose(rotation, translation)
    msg.bbox.size.x, msg.bbox.size.y, msg.bbox.size.z = (float(v) for v in size)
    return msg


def detections_to_array(detections, header, z_up=False):
    from vision_msgs.msg import Detection3DArray
    msg = Detection3DArray()
    msg.header = header
    msg.detections = [detection_to_msg(d, header, z_up) for d in detections]
    return msg


def detections_to_transforms(detections, header, tf_prefix, z_up=False):
    """One geometry_msgs/TransformStamped per CONFIRMED detection (parent = the image frame)."""
    from geometry_msgs.msg import TransformStamped
    transforms = []
    for detection in detections:
        if not detection.extras.get('confirmed', False) or detection.track_id < 0:
            continue
        transform = TransformStamped()
        transform.header = header
        transform.child_frame_id = object_frame_name(detection, tf_prefix)
        rotation, translation, _ = object_pose(detection, z_up)
        t = transform.transform.translation
        t.x, t.y, t.z = (float(v) for v in translation)
        r = transform.transform.rotation
        r.x, r.y, r.z, r.w = (float(v) for v in rotation_to_quaternion(rotation))
        transforms.append(transform)
    return transforms


def _color(class_id, alpha=1.0):
    from std_msgs.msg import ColorRGBA
    r, g, b = CLASS_COLORS.get(int(class_id), (1.0, 1.0, 1.0))
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(alpha))


def _point(xyz):
    from geometry_msgs.msg import Point
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def detections_to_markers(detections, header, lifetime=0.5, line_width=0.004, z_up=False):
    """MarkerArray: DELETEALL (clears the previous frame's objects), then per object a LINE_LIST box and
    an axes triad in the object's own frame (marker pose = object pose), and a text label above it."""
    from builtin_interfaces.msg import Duration
    from visualization_msgs.msg import Marker, MarkerArray

    seconds = max(float(lifetime), 0.0)
    duration = Duration(sec=int(seconds), nanosec=int(round((seconds - int(seconds)) * 1e9)) % 1_000_000_000)
    array = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    array.markers.append(clear)
    for index, detection in enumerate(detections):
        marker_id = object_id(detection) if detection.track_id >= 0 else 100000 + index
        rotation, translation, size = object_pose(detection, z_up)
        pose = _pose(rotation, translation)
        color = _color(detection.class_id)

        box = Marker(header=header, ns='seqpose/box', id=marker_id, type=Marker.LINE_LIST, action=Marker.ADD)
        box.pose = pose
        box.scale.x = line_width
        box.color = color
        box.lifetime = duration
        corners = box_corners(size)
        box.points = [_point(corners[i]) for edge in BOX_EDGES for i in edge]
        array.markers.append(box)

        axes = Marker(header=header, ns='seqpose/axes', id=marker_id, type=Marker.LINE_LIST, action=Marker.ADD)
        axes.pose = pose
        axes.scale.x = line_width
        axes.color = color
        axes.lifetime = duration
        length = 0.6 * float(np.max(size)) if np.max(size) > 0 else 0.05
        from std_msgs.msg import ColorRGBA
        for axis, rgb in enumerate(((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))):
            tip = np.zeros(3)
            tip[axis] = length
            axes.points += [_point((0.0, 0.0, 0.0)), _point(tip)]
            axes.colors += [ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=1.0)] * 2
        array.markers.append(axes)

        label = Marker(header=header, ns='seqpose/label', id=marker_id, type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD)
        # above the box: the object's +y is up, which is -y in the optical frame only when upright, so the
        # offset is applied in the object frame and then rotated into the camera frame
        offset = np.asarray(detection.rotation) @ np.array([0.0, float(detection.size[1]) / 2 + 0.03, 0.0])
        label.pose = _pose(np.eye(3), np.asarray(detection.translation) + offset)
        label.scale.z = 0.03
        label.color = color
        label.lifetime = duration
        label.text = f'{detection.class_name} #{object_id(detection)} {detection.score:.2f}'
        array.markers.append(label)
    return array


__all__ = ['CLASS_COLORS', 'CLASS_NAMES', 'CameraModel', 'ENCODINGS', 'InputError', 'UNKNOWN_COVARIANCE',
           'camera_info_to_K', 'camera_model_from_msg', 'check_image_matches_camera_info', 'check_image_size',
           'compressed_image_size', 'compressed_to_rgb', 'detection_to_msg', 'detections_to_array',
           'detections_to_markers', 'detections_to_transforms', 'effective_tf_prefix', 'image_kind_for',
           'image_msg_to_rgb', 'image_to_rgb', 'object_frame_name', 'object_id', 'object_pose', 'problem_kind',
           'quaternion_to_rotation', 'rgb_to_image_fields', 'rotation_to_quaternion', 'transform_to_matrix']
