"""Where the node's camera motion comes from: the `odom` topic (nav_msgs/Odometry of the camera, `use_odometry`;
needs no tf2_ros), TF from `odom_frame` to the image's frame (with tf2_ros), or nowhere. The runner takes
T_current_from_previous between processed frames; this keeps the previous frame's odometry pose and forgets it on
every reset (motion across a reset means nothing).
"""

import rclpy
from rclpy.qos import QoSProfile

from seqpose_core.geometry import camera_motion_between
from seqpose_ros import conversions
from seqpose_ros.pipeline import StampedCache

ODOMETRY_BUFFER = 400  # readings kept for pairing (2 s of a 200 Hz VIO)
ODOMETRY_STAMP_TOLERANCE = 0.02  # seconds between an image's stamp and the odometry reading paired with it


def _stamp_seconds(stamp):
    return stamp.sec + stamp.nanosec * 1e-9


class CameraMotionSource:
    """`motion(header)` -> T_current_from_previous (4, 4) for the image with `header`, or None; problems go to
    `report(kind, text)` (throttled by the node). `forget()` after a reset."""

    def __init__(self, node, params, tf2_ros, report, stats):
        self.report, self.stats, self.odom_frame = report, stats, params['odom_frame']
        self.previous = None  # odom_from_camera of the previous processed frame
        self.readings = self.subscription = self.tf_buffer = None
        if params['use_odometry']:
            from nav_msgs.msg import Odometry

            self.readings = StampedCache(size=ODOMETRY_BUFFER)  # paired with images by stamp, as CameraInfo
            self.subscription = node.create_subscription(Odometry, 'odom', self._on_odometry, QoSProfile(depth=50))
        elif self.odom_frame:
            if tf2_ros is None:
                node.get_logger().warning(
                    f"odom_frame '{self.odom_frame}' set but tf2_ros is not installed: the memory runs without "
                    'camera motion (use_odometry takes a nav_msgs/Odometry topic instead)'
                )
            else:
                self.tf_buffer = tf2_ros.Buffer()
                self.tf_listener = tf2_ros.TransformListener(self.tf_buffer, node)

    def forget(self):
        self.previous = None

    def destroy(self, node):
        """Drop the odometry subscription / TF listener (the node cleans up)."""
        if self.subscription is not None:
            node.destroy_subscription(self.subscription)
            self.subscription = None
        listener = getattr(self, 'tf_listener', None)
        if listener is not None:
            listener.unregister()
            self.tf_listener = None

    def motion(self, header):
        if self.readings is not None:
            pose = self._odometry_pose(header)
        elif self.tf_buffer is not None:
            pose = self._tf_pose(header)
        else:
            return None
        previous, self.previous = self.previous, pose
        if previous is None or pose is None:
            return None
        self.stats.with_motion += 1
        return camera_motion_between(previous, pose)

    def _on_odometry(self, msg):
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        pose = conversions.transform_to_matrix((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
        self.readings.add(_stamp_seconds(msg.header.stamp), (msg.child_frame_id, pose))

    def _odometry_pose(self, header):
        """odom_from_camera of the image from the `odom` reading with its stamp, or None (reported)."""
        if self.readings.latest() is None:
            return None  # no reading yet (the odometry may start after the camera): nothing to report
        stamp = _stamp_seconds(header.stamp)
        reading, distance = self.readings.pair(stamp, ODOMETRY_STAMP_TOLERANCE, wait=0.05)
        topic = self.subscription.topic_name
        if distance is not None:
            self.report(
                'odometry:stamp',
                f'{topic}: no reading within {ODOMETRY_STAMP_TOLERANCE:g} s of the image stamp {stamp:.3f}; frame '
                'processed without camera motion',
            )
            return None
        child, pose = reading
        if child != header.frame_id:
            self.report(
                'odometry:frame',
                f"{topic}: child_frame_id '{child}' is not the image's frame '{header.frame_id}' (give the camera's "
                'pose, or use odom_frame with tf2_ros); frame processed without camera motion',
            )
            return None
        return pose

    def _tf_pose(self, header):
        """odom_from_camera from TF odom_frame -> the image's frame at its stamp, or None (reported)."""
        try:
            t = self.tf_buffer.lookup_transform(
                self.odom_frame, header.frame_id, rclpy.time.Time.from_msg(header.stamp)
            )
        except Exception as error:  # noqa: BLE001 - tf2 raises several exception types
            self.report(
                'tf', f'TF {self.odom_frame} -> {header.frame_id}: {error}; frame processed without camera motion'
            )
            return None
        tr, rot = t.transform.translation, t.transform.rotation
        return conversions.transform_to_matrix((tr.x, tr.y, tr.z), (rot.x, rot.y, rot.z, rot.w))
