"""`seqpose_node`: category-level 6D pose and size of objects from a monocular RGB stream.

Topics (relative: remap them, or push the node into a namespace):
  in   image (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8) or image/compressed (image_transport:=compressed)
       camera_info (sensor_msgs/CameraInfo, the latest is kept)
  out  detections (vision_msgs/Detection3DArray, the image's header), markers (visualization_msgs/MarkerArray),
       debug_image (sensor_msgs/Image, only rendered while subscribed), /diagnostics, /tf
  srv  ~/reset (std_srvs/Trigger): forget the temporal memory and the tracks

The node is thin: conversions, the frame gate, the one-slot buffer, tracking and parameters live in plain
modules (conversions, pipeline, params, loading, seqpose_core.tracking) that are tested without ROS.
"""
import re
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from seqpose_ros import conversions, params as param_table
from seqpose_ros.conversions import InputError
from seqpose_ros.loading import StartupError, load_runner
from seqpose_ros.pipeline import CameraInfoCache, Frame, LatestSlot, Pipeline, ProblemLog, SequenceGaps, Stats

try:   # present on a ROS 2 install; not on PyPI (the pip set-up publishes TFMessage on /tf itself)
    import tf2_ros
except ImportError:
    tf2_ros = None

DYNAMIC_RUNNER_PARAMS = ('score_threshold', 'max_detections', 'mode', 'max_frame_gap')


def _problem_kind(text):
    """Throttling key: the message with its numbers blanked, so repeats of one problem (differing only in
    sizes, stamps or ages) share a key while different problems each get their own first log line."""
    return re.sub(r'[-+]?\d[\d.e+-]*', '#', text)


def _stamp_seconds(stamp):
    return stamp.sec + stamp.nanosec * 1e-9


class CameraState:
    """The latest CameraInfo, already validated (K or the reason it is unusable)."""

    def __init__(self, msg, topic):
        self.frame_id = msg.header.frame_id
        self.hw = (msg.height, msg.width)
        try:
            self.K, self.error = conversions.camera_info_to_K(msg.k, msg.width, msg.height, topic), ''
        except InputError as error:
            self.K, self.error = None, str(error)


