"""`seqpose bag live`: the robot's view of a bag — played at its recorded rate into a running `seqpose_node`.

1. deterministic replay of the bag (`bag eval`, every frame) gives the reference metrics;
2. `seqpose_node` starts as a subprocess with the same checkpoint, mode and runner settings, its inputs
   remapped to the bag's topics and its output to /seqpose/detections;
3. our rclpy player publishes the bag's CameraInfo and images at the recorded rate (re-stamped to the play
   clock), the recorder writes every Detection3DArray the node publishes into OUT/live/bag;
4. the recording is scored against the bag's ground truth (`bag score`), frames the node dropped count as
   "nothing detected"; the report gives latency (receive time - header stamp), dropped frames and the mAP
   difference to the deterministic replay.
"""

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqpose_core.bag import messages as M
from seqpose_core.bag import scoring
from seqpose_core.bag.frames import ReplayTopics
from seqpose_core.bag.io import BagError, SkipLog


@dataclass
class LiveReport:
    bag: str
    mode: str
    images_published: int = 0
    detections_received: int = 0
    dropped_frames: int = 0
    latency_ms: dict = field(default_factory=dict)
    live_metrics: dict = None  # dropped frames scored as "nothing detected"
    live_metrics_processed: dict = None  # only the frames the node answered
    deterministic_metrics: dict = None
    # deterministic - live in percentage points, 'row/metric' (rows: mean and classes; finite values only)
    map_loss: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)

    def to_dict(self):
        out = dict(self.__dict__)
        for key in ('live_metrics', 'live_metrics_processed', 'deterministic_metrics'):
            out[key] = scoring.json_metrics(out[key])
        return out

    def format(self):
        lat = self.latency_ms
        lines = [
            f'bag live {self.bag} ({self.mode})',
            f'  published {self.images_published} images, received {self.detections_received} detection '
            f'messages, dropped {self.dropped_frames}',
            (
                f'  latency (receive - header stamp): mean {lat["mean"]:.1f} ms, median {lat["median"]:.1f}, '
                f'p95 {lat["p95"]:.1f}, max {lat["max"]:.1f}'
            )
            if lat
            else '  latency: no detections received',
        ]
        if self.deterministic_metrics:
            lines.append('  deterministic ' + scoring.format_metrics_line(self.deterministic_metrics))
        if self.live_metrics:
            lines.append('  live          ' + scoring.format_metrics_line(self.live_metrics))
        if self.map_loss:
            shown = {k: v for k, v in self.map_loss.items() if k.startswith('mean/')} or self.map_loss
            lines.append(
                '  mAP loss (deterministic - live, points): ' + ', '.join(f'{k} {v:+.1f}' for k, v in shown.items())
            )
        lines.extend(f'  note: {note}' for note in self.notes)
        if self.skipped:
            lines.append('  skipped:')
            lines.extend(f'    - {e["count"]} x {e["what"]}: {e["reason"]}' for e in self.skipped)
        lines.append(f'  outputs: {", ".join(f"{k}={v}" for k, v in self.outputs.items())}')
        return '\n'.join(lines)


def _latency_summary(latencies_ns):
    if not latencies_ns:
        return {}
    values = np.asarray(sorted(latencies_ns), dtype=np.float64) * 1e-6
    return {
        'mean': float(values.mean()),
        'median': float(np.median(values)),
        'p95': float(np.percentile(values, 95)),
        'max': float(values.max()),
        'count': int(len(values)),
    }


def _seqpose_node_command():
    """The `seqpose_node` console script next to this interpreter (the venv's own: the pip ROS wheels set
    LD_LIBRARY_PATH per venv), else `python -m seqpose_ros.node`. The library does not import the ROS package
    (test_layering): it starts it as a program."""
    import sys

    script = Path(sys.executable).with_name('seqpose_node')
    return [str(script)] if script.exists() else [sys.executable, '-m', 'seqpose_ros.node']


def _node_environment():
    """Loopback discovery (a local replay needs nothing else); the node and this process share the Fast DDS
    settings (stock, or the FASTDDS_DEFAULT_PROFILES_FILE the caller set): the player publishes reliable and
    the node's best_available subscription is then reliable, which stock DDS delivers (README, ROS 2)."""
    env = dict(os.environ)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    env['PYTHONUNBUFFERED'] = '1'
    env['RCUTILS_LOGGING_BUFFERED_STREAM'] = '0'
    return env


def _node_arguments(runner, checkpoint_path, topics, image_type):
    cfg = runner.cfg
    arguments = [
        '-p',
        f'checkpoint:={checkpoint_path}',
        '-p',
        f'mode:={cfg.mode}',
        '-p',
        f'score_threshold:={float(cfg.score_threshold)}',
        '-p',
        f'max_detections:={int(cfg.max_detections)}',
        '-p',
        f'max_frame_gap:={float(cfg.max_frame_gap)}',
        '-p',
        f'device:={runner.device.type}',
        '-p',
        f'backend:={cfg.backend}',
        '-r',
        f'camera_info:={topics.camera_info}',
        '-r',
        f'detections:={M.DETECTIONS_TOPIC}',
    ]
    if image_type == M.COMPRESSED_IMAGE_TYPE:
        arguments += ['-p', 'image_transport:=compressed', '-r', f'image/compressed:={topics.image}']
    else:
        arguments += ['-r', f'image:={topics.image}']
    return arguments


