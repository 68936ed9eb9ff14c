"""ROS message <-> numpy / Detection conversions for `seqpose_node`.

Images and CameraInfo in: `seqpose_ros.images`, `seqpose_ros.camera_model`. Here: detections out (messages,
TF, markers); the message builders import their ROS types lazily.

Pose convention of the published objects (docs/architecture.md): the pose maps the NOCS object frame (origin
at the box centre, axes along the box edges, y = the object's up / symmetry axis) into the image's optical
frame (OpenCV: x right, y down, z forward); `bbox.size` is the metric extent along the object's x, y, z.
"""

import numpy as np

from seqpose_core.geometry import BOX_EDGES, box_corners, quaternion_to_rotation, rotation_to_quaternion

# One colour per NOCS class (RGB 0..1), used for markers and the debug overlay.
CLASS_COLORS = {
    1: (0.12, 0.47, 0.71),  # bottle: blue
    2: (1.00, 0.50, 0.05),  # bowl: orange
    3: (0.17, 0.63, 0.17),  # camera: green
    4: (0.84, 0.15, 0.16),  # can: red
    5: (0.58, 0.40, 0.74),  # laptop: purple
    6: (0.89, 0.47, 0.76),  # mug: pink
}


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


def _covariance(detection, key, shape):
    value = np.asarray(detection.extras[key], dtype=np.float64)
    if value.shape != shape or not np.all(np.isfinite(value)):
        raise ValueError(
            f"detection extras['{key}']: expected a finite {shape[0]}x{shape[1]} covariance, got shape {value.shape}"
            + ('' if value.shape != shape else ' with NaN or infinite values')
        )
    return value


def pose_covariance(detection):
    """The 36 values (row-major) of a Detection3D's pose covariance (x, y, z, then rotation about x, y, z; the
    header's frame, metres^2 / rad^2): the full 6x6 where the runner gives one (extras['pose_covariance'], a
    calibrated covariance in this order, camera frame); else the world fusion's position covariance where it
    fused the detection (extras['position_covariance'], 3x3), the rotation still unknown (-1); otherwise all
    unknown. A malformed covariance is a ValueError naming it."""
    if detection.extras.get('pose_covariance') is not None:
        return [float(v) for v in _covariance(detection, 'pose_covariance', (6, 6)).reshape(-1)]
    if detection.extras.get('position_covariance') is None:
        return list(UNKNOWN_COVARIANCE)
    covariance = np.zeros((6, 6))
    covariance[:3, :3] = _covariance(detection, 'position_covariance', (3, 3))
    covariance[3, 3] = covariance[4, 4] = covariance[5, 5] = -1.0
    return [float(v) for v in covariance.reshape(-1)]


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
    covariance: `pose_covariance`)."""
    from vision_msgs.msg import Detection3D, ObjectHypothesisWithPose

    rotation, translation, size = object_pose(detection, z_up)
    msg = Detection3D()
    msg.header = header
    msg.id = str(object_id(detection)) if detection.track_id >= 0 else ''
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = detection.class_name
    hypothesis.hypothesis.score = float(min(max(detection.score, 0.0), 1.0))
    hypothesis.pose.pose = _pose(rotation, translation)
    hypothesis.pose.covariance = pose_covariance(detection)
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

        label = Marker(header=header, ns='seqpose/label', id=marker_id, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
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
