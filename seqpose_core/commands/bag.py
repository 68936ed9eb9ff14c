"""`seqpose bag`: rosbag2 tools — NOCS scenes to bags, deterministic and live replay, scoring."""

import sys

from seqpose_core.bag import messages as M
from seqpose_core.stages.config import BACKENDS

HELP = 'rosbag2 tools: NOCS scenes -> bag, replay a bag through the model, score a bag (mcap or sqlite3)'

DESCRIPTION = f"""rosbag2 tools for SeqPose (pure Python with `rosbags`; no ROS installation needed).

Topics (defaults; every command takes --image-topic / --camera-info-topic / --gt-topic):
  {M.IMAGE_TOPIC:34s} sensor_msgs/Image (rgb8; bgr8, rgba8, bgra8, mono8 are read too)
  {M.COMPRESSED_IMAGE_TOPIC:34s} sensor_msgs/CompressedImage (jpeg or png), used when there is no raw one
  {M.CAMERA_INFO_TOPIC:34s} sensor_msgs/CameraInfo (K is used; NOCS images have no distortion)
  {M.GT_TOPIC:34s} vision_msgs/Detection3DArray, ground truth
  {M.DETECTIONS_TOPIC:34s} vision_msgs/Detection3DArray, predictions (the node's output)
  {M.FRAME_NAME_TOPIC:34s} std_msgs/Header: stamp = image stamp, frame_id = "<scene>/<frame>" (NOCS names)

One object per vision_msgs/Detection3D: results[0].hypothesis.class_id = category name (bottle, bowl, camera,
can, laptop, mug), .score; bbox.center (= results[0].pose.pose) = object -> camera pose in the OpenCV camera
frame (NOCS object axes, y up); bbox.size = METRIC box extents (m); id = "track=<n>[;handle_visibility=<0|1>]"
(handle_visibility: ground-truth mugs, for the NOCS mug symmetry rule).

Images, ground truth and predictions are matched by header stamp (exactly). Scenes written by from-nocs follow
each other with a {M.SCENE_GAP_S:.0f} s gap, more than the runner's max_frame_gap, so a replay resets the model's
memory at every scene start, as it does at any stamp jump or backwards stamp.

Damaged bags (killed recordings without mcap footer or metadata.yaml, missing topics, unknown encodings,
out-of-order or duplicate stamps, ground truth for some frames only) are read as far as they are usable;
every report has a `skipped` section saying what was left out and why.

Commands:
  from-nocs  NOCS scenes (REAL275 layout or `seqpose synth` output) -> bag
  eval       deterministic replay of every frame through the StreamRunner: results pickles, metrics.json,
             ap_curves.png, overlay.mp4 (predictions red, ground truth green), and a bag with the inputs plus
             the predictions on {M.DETECTIONS_TOPIC}
  score      score predictions already in a bag (e.g. recorded from the live node) against its ground truth
  live       play a bag at its recorded rate into a running seqpose_node (rclpy), record its output, score it,
             and report latency, dropped frames and the mAP loss against the deterministic replay
"""


def _add_topic_arguments(parser, predictions=False):
    parser.add_argument(
        '--image-topic',
        default=None,
        help=f'image topic (default: {M.IMAGE_TOPIC}, else {M.COMPRESSED_IMAGE_TOPIC}, else the '
        f'only sensor_msgs/Image or CompressedImage topic)',
    )
    parser.add_argument('--camera-info-topic', default=M.CAMERA_INFO_TOPIC, help='sensor_msgs/CameraInfo topic')
    parser.add_argument('--gt-topic', default=M.GT_TOPIC, help='ground truth, vision_msgs/Detection3DArray')
    parser.add_argument(
        '--frame-name-topic',
        default=M.FRAME_NAME_TOPIC,
        help='std_msgs/Header naming each image "<scene>/<frame>" (optional)',
    )
    parser.add_argument(
        '--intrinsics',
        nargs=4,
        type=float,
        metavar=('FX', 'FY', 'CX', 'CY'),
        help='intrinsics for images when the bag has no CameraInfo',
    )


def _add_model_arguments(parser):
    parser.add_argument('--checkpoint', help='model checkpoint (default: the embedded default model)')
    parser.add_argument(
        '--mode',
        choices=('mf', 'sf'),
        default='mf',
        help='mf: multi-frame, the memory of past frames is used (video); sf: single frame',
    )
    parser.add_argument('--device', default=None, help="torch device (default: the checkpoint's, usually cpu)")
    parser.add_argument(
        '--backend',
        choices=BACKENDS,
        default='torch',
        help='network backend (inference.backend): the model in PyTorch or its exported graphs in ONNX Runtime',
    )