def live_replay(
    bag,
    out_dir,
    checkpoint=None,
    mode='mf',
    device=None,
    topics: ReplayTopics = None,
    intrinsics=None,
    backend='torch',
    rate_scale=1.0,
    node_command=None,
    startup_timeout=60.0,
    settle_timeout=2.0,
    max_idle=2.0,
) -> LiveReport:
    import subprocess

    import rclpy

    from seqpose_core.bag.player import BagPlayer, DetectionRecorder
    from seqpose_core.bag.replay import evaluate_bag, progress_bar
    from seqpose_core.bag.score_recorded import score_bag
    from seqpose_core.runner import build_runner

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped = SkipLog()
    runner = build_runner(checkpoint, mode=mode, device=device, overrides={'backend': backend})
    deterministic = evaluate_bag(
        bag,
        out_dir / 'deterministic',
        runner=runner,
        topics=topics,
        intrinsics=intrinsics,
        video=False,
        output_bag=False,
    )
    report = LiveReport(bag=str(bag), mode=mode, deterministic_metrics=deterministic.metrics)
    resolved = ReplayTopics(**deterministic.topics)
    image_type = M.COMPRESSED_IMAGE_TYPE if resolved.image.endswith('/compressed') else M.IMAGE_TYPE

    command = node_command.split() if node_command else _seqpose_node_command()
    command = command + ['--ros-args'] + _node_arguments(runner, runner.checkpoint_path, resolved, image_type)
    log_path = out_dir / 'node.log'
    env = _node_environment()
    rclpy_env = {
        k: env[k]
        for k in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'FASTDDS_DEFAULT_PROFILES_FILE', 'RMW_IMPLEMENTATION')
        if k in env
    }
    previous_env = {k: os.environ.get(k) for k in rclpy_env}
    os.environ.update(rclpy_env)  # this process's participant must use the same transports as the node
    with open(log_path, 'wb') as log:
        node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    recorder = None
    try:
        player_node = rclpy.create_node('seqpose_bag_player', context=context)
        recorder = DetectionRecorder(player_node, M.DETECTIONS_TOPIC, out_dir / 'live_bag')
        player = BagPlayer(
            player_node,
            bag,
            [resolved.camera_info, resolved.image],
            rate_scale=rate_scale,
            max_idle=max_idle,
            skipped=skipped,
        )
        if resolved.image not in player.topics:
            raise BagError(f'{bag}: image topic {resolved.image} is not in the bag')
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(player_node)

        def spin(timeout):
            executor.spin_once(timeout_sec=timeout)

        deadline = time.monotonic() + startup_timeout
        while (
            any(publisher.get_subscription_count() == 0 for publisher, _ in player.publishers.values())
            or recorder.publisher_count() == 0
        ):
            if node.poll() is not None:
                raise RuntimeError(
                    f'seqpose_node exited with code {node.returncode} before subscribing; its log '
                    f'({log_path}):\n{log_path.read_text(errors="replace")[-2000:]}'
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f'seqpose_node did not subscribe to {resolved.image} within '
                    f'{startup_timeout:.0f} s; log: {log_path}'
                )
            spin(0.05)
        settle_until = time.monotonic() + 0.5  # let discovery finish in both directions
        while time.monotonic() < settle_until:
            spin(0.05)
        if player.prime_camera_info(resolved.camera_info):
            primed_until = time.monotonic() + 0.2  # the CameraInfo must be there before the first image
            while time.monotonic() < primed_until:
                spin(0.05)
        bar = progress_bar(deterministic.images_in_bag, 'bag live')
        player.play(spin=spin, progress=bar)
        bar.close()
        # wait for the last answers: until every image is answered or nothing arrived for settle_timeout
        images = player.published[resolved.image]
        last_count, quiet_since = -1, time.monotonic()
        while recorder.received < images and time.monotonic() - quiet_since < settle_timeout:
            spin(0.05)
            if recorder.received != last_count:
                last_count, quiet_since = recorder.received, time.monotonic()
        report.images_published = images
        report.detections_received = recorder.received
    finally:
        if recorder is not None:
            recorder.close()
        if node.poll() is None:
            node.send_signal(2)  # SIGINT: the node shuts down cleanly
            try:
                node.wait(10)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait(5)
        rclpy.try_shutdown(context=context)
        for key, value in previous_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    answered = {player.stamp_map.get(s, s) for s in recorder.latencies_ns}
    published_images = {player.stamp_map[s] for s in player.image_stamps}
    report.dropped_frames = len(published_images - answered)
    report.latency_ms = _latency_summary(list(recorder.latencies_ns.values()))
    live = (
        score_bag(
            out_dir / 'live_bag',
            gt_bag=bag,
            gt_topic=resolved.ground_truth,
            frame_name_topic=resolved.frame_name,
            missing='empty',
            out_dir=out_dir / 'live',
            stamp_map=player.stamp_map,
        )
        if deterministic.metrics
        else None
    )
    if live is not None:
        report.live_metrics = live.metrics
        report.skipped.extend(live.skipped)
        processed = score_bag(
            out_dir / 'live_bag',
            gt_bag=bag,
            gt_topic=resolved.ground_truth,
            frame_name_topic=resolved.frame_name,
            missing='skip',
            out_dir=out_dir / 'answered',
            stamp_map=player.stamp_map,
        )
        report.live_metrics_processed = processed.metrics
        if live.metrics:
            report.map_loss = scoring.metric_differences(deterministic.metrics, live.metrics)
    report.skipped = skipped.entries() + report.skipped
    report.notes = list(skipped.notes)
    # answered/results holds the frames the node answered, deterministic/results every frame: the same names
    report.outputs = {
        'node_log': str(log_path),
        'recording': str(out_dir / 'live_bag'),
        'answered': str(out_dir / 'answered'),
        'deterministic': str(out_dir / 'deterministic'),
        'report': str(out_dir / 'live_report.json'),
    }
    (out_dir / 'live_report.json').write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report