class SeqPoseNode(Node):
    def __init__(self, **kwargs):
        super().__init__('seqpose_node', **kwargs)
        self.params = param_table.declare_all(self)
        self.problems = ProblemLog(period=5.0)
        self.stats = Stats()
        self.slot = LatestSlot()
        self.gaps = SequenceGaps()
        self.cameras = CameraInfoCache()
        self._warned_frame_mismatch = False
        self._prev_odom_from_camera = None

        runner, path, device = load_runner(self.params['checkpoint'], self.params['device'],
                                           self.params['history_frames'], self.params['top_k'],
                                           warn=self.get_logger().warning)
        self.pipeline = Pipeline(runner)
        self.pipeline.configure(**{name: self.params[name] for name in DYNAMIC_RUNNER_PARAMS})
        self.device = device

        image_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1, durability=DurabilityPolicy.VOLATILE,
            reliability=(ReliabilityPolicy.BEST_EFFORT if self.params['image_qos'] == 'sensor_data'
                         else ReliabilityPolicy.RELIABLE))
        if self.params['image_transport'] == 'compressed':
            self.image_sub = self.create_subscription(CompressedImage, 'image/compressed',
                                                      self._on_compressed, image_qos)
        else:
            self.image_sub = self.create_subscription(Image, 'image', self._on_image, image_qos)
        self.info_sub = self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, image_qos)

        # Outputs are reliable: a reliable publisher matches reliable and best-effort subscribers (RViz's
        # Image display subscribes reliable by default).
        self.detections_pub = self.create_publisher(Detection3DArray, 'detections', 10)
        self.markers_pub = self.create_publisher(MarkerArray, 'markers', 10)
        self.debug_pub = self.create_publisher(Image, 'debug_image', 1)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        if tf2_ros is not None:
            self.tf_broadcaster = tf2_ros.TransformBroadcaster(self)
            self.tf_pub = None
        else:
            from tf2_msgs.msg import TFMessage
            self.tf_broadcaster = None
            self.tf_pub = self.create_publisher(TFMessage, '/tf', QoSProfile(depth=100))
        self.tf_buffer = None
        if self.params['odom_frame']:
            if tf2_ros is None:
                self.get_logger().warning(f"odom_frame '{self.params['odom_frame']}' set but tf2_ros is not "
                                          'installed: the memory runs without camera motion')
            else:
                self.tf_buffer = tf2_ros.Buffer()
                self.tf_listener = tf2_ros.TransformListener(self.tf_buffer, self)

        self.reset_srv = self.create_service(Trigger, '~/reset', self._on_reset)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics)

        self._worker = threading.Thread(target=self._work, name='seqpose_worker', daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"model '{path}' on {device}, mode {self.params['mode']}; listening on "
            f"{self.image_sub.topic_name} + {self.info_sub.topic_name}, publishing "
            f"{self.detections_pub.topic_name}")

    # ------------------------------------------------------------------------------------------- inputs
    def _on_camera_info(self, msg):
        self.cameras.add(_stamp_seconds(msg.header.stamp), CameraState(msg, self.info_sub.topic_name))

    # two-argument callbacks: rclpy then passes the MessageInfo (publication sequence numbers)
    def _on_image(self, msg, info):
        self._enqueue(msg, info, compressed=False)

    def _on_compressed(self, msg, info):
        self._enqueue(msg, info, compressed=True)

    def _enqueue(self, msg, info, compressed):
        gid = (info or {}).get('publisher_gid') or {}
        self.gaps.update(str(gid.get('data', gid)), (info or {}).get('publication_sequence_number'))
        # The callback only records the message: decoding and inference happen on the worker, and a frame
        # that arrives while the slot is still full replaces the older one (counted as dropped).
        self.stats.received += 1
        self.slot.put((msg, compressed, time.monotonic()))

    def _on_reset(self, request, response):
        self.pipeline.request_reset('~/reset service called')
        self._prev_odom_from_camera = None
        response.success = True
        response.message = 'temporal memory and tracks are reset before the next frame'
        self.get_logger().info('reset requested through ~/reset')
        return response

    # ------------------------------------------------------------------------------------------- parameters
    def _validate_parameters(self, parameters):
        for parameter in parameters:
            problem = param_table.validate(parameter.name, parameter.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters):
        changed = {}
        for parameter in parameters:
            if parameter.name in param_table.SPECS:
                spec = param_table.SPECS[parameter.name]
                value = float(parameter.value) if isinstance(spec.default, float) else parameter.value
                self.params[parameter.name] = value
                changed[parameter.name] = value
        runner_changes = {k: v for k, v in changed.items() if k in DYNAMIC_RUNNER_PARAMS}
        if runner_changes:
            self.pipeline.configure(**runner_changes)
        if changed:
            self.get_logger().info('parameters changed: ' + ', '.join(f'{k}={v}' for k, v in changed.items()))

    # ------------------------------------------------------------------------------------------- worker
    def _work(self):
        while not self.slot.closed:
            item = self.slot.take(timeout=0.5)
            if item is None:
                continue
            try:
                self._process_safely(item)
            except Exception as error:  # noqa: BLE001 - the worker thread must never die
                print(f'seqpose_node worker: {type(error).__name__}: {error}', file=sys.stderr)

    def _process_safely(self, item):
        try:
            self._process(*item)
        except InputError as error:
            self.stats.skipped += 1
            self._report(_problem_kind(str(error)), str(error), 'warn')
        except Exception as error:  # noqa: BLE001 - the node must survive anything one frame brings
            self.stats.skipped += 1
            self.pipeline.request_reset(f'processing failed ({type(error).__name__})')
            self._report('processing:' + type(error).__name__,
                         f'{self.image_sub.topic_name}: processing failed: {type(error).__name__}: {error}; '
                         'frame skipped, memory reset', 'error')

    def _report(self, kind, text, level='warn'):
        line = self.problems.report(kind, text)
        if line is not None:
            # one call site per severity: rclpy ties a severity to the calling line
            logger = self.get_logger()
            if level == 'error':
                logger.error(line)
            elif level == 'info':
                logger.info(line)
            else:
                logger.warning(line)

    def _process(self, msg, compressed, received):
        topic = self.image_sub.topic_name
        header = msg.header
        stamp = _stamp_seconds(header.stamp)
        camera = self.cameras.get(stamp)   # looked up here, not in the callback: its CameraInfo may come later
        max_age = self.params['max_image_age']
        if max_age > 0:
            age = self.get_clock().now().nanoseconds * 1e-9 - stamp
            if age > max_age:
                raise InputError(f'{topic}: image is {age:.3f} s old (max_image_age {max_age:g} s); frame skipped')
        if compressed:
            rgb = conversions.compressed_to_rgb(msg.format, msg.data, topic)
        else:
            rgb = conversions.image_msg_to_rgb(msg, topic)
        info_topic = self.info_sub.topic_name
        if camera is None:
            raise InputError(f'{topic}: no CameraInfo received yet on {info_topic}; frame skipped')
        if camera.error:
            raise InputError(camera.error)
        conversions.check_image_matches_camera_info(rgb.shape[:2], camera.hw, topic, info_topic)
        if camera.frame_id != header.frame_id and not self._warned_frame_mismatch:
            self._warned_frame_mismatch = True   # warned once: some drivers legitimately differ here
            self.get_logger().warning(f"{info_topic} frame_id '{camera.frame_id}' differs from the image's "
                                      f"'{header.frame_id}'; using the image's frame for the outputs")

        frame = Frame(rgb, camera.K, stamp, header.frame_id, header, received,
                      camera_motion=self._camera_motion(header))
        result = self.pipeline.process(frame)
        if result.reset_reason:
            self.stats.resets += 1
            self._prev_odom_from_camera = None
            self._report(_problem_kind(result.reset_reason), f'{topic}: {result.reset_reason}; temporal memory '
                         'and tracks reset', 'warn' if 'service' not in result.reset_reason else 'info')
        if result.skipped_reason:
            self.stats.skipped += 1
            self._report('skip:duplicate', f'{topic}: {result.skipped_reason}; frame skipped')
            return
        self._publish(result.detections, header, rgb, camera.K)
        self.stats.latencies.append(time.monotonic() - received)
        self.stats.processed += 1

    def _camera_motion(self, header):
        """T_cur_from_prev from TF (odom_frame -> image frame), or None when unknown."""
        if self.tf_buffer is None:
            return None
        try:
            t = self.tf_buffer.lookup_transform(self.params['odom_frame'], header.frame_id,
                                                rclpy.time.Time.from_msg(header.stamp))
        except Exception as error:  # noqa: BLE001 - tf2 raises several exception types
            self._report('tf', f"TF {self.params['odom_frame']} -> {header.frame_id}: {error}; frame processed "
                               'without camera motion')
            self._prev_odom_from_camera = None
            return None
        tr, rot = t.transform.translation, t.transform.rotation
        odom_from_camera = conversions.transform_to_matrix((tr.x, tr.y, tr.z), (rot.x, rot.y, rot.z, rot.w))
        previous, self._prev_odom_from_camera = self._prev_odom_from_camera, odom_from_camera
        if previous is None:
            return None
        return np.linalg.inv(odom_from_camera) @ previous

    # ------------------------------------------------------------------------------------------- outputs
    def _publish(self, detections, header, rgb, K):
        self.detections_pub.publish(conversions.detections_to_array(detections, header))
        if self.params['publish_tf']:
            transforms = conversions.detections_to_transforms(detections, header, self.params['tf_prefix'])
            if transforms:
                if self.tf_broadcaster is not None:
                    self.tf_broadcaster.sendTransform(transforms)
                else:
                    from tf2_msgs.msg import TFMessage
                    self.tf_pub.publish(TFMessage(transforms=transforms))
        if self.params['publish_markers']:
            self.markers_pub.publish(conversions.detections_to_markers(detections, header,
                                                                       self.params['marker_lifetime']))
        if self.debug_pub.get_subscription_count() > 0:
            from seqpose_ros.overlay import draw_detections
            overlay = draw_detections(rgb, detections, K)
            self.debug_pub.publish(Image(header=header, **conversions.rgb_to_image_fields(overlay)))

    def _publish_diagnostics(self):
        values = self.stats.snapshot(self.slot.dropped, self.gaps.lost)
        status = DiagnosticStatus(name=f'{self.get_fully_qualified_name()}: pipeline', hardware_id=self.device)
        camera = self.cameras.latest()
        if camera is None or camera.error:
            status.level, status.message = DiagnosticStatus.WARN, 'no valid CameraInfo'
        elif values['input rate (Hz)'] > 0 and values['processed rate (Hz)'] == 0:
            status.level, status.message = DiagnosticStatus.WARN, 'images arrive but none is processed'
        else:
            status.level, status.message = DiagnosticStatus.OK, 'ok'
        status.values = [KeyValue(key=k, value=f'{v:.3f}' if isinstance(v, float) else str(v))
                         for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def shutdown(self):
        self.slot.close()
        self._worker.join(timeout=5.0)


def main(args=None):
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        try:
            node = SeqPoseNode()
        except Exception as error:  # noqa: BLE001 - bad checkpoint, bad parameter file: say why, exit 1
            # the node never finished constructing: rclpy's named logger prints like the node's would
            reason = str(error) if isinstance(error, (StartupError, ValueError)) else \
                f'{type(error).__name__}: {error}'
            rclpy.logging.get_logger('seqpose_node').fatal(f'cannot start: {reason}')
            return 1
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
