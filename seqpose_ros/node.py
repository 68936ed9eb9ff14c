"""`seqpose_node`: category-level 6D pose and size of objects from a monocular RGB stream.

Topics (relative: remap them, or push the node into a namespace):
  in   image (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8; other encodings through cv_bridge where it
       is installed) or image/compressed (image_transport:=compressed)
       camera_info (sensor_msgs/CameraInfo, paired with the image by stamp)
  out  detections (vision_msgs/Detection3DArray, the image's header), markers (visualization_msgs/MarkerArray),
       debug_image (sensor_msgs/Image, only rendered while subscribed), /diagnostics, /tf
  srv  ~/reset (std_srvs/Trigger): forget the temporal memory and the tracks

The node is thin: conversions, CameraInfo pairing, the one-slot buffer, object ids and parameters live in
plain modules (conversions, pipeline, params, loading, seqpose_core.runner and its tracker) tested without
ROS; what the node publishes is seqpose_ros.outputs, where its camera motion comes from seqpose_ros.camera_motion.
"""

import signal
import sys
import threading
import time

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger

from seqpose_core.runner import Frame
from seqpose_ros import camera_model, images
from seqpose_ros import params as param_table
from seqpose_ros.camera_motion import CameraMotionSource
from seqpose_ros.images import InputError, problem_kind
from seqpose_ros.loading import StartupError, load_runner
from seqpose_ros.outputs import Outputs
from seqpose_ros.pipeline import LatestSlot, Pipeline, ProblemLog, SequenceGaps, StampedCache, Stats
from seqpose_ros.qos import best_available_reliability, image_qos_profile

try:  # present on a ROS 2 install; not on PyPI (the pip set-up publishes TFMessage on /tf itself)
    import tf2_ros
except ImportError:
    tf2_ros = None

CAMERA_INFO_WAIT = 0.1  # seconds the worker waits for the CameraInfo of an image that came first
FIRST_CAMERA_INFO_WAIT = 1.0


def _stamp_seconds(stamp):
    return stamp.sec + stamp.nanosec * 1e-9


def _camera_info_key(msg):
    roi = msg.roi
    return (
        msg.width,
        msg.height,
        tuple(msg.k),
        tuple(msg.d),
        msg.distortion_model,
        tuple(msg.p),
        tuple(msg.r),
        msg.binning_x,
        msg.binning_y,
        (roi.x_offset, roi.y_offset, roi.height, roi.width),
    )


class CameraState:
    """A CameraInfo as the worker uses it: its frame id and the validated camera model (K, expected image
    size, undistortion), or the reason it is unusable."""

    def __init__(self, frame_id, model):
        self.frame_id = frame_id
        self.model = model
        self.K = model.K
        self.error = model.error
        self.hw = model.expected_hw if not model.error else (0, 0)