def add_arguments(parser):
    commands = parser.add_subparsers(dest='bag_command', metavar='BAG_COMMAND')

    sub = commands.add_parser(
        'from-nocs',
        help='NOCS scene folders -> rosbag2',
        description='Write NOCS scene folders (Real/test/scene_1 ..., REAL275 layout or '
        '`seqpose synth` output) into one bag, scenes back to back.',
    )
    sub.add_argument(
        'scene_dirs',
        nargs='+',
        metavar='SCENE_DIR',
        help='scene folders (…/Real/test/scene_1) or a data root / split folder holding them',
    )
    sub.add_argument('--out', required=True, help='output bag (a new directory)')
    sub.add_argument('--rate', type=float, default=30.0, help='frames per second of the stamps (default 30)')
    sub.add_argument(
        '--compressed',
        nargs='?',
        const='jpeg',
        choices=('jpeg', 'png'),
        default=None,
        help=f'write sensor_msgs/CompressedImage on {M.COMPRESSED_IMAGE_TOPIC} (jpeg by default; '
        'png is lossless) instead of raw rgb8 Image',
    )
    sub.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap', help='rosbag2 storage plugin')
    sub.add_argument('--no-ground-truth', action='store_true', help=f'do not write {M.GT_TOPIC}')

    sub = commands.add_parser(
        'eval',
        help='deterministic replay through the StreamRunner, scored',
        description='Replay every image of a bag, in stamp order, through the same '
        "StreamRunner the ROS node uses; score against the bag's ground truth "
        'with the evaluator of `seqpose eval`. On the same frames and checkpoint the results equal `seqpose '
        'eval` with the same --camera-motion.',
    )
    sub.add_argument('bag', help='rosbag2 directory, or a .mcap / .db3 file')
    sub.add_argument('--out', required=True, help='output directory')
    _add_model_arguments(sub)
    _add_topic_arguments(sub)
    sub.add_argument(
        '--camera-motion',
        choices=('none', 'odometry'),
        default='none',
        help=f"none (default), or odometry: the camera motion from the bag's {M.ODOMETRY_TOPIC} "
        '(nav_msgs/Odometry), as `seqpose eval --camera-motion odometry` reads it from odometry.txt',
    )
    sub.add_argument('--no-video', action='store_true', help='do not write overlay.mp4')
    sub.add_argument('--no-bag', action='store_true', help='do not write the output bag')
    sub.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap', help='storage of the output bag')

    sub = commands.add_parser(
        'score',
        help='score predictions already in a bag',
        description='Score predictions recorded in a bag against its ground truth, matched by header stamp.',
    )
    sub.add_argument('bag', help='rosbag2 directory, or a .mcap / .db3 file')
    sub.add_argument(
        '--predictions-topic', default=M.DETECTIONS_TOPIC, help='predictions, vision_msgs/Detection3DArray'
    )
    sub.add_argument('--gt-topic', default=M.GT_TOPIC, help='ground truth, vision_msgs/Detection3DArray')
    sub.add_argument(
        '--gt-bag',
        help='read the ground truth from this bag instead (e.g. the played bag when only the node output was recorded)',
    )
    sub.add_argument('--frame-name-topic', default=M.FRAME_NAME_TOPIC, help='std_msgs/Header frame names')
    sub.add_argument(
        '--missing',
        choices=('empty', 'skip'),
        default='empty',
        help='frames with ground truth but no predictions message: score as "nothing detected" '
        '(empty, the default: a dropped frame costs recall) or leave them out (skip)',
    )
    sub.add_argument('--out', help='output directory for results pickles, metrics.json, ap_curves.png')

    sub = commands.add_parser(
        'live',
        help='play a bag into a running seqpose_node and score its output',
        description='Start seqpose_node, play the bag into it at the recorded rate '
        '(rclpy player), record /seqpose/detections, score, and compare with '
        'the deterministic replay.',
    )
    sub.add_argument('bag', help='rosbag2 directory, or a .mcap / .db3 file')
    sub.add_argument('--out', required=True, help='output directory')
    _add_model_arguments(sub)
    _add_topic_arguments(sub)
    sub.add_argument('--rate-scale', type=float, default=1.0, help='play faster (>1) or slower (<1)')
    sub.add_argument(
        '--node-command', default=None, help='command that starts the node (default: python -m seqpose_ros.node)'
    )
    sub.add_argument('--startup-timeout', type=float, default=60.0, help='seconds to wait for the node')


def _runner_args(args):
    return dict(checkpoint=args.checkpoint, mode=args.mode, device=args.device, backend=args.backend)


def _topics(args):
    from seqpose_core.bag.frames import ReplayTopics

    return ReplayTopics(
        image=args.image_topic,
        camera_info=args.camera_info_topic,
        ground_truth=args.gt_topic,
        frame_name=args.frame_name_topic,
    )


def run(args) -> int:
    from seqpose_core.bag.io import BagError

    command = getattr(args, 'bag_command', None)
    if command is None:
        print(DESCRIPTION)
        return 2
    try:
        if command == 'from-nocs':
            from seqpose_core.bag.from_nocs import write_nocs_bag

            summary = write_nocs_bag(
                args.scene_dirs,
                args.out,
                rate=args.rate,
                compressed=args.compressed,
                storage=args.storage,
                ground_truth=not args.no_ground_truth,
            )
            print(summary.format())
            return 0
        if command == 'eval':
            from seqpose_core.bag.replay import evaluate_bag

            report = evaluate_bag(
                args.bag,
                args.out,
                topics=_topics(args),
                intrinsics=args.intrinsics,
                video=not args.no_video,
                output_bag=not args.no_bag,
                storage=args.storage,
                camera_motion=args.camera_motion,
                **_runner_args(args),
            )
            print(report.format())
            return 0
        if command == 'score':
            from seqpose_core.bag.score_recorded import score_bag

            report = score_bag(
                args.bag,
                predictions_topic=args.predictions_topic,
                gt_topic=args.gt_topic,
                gt_bag=args.gt_bag,
                frame_name_topic=args.frame_name_topic,
                missing=args.missing,
                out_dir=args.out,
            )
            print(report.format())
            return 0
        if command == 'live':
            from seqpose_core.bag.live import live_replay

            report = live_replay(
                args.bag,
                args.out,
                topics=_topics(args),
                intrinsics=args.intrinsics,
                rate_scale=args.rate_scale,
                node_command=args.node_command,
                startup_timeout=args.startup_timeout,
                **_runner_args(args),
            )
            print(report.format())
            return 0
    except (BagError, FileNotFoundError, ValueError) as error:
        print(f'seqpose bag {command}: error: {error}', file=sys.stderr)
        return 2
    raise AssertionError(command)
