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


class InputError(ValueError):
    """A message the node cannot use; the text is the log line (names the input and what was wrong)."""


# --------------------------------------------------------------------------------------------- images
def image_to_rgb(height, width, encoding, step, data, topic='image'):
    """sensor_msgs/Image fields -> (H, W, 3) uint8 RGB (a fresh, writable, contiguous array).

    Rows may be padded (`step` > width * channels, as many drivers align rows): only the first
    width * channels bytes of each row are image data."""
    height, width, step = int(height), int(width), int(step)
    if encoding not in ENCODINGS:
        raise InputError(f"{topic}: unsupported encoding '{encoding}' (supported: {', '.join(ENCODINGS)}); "
                         'frame skipped')
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


def image_msg_to_rgb(msg, topic='image'):
    return image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data, topic)


def compressed_to_rgb(image_format, data, topic='image/compressed'):
    """sensor_msgs/CompressedImage fields -> (H, W, 3) uint8 RGB (jpeg / png through cv2.imdecode)."""
    import cv2
    if len(data) == 0:
        raise InputError(f'{topic}: empty CompressedImage (format {image_format!r}); frame skipped')
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


def object_frame_name(detection, tf_prefix):
    """`<tf_prefix>/<class>_<track id>` (no prefix when empty; slashes trimmed so '' or '/x/' work)."""
    child = f'{detection.class_name}_{detection.track_id}'
    prefix = tf_prefix.strip('/')
    return f'{prefix}/{child}' if prefix else child


# --------------------------------------------------------------------------------------------- messages
def _pose(rotation, translation):
    from geometry_msgs.msg import Pose
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in translation)
    q = rotation_to_quaternion(rotation)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in q)
    return pose


def detection_to_msg(detection, header):
    """Detection -> vision_msgs/Detection3D (id = track id, class_id = category name, pose twice)."""
    from vision_msgs.msg import Detection3D, ObjectHypothesisWithPose
    msg = Detection3D()
    msg.header = header
    msg.id = str(detection.track_id) if detection.track_id >= 0 else ''
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = detection.class_name
    hypothesis.hypothesis.score = float(min(max(detection.score, 0.0), 1.0))
    hypothesis.pose.pose = _pose(detection.rotation, detection.translation)
    msg.results = [hypothesis]
    msg.bbox.center = _pose(detection.rotation, detection.translation)
    msg.bbox.size.x, msg.bbox.size.y, msg.bbox.size.z = (float(v) for v in detection.size)
    return msg


def detections_to_array(detections, header):
    from vision_msgs.msg import Detection3DArray
    msg = Detection3DArray()
    msg.header = header
    msg.detections = [detection_to_msg(d, header) for d in detections]
    return msg


def detections_to_transforms(detections, header, tf_prefix):
    """One geometry_msgs/TransformStamped per CONFIRMED detection (parent = the image frame)."""
    from geometry_msgs.msg import TransformStamped
    transforms = []
    for detection in detections:
        if not detection.extras.get('confirmed', False) or detection.track_id < 0:
            continue
        transform = TransformStamped()
        transform.header = header
        transform.child_frame_id = object_frame_name(detection, tf_prefix)
        t = transform.transform.translation
        t.x, t.y, t.z = (float(v) for v in detection.translation)
        r = transform.transform.rotation
        r.x, r.y, r.z, r.w = (float(v) for v in rotation_to_quaternion(detection.rotation))
        transforms.append(transform)
    return transforms


def _color(class_id, alpha=1.0):
    from std_msgs.msg import ColorRGBA
    r, g, b = CLASS_COLORS.get(int(class_id), (1.0, 1.0, 1.0))
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(alpha))


def _point(xyz):
    from geometry_msgs.msg import Point
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def detections_to_markers(detections, header, lifetime=0.5, line_width=0.004):
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
        marker_id = detection.track_id if detection.track_id >= 0 else 100000 + index
        pose = _pose(detection.rotation, detection.translation)
        color = _color(detection.class_id)
        size = np.asarray(detection.size, dtype=np.float64)

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
        offset = np.asarray(detection.rotation) @ np.array([0.0, size[1] / 2 + 0.03, 0.0])
        label.pose = _pose(np.eye(3), np.asarray(detection.translation) + offset)
        label.scale.z = 0.03
        label.color = color
        label.lifetime = duration
        label.text = f'{detection.class_name} #{detection.track_id} {detection.score:.2f}'
        array.markers.append(label)
    return array


__all__ = ['CLASS_COLORS', 'CLASS_NAMES', 'ENCODINGS', 'InputError', 'camera_info_to_K',
           'check_image_matches_camera_info', 'compressed_to_rgb', 'detection_to_msg', 'detections_to_array',
           'detections_to_markers', 'detections_to_transforms', 'image_msg_to_rgb', 'image_to_rgb',
           'object_frame_name', 'quaternion_to_rotation', 'rgb_to_image_fields', 'rotation_to_quaternion',
           'transform_to_matrix']