class SeqPoseNode(Node):
    def __init__(self, **kwargs):
        super().__init__('seqpose_node', **kwargs)
        self.params = param_table.declare_all(self)
        self.problems = ProblemLog(period=5.0)
        self.stats = Stats()
        self.slot = LatestSlot()
        self.gaps = SequenceGaps()
        self.cameras = StampedCache()
        self._warned_frame_mismatch = False
        self._last_received_stamp = None
        self._camera_model = (None, None)  # (CameraInfo key, CameraModel): rebuilt only when it changes
        self.bridge = images._cv_bridge()

        runner, path, device = load_runner(
            self.params['checkpoint'],
            self.params['device'],
            self.params['history_frames'],
            self.params['top_k'],
            warn=self.get_logger().warning,
        )
        # the inference settings, their defaults the checkpoint's (a params file or ros2 param set overrides)
        self.params.update(param_table.declare_all(self, param_table.runner_param_specs(runner.cfg)))
        self.pipeline = Pipeline(runner)
        self.pipeline.configure(**{name: self.params[name] for name in param_table.RUNNER_SETTINGS})
        self.device = device

        # The image QoS can be overridden per topic (qos_overrides./<topic>.subscription.reliability etc. in
        # the params file, the standard ROS 2 mechanism); the effective profile is kept for re-subscribing.
        self._image_qos = image_qos_profile(self.params['image_qos'])
        self.image_sub = None
        self._subscribe_images(QoSOverridingOptions.with_default_policies())
        self._info_qos = image_qos_profile(self.params['image_qos'], depth=5)
        self.info_sub = self.create_subscription(
            CameraInfo,
            'camera_info',
            self._on_camera_info,
            self._info_qos,
            qos_overriding_options=QoSOverridingOptions.with_default_policies(),
        )
        self._info_qos = self.info_sub.qos_profile
        self.info_topic = self.info_sub.topic_name  # a string: the worker never touches a subscription
        # best_available (not overridden): the subscriptions follow their publishers' reliability
        self._follow = {
            'image': self._image_qos.reliability == ReliabilityPolicy.BEST_AVAILABLE,
            'camera_info': self._info_qos.reliability == ReliabilityPolicy.BEST_AVAILABLE,
        }
        self._reliability = {'image': None, 'camera_info': None}
        self.image_kind = camera_model.image_kind_for(self.params['camera_model'], self.image_sub.topic_name)
        if not self.params['enabled']:
            self._unsubscribe_images()
        if any(self._follow.values()):
            self.follow_timer = self.create_timer(1.0, self.follow_publishers)

        self.outputs = Outputs(self, tf2_ros)
        self.camera_motion = CameraMotionSource(self, self.params, tf2_ros, self._report, self.stats)

        self.reset_srv = self.create_service(Trigger, '~/reset', self._on_reset)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics)

        self._worker = threading.Thread(target=self._work, name='seqpose_worker', daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"model '{path}' on {device}, mode {self.params['mode']}; listening on "
            f'{self.image_topic} + {self.info_topic} (QoS {self.params["image_qos"]}, '
            f'{self.image_kind} images), publishing {self.outputs.detections_pub.topic_name}'
            + ('' if self.params['enabled'] else '; disabled (enabled:=false): not subscribed to images')
        )

    # ------------------------------------------------------------------------------------------- inputs
    def _subscribe_images(self, overriding=None):
        if self.params['image_transport'] == 'compressed':
            self.image_sub = self.create_subscription(
                CompressedImage,
                'image/compressed',
                self._on_compressed,
                self._image_qos,
                qos_overriding_options=overriding,
            )
        else:
            self.image_sub = self.create_subscription(
                Image, 'image', self._on_image, self._image_qos, qos_overriding_options=overriding
            )
        self._image_qos = self.image_sub.qos_profile  # with any overrides applied
        self.image_topic = self.image_sub.topic_name

    def follow_publishers(self):
        """best_available: re-subscribe image / camera_info with the reliability their publishers offer now
        (reliable when all are, best effort as soon as one is), so the node matches a camera started after it."""
        for name in ('image', 'camera_info'):
            subscription = self.image_sub if name == 'image' else self.info_sub
            if not self._follow[name] or subscription is None:
                continue
            topic = subscription.topic_name
            publishers = self.get_publishers_info_by_topic(topic)
            wanted = best_available_reliability([info.qos_profile.reliability for info in publishers])
            if wanted is None or wanted == self._reliability[name]:
                continue
            self._reliability[name] = wanted
            profile = QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=subscription.qos_profile.depth,
                durability=DurabilityPolicy.VOLATILE,
                reliability=wanted,
            )
            self.destroy_subscription(subscription)
            if name == 'image':
                self._image_qos = profile
                self._subscribe_images()
            else:
                self._info_qos = profile
                self.info_sub = self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, profile)
            self.get_logger().info(
                f'{topic}: publisher(s) offer {wanted.name.lower()}; subscribed '
                f'{wanted.name.lower()} (image_qos best_available)'
            )

    def _unsubscribe_images(self):
        if self.image_sub is not None:
            self.destroy_subscription(self.image_sub)
            self.image_sub = None
        self.slot.clear()

    def _on_camera_info(self, msg):
        key = _camera_info_key(msg)
        cached_key, model = self._camera_model
        if key != cached_key:
            model = camera_model.camera_model_from_msg(msg, self.image_kind, self.info_topic)
            self._camera_model = (key, model)
            for note in model.notes:
                self._report('camera model:' + problem_kind(note), note, 'warn' if 'non-zero D' in note else 'info')
        self.cameras.add(_stamp_seconds(msg.header.stamp), CameraState(msg.header.frame_id, model))

    # two-argument callbacks: rclpy then passes the MessageInfo (publication sequence numbers)
    def _on_image(self, msg, info):
        self._enqueue(msg, info, compressed=False)

    def _on_compressed(self, msg, info):
        self._enqueue(msg, info, compressed=True)

    def _enqueue(self, msg, info, compressed):
        gid = (info or {}).get('publisher_gid') or {}
        self.gaps.update(str(gid.get('data', gid)), (info or {}).get('publication_sequence_number'))
        # The callback only records the message: decoding and inference happen on the worker, and a frame
        # that arrives while the slot is still full replaces the older one (counted as dropped). The stamp of
        # the image received before this one goes with it: the runner measures gaps on received frames, so a
        # slow model (frames dropped here) does not read as a gap in the camera stream.
        stamp = _stamp_seconds(msg.header.stamp)
        previous, self._last_received_stamp = self._last_received_stamp, stamp
        self.stats.received += 1
        self.slot.put((msg, compressed, time.monotonic(), previous))

    def _on_reset(self, request, response):
        self.pipeline.request_reset('~/reset service called')
        self.camera_motion.forget()
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
        runner_changes = {k: v for k, v in changed.items() if k in param_table.RUNNER_SETTINGS}
        if runner_changes:
            self.pipeline.configure(**runner_changes)
        if 'enabled' in changed:
            if changed['enabled'] and self.image_sub is None:
                self._subscribe_images()
                self.pipeline.request_reset('re-enabled')
                self._last_received_stamp = None
            elif not changed['enabled'] and self.image_sub is not None:
                self._unsubscribe_images()
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
            self._report(error.kind, str(error), 'warn')
        except Exception as error:  # noqa: BLE001 - the node must survive anything one frame brings
            self.stats.skipped += 1
            self.pipeline.request_reset(f'processing failed ({type(error).__name__})')
            self._report(
                'processing:' + type(error).__name__,
                f'{self.image_topic}: processing failed: {type(error).__name__}: {error}; frame skipped, memory reset',
                'error',
            )

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

    def _process(self, msg, compressed, received, previous_stamp=None):
        topic = self.image_topic
        header = msg.header
        stamp = _stamp_seconds(header.stamp)
        if not header.frame_id.strip():
            raise InputError(
                f"{topic}: header.frame_id is empty: detections, TF and markers need the camera's "
                "frame (set the driver's frame_id); frame skipped",
                kind=f'{topic}:empty frame_id',
            )
        max_age = self.params['max_image_age']
        if max_age > 0:
            age = self.get_clock().now().nanoseconds * 1e-9 - stamp
            if age > max_age:
                raise InputError(f'{topic}: image is {age:.3f} s old (max_image_age {max_age:g} s); frame skipped')
        # paired here, not in the callback: its CameraInfo may come a moment after the image
        tolerance = self.params['stamp_tolerance']
        # the first CameraInfo may come well after the first image (a reliable writer resends a lost sample
        # only at its next heartbeat): wait longer while none has ever arrived
        wait = CAMERA_INFO_WAIT if self.cameras.latest() is not None else FIRST_CAMERA_INFO_WAIT
        camera, distance = self.cameras.pair(stamp, tolerance, wait=wait)
        info_topic = self.info_topic
        if camera is None:
            if compressed:  # still decoded first: a broken file is the better message
                images.compressed_to_rgb(msg.format, msg.data, topic)
            raise InputError(f'{topic}: no CameraInfo received yet on {info_topic}; frame skipped')
        if distance is not None:
            self._report(
                f'{topic}:camera info stamp',
                f'{topic}: no CameraInfo on {info_topic} within '
                f'stamp_tolerance {tolerance:g} s of the image stamp {stamp:.3f}; using the latest, '
                f'{distance:.3f} s apart (raise stamp_tolerance if the driver stamps them differently)',
            )
        if camera.error:
            raise InputError(camera.error)
        if compressed:
            rgb = images.compressed_to_rgb(msg.format, msg.data, topic, expected_hw=camera.hw)
        else:
            rgb = images.image_msg_to_rgb(msg, topic, self.bridge)
        images.check_image_size(rgb.shape[1], rgb.shape[0], topic)
        camera_model.check_image_matches_camera_info(rgb.shape[:2], camera.hw, topic, info_topic)
        if camera.frame_id != header.frame_id and not self._warned_frame_mismatch:
            self._warned_frame_mismatch = True  # warned once: some drivers legitimately differ here
            self.get_logger().warning(
                f"{info_topic} frame_id '{camera.frame_id}' differs from the image's "
                f"'{header.frame_id}'; using the image's frame for the outputs"
            )
        rgb = camera.model.undistort(rgb)

        frame = Frame(
            rgb,
            camera.K,
            stamp,
            header.frame_id,
            camera_motion=self.camera_motion.motion(header),
            previous_stamp=previous_stamp,
        )
        try:
            result = self.pipeline.process(frame)
        except (ValueError, TypeError) as error:
            # the runner's input checks (before any state changes): a warning and a skip, not an error + reset
            raise InputError(
                f'{topic}: {error}; frame skipped', kind=f'{topic}:runner:{type(error).__name__}'
            ) from None
        if result.reset_reason:
            self.stats.resets += 1
            self.camera_motion.forget()
            self._report(
                problem_kind(result.reset_reason),
                f'{topic}: {result.reset_reason}; temporal memory and tracks reset',
                'warn' if 'service' not in result.reset_reason else 'info',
            )
        if result.skip_reason:
            self.stats.skipped += 1
            self._report('skip:duplicate', f'{topic}: {result.skip_reason}; frame skipped')
            return
        self.outputs.publish(result.detections, header, rgb, camera.K)
        self.stats.latencies.append(time.monotonic() - received)
        self.stats.processed += 1

    # ------------------------------------------------------------------------------------------- outputs
    def _publish_diagnostics(self):
        values = self.stats.snapshot(self.slot.dropped, self.gaps.lost)
        values['enabled'] = str(self.params['enabled']).lower()
        values['object ids in use'] = self.pipeline.ids.in_use
        values['TF frame names published'] = len(self.outputs.tf_frame_names)
        camera = self.cameras.latest()
        if not self.params['enabled']:
            level, message = 'ok', 'disabled (enabled:=false)'
        elif camera is None or camera.error:
            level, message = 'warn', 'no valid CameraInfo'
        elif values['input rate (Hz)'] > 0 and values['processed rate (Hz)'] == 0:
            level, message = 'warn', 'images arrive but none is processed'
        else:
            level, message = 'ok', 'ok'
        self.outputs.publish_diagnostics(
            f'{self.get_fully_qualified_name()}: pipeline', self.device, level, message, values
        )

    def shutdown(self):
        self.slot.close()
        self._worker.join(timeout=3.0)


