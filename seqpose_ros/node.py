"""`seqpose_node`: category-level 6D pose and size of objects from a monocular RGB stream.

A managed (lifecycle) node, REP-2008 style:
  unconfigured  parameters declared; nothing loaded (the node's own and the configure-time ones can be set)
  configure     loads the checkpoint (backend, device), declares the inference settings with the checkpoint's
                defaults, warms the model up on a blank frame, creates the publishers, the ~/reset service and
                the worker                                                                  -> inactive
  activate      subscribes to the camera (image + camera_info; odometry from configure on) -> active
  deactivate    unsubscribes; the model stays loaded                                       -> inactive
  cleanup       frees the model and everything configure made                              -> unconfigured
  shutdown      from any state                                                             -> finalized
`autostart` (default true; the launch file sets false and drives the transitions itself) configures and activates
at start, so a plain `seqpose_node` / `ros2 run` works as before.

Topics (relative: remap them, or push the node into a namespace):
  in   image (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8; other encodings through cv_bridge where it
       is installed) or image/compressed (image_transport:=compressed)
       camera_info (sensor_msgs/CameraInfo, paired with the image by its stamp)
  out  detections (vision_msgs/Detection3DArray, the image's header), markers (visualization_msgs/MarkerArray),
       debug_image (sensor_msgs/Image, only rendered while subscribed), /diagnostics, /tf
  srv  ~/reset (std_srvs/Trigger): forget the temporal memory and the tracks; the lifecycle services

The node is thin: conversions, CameraInfo pairing, the one-slot buffer, object ids, the automatic frame gap and
parameters live in plain modules (conversions, pipeline, params, loading, seqpose_core.runner and its tracker)
tested without ROS; what the node publishes is seqpose_ros.outputs, where its camera motion comes from
seqpose_ros.camera_motion.
"""

import gc
import signal
import sys
import threading
import time

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger

from seqpose_core.runner import Frame
from seqpose_ros import camera_model, images
from seqpose_ros import params as param_table
from seqpose_ros.camera_motion import CameraMotionSource
from seqpose_ros.images import InputError, problem_kind
from seqpose_ros.loading import StartupError, load_runner, warm_up
from seqpose_ros.outputs import Outputs
from seqpose_ros.pipeline import (
    CameraInfoPairing,
    LatestSlot,
    Pipeline,
    ProblemLog,
    SequenceGaps,
    Stats,
    frames_to_keep,
    reset_report,
)
from seqpose_ros.qos import best_available_reliability, image_qos_profile

try:  # present on a ROS 2 install; not on PyPI (the pip set-up publishes TFMessage on /tf itself)
    import tf2_ros
except ImportError:
    tf2_ros = None

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


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


def _reason(error):
    return str(error) if isinstance(error, (StartupError, ValueError)) else f'{type(error).__name__}: {error}'


class CameraState:
    """A CameraInfo as the worker uses it: its frame id and the validated camera model (K, expected image
    size, undistortion), or the reason it is unusable."""

    def __init__(self, frame_id, model):
        self.frame_id = frame_id
        self.model = model
        self.K = model.K
        self.error = model.error
        self.hw = model.expected_hw if not model.error else (0, 0)


class SeqPoseNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__('seqpose_node', **kwargs)
        self.params = param_table.declare_all(self)  # the node's own + configure-time; ValueError naming bad ones
        self.problems = ProblemLog(period=5.0)
        self.bridge = images._cv_bridge()
        self.state = 'unconfigured'  # the lifecycle state the node is in (between transitions)
        self.pipeline = None  # everything below exists from configure to cleanup
        self.image_sub = self.info_sub = None
        self.configure_error = ''
        self.autostarting = False  # main() reports a failed autostart configure itself
        self._declaring = False
        self._activations = 0
        self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    # ------------------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state):
        try:
            self._configure()
        except Exception as error:  # noqa: BLE001 - bad checkpoint, bad parameter: say why, stay unconfigured
            self.configure_error = _reason(error)
            self._release()
            if not self.autostarting:
                self.get_logger().error(
                    f'cannot configure: {self.configure_error}; the node stays unconfigured (fix it, then '
                    f'`ros2 lifecycle set {self.get_fully_qualified_name()} configure`)'
                )
            return FAILURE
        self.state = 'inactive'
        return SUCCESS

    def on_activate(self, state):
        result = super().on_activate(state)  # the lifecycle publishers
        if result != SUCCESS:
            return result
        self.state = 'active'
        self._subscribe()
        if self._activations:  # frames from before the deactivation are not this sequence
            self.pipeline.request_reset('re-activated', by_operator=True)
        self._activations += 1
        self.get_logger().info(
            f'active: listening on {self.image_topic} + {self.info_topic} (QoS {self.params["image_qos"]}, '
            f'{self.image_kind} images), publishing {self.outputs.detections_pub.topic_name}'
            + ('' if self.params['enabled'] else '; enabled:=false: not subscribed to images')
        )
        return SUCCESS

    def on_deactivate(self, state):
        self._unsubscribe()
        self.state = 'inactive'
        self.get_logger().info('inactive: unsubscribed from the camera; the model stays loaded')
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        self._release()
        self.state = 'unconfigured'
        self.get_logger().info('unconfigured: model and publishers freed')
        return super().on_cleanup(state)

    def on_shutdown(self, state):
        super().on_shutdown(state)
        self._release()
        self.state = 'finalized'
        self.get_logger().info(f'finalized (shutdown from {state.label})')
        return SUCCESS

    def on_error(self, state):
        self.get_logger().error(f'a transition from {state.label} failed; freeing everything (unconfigured)')
        self._release()
        self.state = 'unconfigured'
        return SUCCESS

    def _configure(self):
        p = self.params
        started = time.monotonic()
        runner, path, device = load_runner(
            p['checkpoint'],
            p['device'],
            p['history_frames'],
            p['top_k'],
            warn=self.get_logger().warning,
            overrides={name: p[name] for name in param_table.CONFIGURE_SETTINGS},
        )
        # the inference settings, their defaults the checkpoint's (a params file or ros2 param set overrides)
        self._declaring = True
        try:
            p.update(param_table.declare_all(self, param_table.runner_param_specs(runner.cfg)))
        finally:
            self._declaring = False
        pipeline = Pipeline(runner)
        pipeline.configure(**{name: p[name] for name in param_table.RUNNER_SETTINGS})
        warm = warm_up(runner)
        self.device, self.checkpoint_path = device, path
        self.stats, self.slot, self.gaps = Stats(), LatestSlot(self._frames_to_keep), SequenceGaps()
        self.pairing = CameraInfoPairing(wait=p['camera_info_wait'], tolerance=p['stamp_tolerance'])
        self._warned_frame_mismatch = False
        self._last_received_stamp = None
        self._camera_model = (None, None)  # (CameraInfo key, CameraModel): rebuilt only when it changes
        self._activations = 0
        # QoS (made on activate): the image QoS can be overridden per topic (qos_overrides./<topic>.subscription.
        # reliability etc. in the params file, the standard ROS 2 mechanism)
        self.image_topic = self.resolve_topic_name('image/compressed' if self._compressed else 'image')
        self.info_topic = self.resolve_topic_name('camera_info')
        self.image_kind = camera_model.image_kind_for(p['camera_model'], self.image_topic)
        self.outputs = Outputs(self, tf2_ros)
        self.camera_motion = CameraMotionSource(self, p, tf2_ros, self._report, self.stats)
        self.reset_srv = self.create_service(Trigger, '~/reset', self._on_reset)
        self.timers_made = [self.create_timer(1.0, self._on_timer)]
        if p['image_qos'] == 'best_available':
            self.timers_made.append(self.create_timer(1.0, self.follow_publishers))
        self.pipeline = pipeline
        self._worker = threading.Thread(target=self._work, args=(self.slot,), name='seqpose_worker', daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"configured: model '{path}' on {device}, mode {p['mode']}, backend {p.get('backend', 'torch')}; "
            f'loaded and warmed up in {time.monotonic() - started:.1f} s (one step {warm:.2f} s)'
        )

    def _release(self):
        """Undo configure (whatever part of it was done): stop the worker, drop every subscription, publisher,
        timer and service, undeclare the inference settings, free the model."""
        self._unsubscribe()
        worker = getattr(self, '_worker', None)
        if worker is not None:
            self.slot.close()
            worker.join(timeout=3.0)
            self._worker = None
        for name in ('outputs', 'camera_motion'):
            part = getattr(self, name, None)
            if part is not None:
                part.destroy() if name == 'outputs' else part.destroy(self)
                setattr(self, name, None)
        for timer in getattr(self, 'timers_made', ()):
            self.destroy_timer(timer)
        self.timers_made = []
        if getattr(self, 'reset_srv', None) is not None:
            self.destroy_service(self.reset_srv)
            self.reset_srv = None
        for name in param_table.RUNNER_SETTINGS:  # declared again, with the checkpoint's defaults, at configure
            if self.has_parameter(name):
                self.undeclare_parameter(name)
            self.params.pop(name, None)
        if self.pipeline is not None:
            cuda = str(getattr(self.pipeline.runner, 'device', 'cpu')).startswith('cuda')
            self.pipeline = None
            gc.collect()
            if cuda:
                import torch

                torch.cuda.empty_cache()

    def close(self):
        """The process ends (a signal): stop the worker and free everything, in whatever state."""
        self._release()

    # ------------------------------------------------------------------------------------------- inputs
    @property
    def _compressed(self):
        return self.params['image_transport'] == 'compressed'

    def _subscribe(self):
        """camera_info, and the images unless enabled is false (called on activate), with the configured QoS and
        the qos_overrides parameters; the image profile (overrides applied) is kept for re-enabling."""
        self._image_qos, self._info_qos = (image_qos_profile(self.params['image_qos'], depth=d) for d in (2, 5))
        self._reliability = {'image': None, 'camera_info': None}
        overriding = QoSOverridingOptions.with_default_policies()
        self.info_sub = self.create_subscription(
            CameraInfo, 'camera_info', self._on_camera_info, self._info_qos, qos_overriding_options=overriding
        )
        self._info_qos = self.info_sub.qos_profile  # with any overrides applied
        self.info_topic = self.info_sub.topic_name
        self._subscribe_images(overriding)
        if not self.params['enabled']:
            self._unsubscribe_images()
        # best_available (not overridden): the subscriptions follow their publishers' reliability
        self._follow = {
            'image': self._image_qos.reliability == ReliabilityPolicy.BEST_AVAILABLE,
            'camera_info': self._info_qos.reliability == ReliabilityPolicy.BEST_AVAILABLE,
        }

    def _subscribe_images(self, overriding=None):
        if self.image_sub is not None:
            return
        if self._compressed:
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

    def _unsubscribe_images(self):
        if self.image_sub is not None:
            self.destroy_subscription(self.image_sub)
            self.image_sub = None
        if self.pipeline is not None:
            self.slot.clear()

    def _unsubscribe(self):
        self._unsubscribe_images()
        if self.info_sub is not None:
            self.destroy_subscription(self.info_sub)
            self.info_sub = None
        if self.pipeline is not None:
            self.pairing.clear()
            self._last_received_stamp = None

    def follow_publishers(self):
        """best_available: re-subscribe image / camera_info with the reliability their publishers offer now
        (reliable when all are, best effort as soon as one is), so the node matches a camera started after it."""
        for name in ('image', 'camera_info'):
            subscription = self.image_sub if name == 'image' else self.info_sub
            if subscription is None or not self._follow[name]:
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
                self._image_qos, self.image_sub = profile, None
                self._subscribe_images()
            else:
                self._info_qos = profile
                self.info_sub = self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, profile)
            self.get_logger().info(
                f'{topic}: publisher(s) offer {wanted.name.lower()}; subscribed '
                f'{wanted.name.lower()} (image_qos best_available)'
            )

    def _on_camera_info(self, msg):
        key = _camera_info_key(msg)
        cached_key, model = self._camera_model
        if key != cached_key:
            model = camera_model.camera_model_from_msg(msg, self.image_kind, self.info_topic)
            self._camera_model = (key, model)
            for note in model.notes:
                self._report('camera model:' + problem_kind(note), note, 'warn' if 'non-zero D' in note else 'info')
        self._paired(self.pairing.add_info(_stamp_seconds(msg.header.stamp), CameraState(msg.header.frame_id, model)))

    # two-argument callbacks: rclpy then passes the MessageInfo (publication sequence numbers)
    def _on_image(self, msg, info):
        self._enqueue(msg, info, compressed=False)

    def _on_compressed(self, msg, info):
        self._enqueue(msg, info, compressed=True)

    def _enqueue(self, msg, info, compressed):
        gid = (info or {}).get('publisher_gid') or {}
        self.gaps.update(str(gid.get('data', gid)), (info or {}).get('publication_sequence_number'))
        # The callback only records the message: it waits for the CameraInfo with its stamp (pipeline.
        # CameraInfoPairing), then goes to the one-slot buffer; decoding and inference happen on the worker, and a
        # frame that arrives while the slot is still full replaces the older one (counted as dropped). The stamp
        # of the image received before this one goes with it: the runner measures gaps on received frames, so a
        # slow model (frames dropped here) does not read as a gap in the camera stream.
        stamp = _stamp_seconds(msg.header.stamp)
        previous, self._last_received_stamp = self._last_received_stamp, stamp
        self.stats.received += 1
        self.pipeline.received(stamp)  # the camera's rate, for the automatic max_frame_gap
        self._paired(self.pairing.add_image(stamp, (msg, compressed, time.monotonic(), previous)))

    def _paired(self, paired):
        """Images with their CameraInfo go to the worker; images that will not get theirs are reported."""
        for item, camera in paired.ready:
            self.slot.put((*item, camera))
        for stamp, why in paired.dropped:
            latest = self.pairing.infos.latest_stamp()
            if latest is None:
                text = f'no CameraInfo received yet on {self.info_topic}'
            elif why == 'superseded':
                text = (
                    f'the CameraInfo with the image stamp {stamp:.3f} never came on {self.info_topic} (a newer one did)'
                )
            else:
                text = (
                    f'no CameraInfo with the image stamp {stamp:.3f} on {self.info_topic} within camera_info_wait '
                    f'{self.pairing.wait:g} s (the latest is stamped {latest:.3f}, {abs(latest - stamp):.3f} s apart; '
                    'raise stamp_tolerance only if the driver stamps the two differently)'
                )
            self._report(
                f'{self.image_topic}:camera info:{why}:{latest is None}', f'{self.image_topic}: {text}; frame dropped'
            )

    def _on_reset(self, request, response):
        self.pipeline.request_reset('~/reset service called', by_operator=True)
        self.camera_motion.forget()
        response.success = True
        response.message = 'temporal memory and tracks are reset before the next frame'
        self.get_logger().info('reset requested through ~/reset')
        return response

    # ------------------------------------------------------------------------------------------- parameters
    def _coerce_parameters(self, parameters):
        """An integer for a float parameter becomes that float (`ros2 param set ... score_threshold 1`)."""
        coerced = []
        for parameter in parameters:
            value = param_table.coerce(parameter.name, parameter.value)
            if isinstance(value, float) and value is not parameter.value:
                parameter = Parameter(parameter.name, Parameter.Type.DOUBLE, value)
            coerced.append(parameter)
        return coerced

    def _validate_parameters(self, parameters):
        for parameter in parameters:
            problem = param_table.validate(parameter.name, parameter.value)
            problem = problem or param_table.lifecycle_problem(parameter.name, self.state)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters):
        if self._declaring:
            return  # configure is declaring the inference settings: it takes their values itself
        changed = {}
        for parameter in parameters:
            if parameter.name in param_table.SPECS:
                spec = param_table.SPECS[parameter.name]
                value = float(parameter.value) if isinstance(spec.default, float) else parameter.value
                self.params[parameter.name] = value
                changed[parameter.name] = value
        if not changed:
            return
        if self.pipeline is not None:
            runner_changes = {k: v for k, v in changed.items() if k in param_table.RUNNER_SETTINGS}
            if runner_changes:
                self.pipeline.configure(**runner_changes)
            self.pairing.tolerance = self.params['stamp_tolerance']
            self.pairing.wait = self.params['camera_info_wait']
        if 'enabled' in changed and self.state == 'active':
            if changed['enabled'] and self.image_sub is None:
                self._subscribe_images()
                self.pipeline.request_reset('re-enabled', by_operator=True)
                self._last_received_stamp = None
            elif not changed['enabled'] and self.image_sub is not None:
                self._unsubscribe_images()
        self.get_logger().info('parameters changed: ' + ', '.join(f'{k}={v}' for k, v in changed.items()))

    # ------------------------------------------------------------------------------------------- worker
    def _work(self, slot):
        while not slot.closed:
            item = slot.take(timeout=0.5)
            if item is None:
                continue
            try:
                self._process_safely(item)
            except Exception as error:  # noqa: BLE001 - the worker thread must never die
                print(f'seqpose_node worker: {type(error).__name__}: {error}', file=sys.stderr)

    def _frames_to_keep(self):
        pipeline = self.pipeline
        return frames_to_keep(pipeline.frame_gap.period, self.stats.step_seconds) if pipeline is not None else 1

    def _process_safely(self, item):
        started = time.monotonic()
        try:
            self._process(*item)
            self.stats.steps.append(time.monotonic() - started)
        except InputError as error:
            self.stats.skipped += 1
            self._report(error.kind, str(error), 'warn')
        except Exception as error:  # noqa: BLE001 - the node must survive anything one frame brings
            self.stats.skipped += 1
            self.pipeline.request_reset(f'processing failed ({type(error).__name__})', by_operator=False)
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

    def _process(self, msg, compressed, received, previous_stamp, camera):
        topic, info_topic = self.image_topic, self.info_topic
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
            self._report(*reset_report(topic, result.reset_reason, self.pipeline.last_reset_by_operator))
        if result.skip_reason:
            self.stats.skipped += 1
            self._report('skip:duplicate', f'{topic}: {result.skip_reason}; frame skipped')
            return
        self.outputs.publish(result.detections, header, rgb, camera.K)
        self.stats.latencies.append(time.monotonic() - received)
        self.stats.processed += 1

    # ------------------------------------------------------------------------------------------- outputs
    def _on_timer(self):
        self._paired(self.pairing.expire())  # images whose CameraInfo did not come in time
        self._publish_diagnostics()

    def _publish_diagnostics(self):
        values = self.stats.snapshot(self.slot.dropped, self.gaps.lost, self.pairing.dropped)
        values['lifecycle state'] = self.state
        values['enabled'] = str(self.params['enabled']).lower()
        values['images waiting for their CameraInfo'] = self.pairing.waiting
        period = self.pipeline.frame_gap.period
        values['camera frame period (s)'] = float('nan') if period is None else period
        values['max_frame_gap (s)'] = float(self.pipeline.max_frame_gap)
        values['object ids in use'] = self.pipeline.ids.in_use
        values['TF frame names published'] = len(self.outputs.tf_frame_names)
        camera = self.pairing.infos.latest()
        if self.state != 'active':
            level, message = 'ok', f'{self.state} (lifecycle): not processing'
        elif not self.params['enabled']:
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


