"""What `seqpose_node` publishes: detections, TF frames of confirmed tracks, RViz markers, the debug overlay and
/diagnostics. One object the node builds once; the messages themselves come from seqpose_ros.conversions.

Outputs are reliable: a reliable publisher matches reliable and best-effort subscribers (RViz's Image display
subscribes reliable by default). Without tf2_ros (the pip set-up) TF goes out as TFMessage on /tf. The node
creates them when it configures and destroys them when it cleans up; detections, markers, the overlay and the pip
set-up's /tf are lifecycle publishers (they publish only while the node is active), /diagnostics a plain one (it
says "inactive" while the node is).
"""

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from seqpose_ros import conversions, images

LEVELS = {'ok': DiagnosticStatus.OK, 'warn': DiagnosticStatus.WARN, 'error': DiagnosticStatus.ERROR}


class Outputs:
    def __init__(self, node, tf2_ros=None):
        self.node = node
        self.params = node.params  # the node's live parameter values (changed at run time)
        # a lifecycle node's managed publishers (rclpy.lifecycle), else plain ones
        create = getattr(node, 'create_lifecycle_publisher', node.create_publisher)
        self.detections_pub = create(Detection3DArray, 'detections', 10)
        self.markers_pub = create(MarkerArray, 'markers', 10)
        self.debug_pub = create(Image, 'debug_image', 1)
        self.diagnostics_pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.tf_frame_names = set()  # every TF child frame name published (bounded: reused ids)
        if tf2_ros is not None:
            self.tf_broadcaster, self.tf_pub = tf2_ros.TransformBroadcaster(node), None
        else:
            from tf2_msgs.msg import TFMessage

            self.tf_broadcaster = None
            self.tf_pub = create(TFMessage, '/tf', QoSProfile(depth=100))

    def destroy(self):
        """Destroy every publisher (the node cleans up)."""
        destroy_managed = getattr(self.node, 'destroy_lifecycle_publisher', self.node.destroy_publisher)
        for publisher in (self.detections_pub, self.markers_pub, self.debug_pub, self.tf_pub):
            if publisher is not None:
                destroy_managed(publisher)
        self.node.destroy_publisher(self.diagnostics_pub)
        broadcaster_pub = getattr(self.tf_broadcaster, 'pub_tf', None)
        if broadcaster_pub is not None:
            self.node.destroy_publisher(broadcaster_pub)

    def publish(self, detections, header, rgb, K):
        """One processed frame: detections, TF, markers and (while subscribed) the overlay."""
        params, z_up = self.params, self.params['z_up']
        self.detections_pub.publish(conversions.detections_to_array(detections, header, z_up))
        if params['publish_tf']:
            prefix = conversions.effective_tf_prefix(self.node.get_namespace(), params['tf_prefix'])
            transforms = conversions.detections_to_transforms(detections, header, prefix, z_up)
            self.tf_frame_names.update(t.child_frame_id for t in transforms)
            if transforms:
                if self.tf_broadcaster is not None:
                    self.tf_broadcaster.sendTransform(transforms)
                else:
                    from tf2_msgs.msg import TFMessage

                    self.tf_pub.publish(TFMessage(transforms=transforms))
        if params['publish_markers']:
            self.markers_pub.publish(
                conversions.detections_to_markers(detections, header, params['marker_lifetime'], z_up=z_up)
            )
        if self.debug_pub.get_subscription_count() > 0:
            from seqpose_ros.overlay import draw_detections

            overlay = draw_detections(rgb, detections, K)
            self.debug_pub.publish(Image(header=header, **images.rgb_to_image_fields(overlay)))

    def publish_diagnostics(self, name, hardware_id, level, message, values):
        """One DiagnosticStatus: level 'ok' / 'warn' / 'error', values {key: number or text}."""
        status = DiagnosticStatus(name=name, hardware_id=hardware_id, level=LEVELS[level], message=message)
        status.values = [
            KeyValue(key=k, value=f'{v:.3f}' if isinstance(v, float) else str(v)) for k, v in values.items()
        ]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.node.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)
