"""An outside camera, as a robot engineer's driver would be: its own process, its own DDS participant (stock
Fast DDS unless the environment says otherwise), publishing Image + CameraInfo at a fixed rate with a chosen
reliability, and counting the Detection3DArray answers per stamp and the TF child frames it sees.

    python test/camera_client.py --image-topic /robot1/camera/color/image_raw \
        --info-topic /robot1/camera/color/camera_info --detections-topic /robot1/detections \
        --frames 20 --rate 2 --width 640 --height 480 --reliability reliable

Prints one JSON line: {"sent", "answered", "answered_stamps", "tf_children", "tf_parents", "matched_after_s", ...}.
Used by test/test_launch.py (as a subprocess) and benchmarks/bench_node_soak.py. Run it only inside a private
network namespace (see the Makefile's test target).
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/: the helpers package


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--image-topic', required=True)
    parser.add_argument('--info-topic', required=True)
    parser.add_argument('--detections-topic', required=True)
    parser.add_argument('--frames', type=int, default=20)
    parser.add_argument('--rate', type=float, default=2.0, help='frames per second')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--reliability', choices=('reliable', 'best_effort'), default='reliable')
    parser.add_argument('--frame-id', default='camera_color_optical_frame')
    parser.add_argument('--start-stamp', type=float, default=1000.0)
    parser.add_argument(
        '--loop', type=int, default=0, help='restart the stamps every N frames (a looping bag); 0: never'
    )
    parser.add_argument('--match-timeout', type=float, default=60.0)
    parser.add_argument('--settle', type=float, default=3.0, help='seconds to wait for the last answers')
    parser.add_argument('--distortion', type=float, default=0.0, help='k1 of a plumb_bob D (0: none)')
    parser.add_argument(
        '--report-every',
        type=float,
        default=0.0,
        help='also print {"t", "messages", "tf_names"} every this many seconds (0: never)',
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage
    from vision_msgs.msg import Detection3DArray

    from helpers import ros_harness as T

    rclpy.init()
    node = rclpy.create_node('camera_client')
    reliability = ReliabilityPolicy.RELIABLE if args.reliability == 'reliable' else ReliabilityPolicy.BEST_EFFORT
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=reliability)
    image_pub = node.create_publisher(Image, args.image_topic, qos)
    info_pub = node.create_publisher(CameraInfo, args.info_topic, qos)
    answered, tf_children, tf_parents = {}, set(), set()
    messages = [0]

    def on_detections(msg):
        messages[0] += 1
        answered[round(T.stamp_seconds(msg.header.stamp), 6)] = len(msg.detections)

    def on_tf(msg):
        for transform in msg.transforms:
            tf_children.add(transform.child_frame_id)
            tf_parents.add(transform.header.frame_id)

    node.create_subscription(Detection3DArray, args.detections_topic, on_detections, QoSProfile(depth=50))
    node.create_subscription(TFMessage, '/tf', on_tf, QoSProfile(depth=100))

    def spin(seconds):
        end = time.monotonic() + seconds
        while True:
            rclpy.spin_once(node, timeout_sec=max(0.0, min(0.01, end - time.monotonic())))
            if time.monotonic() >= end:
                return

    start = time.monotonic()
    while (
        image_pub.get_subscription_count() == 0
        or info_pub.get_subscription_count() == 0
        or node.count_publishers(args.detections_topic) == 0
    ):
        if time.monotonic() - start > args.match_timeout:
            print(
                json.dumps(
                    {
                        'error': f'the node did not match {args.image_topic} / {args.info_topic} / '
                        f'{args.detections_topic} within {args.match_timeout:.0f} s'
                    }
                )
            )
            return 2
        spin(0.05)
    matched_after = time.monotonic() - start
    spin(3.0)  # discovery finishes in both directions (a reliable writer resends at its next heartbeat)

    images, K = T.make_sequence(frames=8, width=args.width, height=args.height)
    info_template = T.camera_info_msg(K, args.width, args.height, 0.0, args.frame_id)
    if args.distortion:
        info_template.d = [float(args.distortion), 0.0, 0.0, 0.0, 0.0]
    sent, period = [], 1.0 / args.rate
    next_time = time.monotonic()
    started, next_report = time.monotonic(), time.monotonic() + args.report_every
    for index in range(args.frames):
        if args.report_every and time.monotonic() >= next_report:
            next_report += args.report_every
            print(
                json.dumps(
                    {'t': round(time.monotonic() - started, 1), 'messages': messages[0], 'tf_names': len(tf_children)}
                ),
                flush=True,
            )
        step = index % args.loop if args.loop else index
        stamp = round(args.start_stamp + step * period, 6)
        info_template.header.stamp = T.to_stamp(stamp)
        info_pub.publish(info_template)
        image_pub.publish(T.image_msg(images[index % len(images)], stamp, args.frame_id))
        sent.append(stamp)
        next_time += period
        spin(max(0.0, next_time - time.monotonic()))
    end = time.monotonic() + args.settle
    while time.monotonic() < end and not all(s in answered for s in sent[-3:]):
        spin(0.05)
    spin(0.3)
    got = [s for s in sent if s in answered]
    result = {
        'sent': len(sent),
        'answered': len(got) if not args.loop else len(answered),
        'answered_stamps': got,
        'messages': messages[0],
        'nonempty': sum(1 for s in got if answered[s] > 0),
        'tf_children': sorted(tf_children),
        'tf_parents': sorted(tf_parents),
        'matched_after_s': round(matched_after, 2),
        'reliability': args.reliability,
        'size': f'{args.width}x{args.height}',
        'rate_hz': args.rate,
    }
    print(json.dumps(result), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