def main(args=None):
    """Run the node until SIGINT or SIGTERM. The signals only set a flag (rclpy's own handlers are not
    installed): `ros2 launch` without a terminal sends SIGINT twice (the process group's, then its own), and
    a second signal must not interrupt the clean-up with a KeyboardInterrupt. Exit status 0 after a signal,
    1 when the node cannot start (the reason is logged): a bad parameter, or with autostart a failed configure
    (without autostart a failed configure leaves the node unconfigured, as a lifecycle manager expects)."""
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
            if node.params['autostart']:
                node.autostarting = True
                if node.trigger_configure() != SUCCESS:
                    raise StartupError(node.configure_error or 'configure failed')
                node.autostarting = False
                node.trigger_activate()
            else:
                node.get_logger().info(
                    'unconfigured (autostart:=false): waiting for a lifecycle manager, e.g. '
                    f'`ros2 lifecycle set {node.get_fully_qualified_name()} configure`, then `activate`'
                )
        except Exception as error:  # noqa: BLE001 - bad checkpoint, bad parameter file: say why, exit 1
            # rclpy's named logger prints like the node's would (the node may not exist)
            rclpy.logging.get_logger('seqpose_node').fatal(f'cannot start: {_reason(error)}')
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
            if executor is not None:
                node.get_logger().info('shutting down' + (' (signal)' if stop.is_set() else ''))
            node.close()
            if executor is not None:
                executor.remove_node(node)
                executor.shutdown(timeout_sec=1.0)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
