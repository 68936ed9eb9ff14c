"""A small rclpy bag player and recorder (for systems without `ros2 bag`; on a ROS system use
`ros2 bag play` / `ros2 bag record`, see README).

- `BagPlayer` publishes a bag's image and CameraInfo topics at the recorded rate. Header stamps are
  re-stamped to the moment of publishing (a constant offset per segment), so that "receive time minus header
  stamp" at the far end is the end-to-end latency. Idle gaps between scenes longer than `max_idle` seconds are
  shortened to `max_idle` (still longer than the node's max_frame_gap, so the node resets its memory as in
  the deterministic replay). `stamp_map` maps each published stamp back to the bag's stamp for scoring.
- `DetectionRecorder` subscribes to a Detection3DArray topic and writes every message, with its receive time
  as the log time, into a rosbag2 (the CDR bytes from rclpy go into the bag unchanged).

Messages are not decoded into numpy here: the bag's CDR bytes become rclpy messages with
`rclpy.serialization.deserialize_message` (the same wire format), only the header stamp is changed.
"""

import time

from seqpose_core.bag import messages as M
from seqpose_core.bag.io import BagReader, BagWriter, SkipLog

RCLPY_TYPES = {
    M.IMAGE_TYPE: ('sensor_msgs.msg', 'Image'),
    M.COMPRESSED_IMAGE_TYPE: ('sensor_msgs.msg', 'CompressedImage'),
    M.CAMERA_INFO_TYPE: ('sensor_msgs.msg', 'CameraInfo'),
    M.DETECTION_ARRAY_TYPE: ('vision_msgs.msg', 'Detection3DArray'),
}


def rclpy_class(msgtype):
    import importlib

    if msgtype not in RCLPY_TYPES:
        raise ValueError(f'the player cannot publish {msgtype} (supported: {", ".join(RCLPY_TYPES)})')
    module, name = RCLPY_TYPES[msgtype]
    return getattr(importlib.import_module(module), name)


def _time_msg(ns):
    from builtin_interfaces.msg import Time

    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


class BagPlayer:
    """Publish `topics` of a bag from `node`, in recording order, at the recorded rate (scaled). The last
    topic is the image topic (counted, its stamps kept in `image_stamps`)."""

    def __init__(self, node, bag, topics, rate_scale=1.0, max_idle=2.0, skipped: SkipLog = None, qos_depth=10):
        if rate_scale <= 0:
            raise ValueError(f'rate_scale must be positive, got {rate_scale}')
        self.node = node
        self.bag = bag
        self.rate_scale = float(rate_scale)
        self.max_idle_ns = int(max_idle * 1e9)
        self.skipped = skipped if skipped is not None else SkipLog()
        self.reader = BagReader(bag, self.skipped)
        available = self.reader.topics()
        self.topics = [t for t in topics if t in available]
        self.publishers = {}
        for topic in self.topics:
            msgtype = available[topic].msgtype
            self.publishers[topic] = (
                node.create_publisher(rclpy_class(msgtype), topic, qos_depth),
                rclpy_class(msgtype),
            )
        self.stamp_map = {}  # published header stamp (ns) -> stamp in the bag (ns)
        self.publish_times = {}  # published header stamp (ns) -> wall time of publishing (ns)
        self.published = {topic: 0 for topic in self.topics}
        self.image_stamps = []  # published header stamps of the last topic given (the images)

    def prime_camera_info(self, topic):
        """Publish the bag's first CameraInfo once before playing: a node that keeps the latest CameraInfo
        can then use the very first image even when the bag records each image before its CameraInfo."""
        from rclpy.serialization import deserialize_message

        if topic not in self.publishers:
            return False
        publisher, cls = self.publishers[topic]
        for message in self.reader.messages([topic], deserialize=False):
            publisher.publish(deserialize_message(message.raw, cls))
            return True
        return False

    def wait_for_subscribers(self, topic, timeout):
        """Block until `topic` has a subscriber (the node is up), or raise TimeoutError."""
        import rclpy

        deadline = time.monotonic() + timeout
        publisher = self.publishers[topic][0]
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f'nobody subscribed to {topic} within {timeout:.0f} s')
            rclpy.spin_once(self.node, timeout_sec=0.05)

    def play(self, spin=None, progress=None):
        """Publish everything; `spin()` is called while waiting so the caller's subscriptions are served."""
        from rclpy.serialization import deserialize_message

        clock = self.node.get_clock()
        start_wall = None
        play_offset = 0  # bag time -> play time, shortened by long idle gaps
        previous_bag_time = None
        for message in self.reader.messages(self.topics, deserialize=False):
            bag_time = message.log_time_ns
            if previous_bag_time is not None and bag_time - previous_bag_time > self.max_idle_ns:
                play_offset -= (bag_time - previous_bag_time) - self.max_idle_ns
            previous_bag_time = bag_time if previous_bag_time is None else max(previous_bag_time, bag_time)
            if start_wall is None:
                start_wall = clock.now().nanoseconds
                first_bag_time = bag_time
            due = start_wall + int((bag_time + play_offset - first_bag_time) / self.rate_scale)
            while True:
                now = clock.now().nanoseconds
                if now >= due:
                    break
                if spin is not None:
                    spin(min((due - now) * 1e-9, 0.01))
                else:
                    time.sleep(min((due - now) * 1e-9, 0.01))
            publisher, cls = self.publishers[message.topic]
            msg = deserialize_message(message.raw, cls)
            original = M.stamp_to_ns(msg.header.stamp)
            # re-stamp: the header keeps its offset to the bag time, shifted to the play clock
            new_stamp = original + (due - bag_time)
            msg.header.stamp = _time_msg(new_stamp)
            self.stamp_map[new_stamp] = original
            publisher.publish(msg)
            self.publish_times[new_stamp] = clock.now().nanoseconds
            self.published[message.topic] += 1
            if message.topic == self.topics[-1]:
                self.image_stamps.append(new_stamp)
            if progress is not None and message.topic == self.topics[-1]:
                progress.update(1)


class DetectionRecorder:
    """Record a Detection3DArray topic into a bag, log time = receive time (node clock, ns)."""

    def __init__(self, node, topic, bag_path, storage='mcap', qos_depth=1000):
        from vision_msgs.msg import Detection3DArray

        self.node = node
        self.topic = topic
        self.writer = BagWriter(bag_path, storage).__enter__()
        self.received = 0
        self.latencies_ns = {}  # header stamp -> receive time - header stamp
        self.subscription = node.create_subscription(Detection3DArray, topic, self._on_message, qos_depth, raw=True)

    def _on_message(self, raw):
        from rclpy.serialization import deserialize_message
        from vision_msgs.msg import Detection3DArray

        received = self.node.get_clock().now().nanoseconds
        stamp = M.stamp_to_ns(deserialize_message(raw, Detection3DArray).header.stamp)
        self.latencies_ns[stamp] = received - stamp
        self.writer.write_raw(self.topic, M.DETECTION_ARRAY_TYPE, raw, received)
        self.received += 1

    def publisher_count(self):
        return self.node.count_publishers(self.topic)

    def close(self):
        self.writer.__exit__(None, None, None)