def main(args=None):
    """Run the node until SIGINT or SIGTERM. The signals only set a flag (rclpy's own handlers are not
    installed): `ros2 launch` without a terminal sends SIGINT twice (the process group's, then its own), and
    a second signal must not interrupt the clean-up with a KeyboardInterrupt. Exit status 0 after a signal,
    1 when the node cannot start (the reason is logged)."""
    from rclpy.signals import SignalHandlerOptions

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = executor = None
    try:
        try:
            node = SeqPoseNode()
        except Exception as error:  # noqa: BLE001 - bad checkpoint, bad parameter file: say why, exit 1
            # the node never finished constructing: rclpy's named logger prints like the node's would
            reason = str(error) if isinstance(error, (StartupError, ValueError)) else f'{type(error).__name__}: {error}'
            rclpy.logging.get_logger('seqpose_node').fatal(f'cannot start: {reason}')
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)  # returns at least every 0.1 s, so the flag is seen
    except ExternalShutdownException:
        pass
    finally:
        # from here on further signals are ignored, also while the interpreter finalises (Python would
        # restore the default SIGINT action then, and a late second signal would end the process with -2);
        # the clean-up is bounded (the worker is joined for at most 3 s)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        if node is not None:
            node.get_logger().info('shutting down' + (' (signal)' if stop.is_set() else ''))
            node.shutdown()
            if executor is not None:
                executor.remove_node(node)
                executor.shutdown(timeout_sec=1.0)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
