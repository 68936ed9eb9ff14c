"""Per-frame latency of seqpose_node (image published -> Detection3DArray received, over DDS with the shared-
memory profile) versus the bare StreamRunner on the same frames, and the node's dropped frames at 30 Hz.

Run inside a private network namespace (DDS must not leave loopback):
    unshare -n bash -c 'ip link set lo up && ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \\
        .venv/bin/python benchmarks/bench_node.py [--checkpoint FILE] [--frames 150] [--width 640 --height 480]'
Without --checkpoint: the embedded default model when installed, else a tiny random model (`tiny` config).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'test'))
from helpers import ros_harness as T  # noqa: E402
from seqpose_ros.loading import DEFAULT_CHECKPOINT, load_runner  # noqa: E402


def percentiles(seconds):
    ms = np.asarray(seconds) * 1000.0
    if ms.size == 0:
        return 'n/a'
    return (
        f'median {np.median(ms):7.2f} ms   p95 {np.percentile(ms, 95):7.2f} ms   max {ms.max():7.2f} ms   (n={ms.size})'
    )


def bench_runner(checkpoint, device, images, K, backend, score_threshold):
    runner, _, device = load_runner(str(checkpoint), device, overrides={'backend': backend})
    runner.configure(score_threshold=score_threshold)
    from seqpose_core.runner import Frame

    for image in images[:5]:  # warm-up (allocator, lazy init)
        runner.step(Frame(image, K, 0.0, 'camera'))
        runner.reset()
    times = []
    for index, image in enumerate(images):
        start = time.perf_counter()
        runner.step(Frame(image, K, index / 30.0, 'camera'))
        times.append(time.perf_counter() - start)
    return times, device


def bench_node(checkpoint, device, images, K, rate, log_path, backend, score_threshold):
    node = T.NodeProcess(
        log_path,
        '-r',
        '__ns:=/bench',
        '-p',
        f'checkpoint:={checkpoint}',
        '-p',
        f'device:={device}',
        '-p',
        f'score_threshold:={score_threshold}',
        '-p',
        f'backend:={backend}',
    )
    client = T.RosClient('/bench')
    try:
        if not node.wait_for_log('listening on', 120) or not client.wait_for_subscribers(30):
            raise RuntimeError('node did not start:\n' + node.log())
        stamp = 0.0
        for _ in range(100):  # discovery settles; warm-up
            stamp += 1 / 30
            client.send(images[0], stamp, K)
            if client.detection_for(stamp, 0.3) is not None:
                break
        client.reset()

        # 1) one frame at a time: the node's own latency, no queueing
        sequential = []
        base = stamp + 10.0
        for index, image in enumerate(images[:60]):
            s = base + index / 30
            client.info_pub.publish(T.camera_info_msg(K, image.shape[1], image.shape[0], s))
            time.sleep(0.01)
            msg = T.image_msg(image, s)
            start = time.monotonic()
            client.image_pub.publish(msg)
            got = client.detection_for(s, 5.0)
            if got is not None:
                received = [t for t, m in client.detections if abs(T.stamp_seconds(m.header.stamp) - s) < 1e-6][0]
                sequential.append(received - start)
        client.reset()

        # 2) a 30 Hz stream: latency under load and frames the node skipped (newest frame wins)
        base = base + 100.0
        sent = {}
        period = 1.0 / rate
        next_time = time.monotonic()
        for index, image in enumerate(images):
            s = base + index * period
            client.info_pub.publish(T.camera_info_msg(K, image.shape[1], image.shape[0], s))
            msg = T.image_msg(image, s)
            now = time.monotonic()
            if now < next_time:
                time.sleep(next_time - now)
            sent[s] = time.monotonic()
            client.image_pub.publish(msg)
            next_time += period
        time.sleep(2.0)
        with client._lock:
            # keys in whole microseconds: a stamp does not survive sec/nanosec as the same float
            answered = {round(T.stamp_seconds(m.header.stamp) * 1e6): t for t, m in client.detections}
        streamed = [answered[round(s * 1e6)] - t for s, t in sent.items() if round(s * 1e6) in answered]
        missing = len(sent) - len(streamed)
        time.sleep(1.1)
        with client._lock:
            diags = [m.status[0] for _, m in client.diagnostics if m.status[0].name.startswith('/bench/')]
        values = {kv.key: kv.value for kv in diags[-1].values} if diags else {}
        return sequential, streamed, len(sent), missing, values
    finally:
        client.close()
        node.stop()
        problems = [line for line in node.log().splitlines() if '[WARN]' in line or '[ERROR]' in line]
        if problems:
            print('node warnings:\n  ' + '\n  '.join(problems[:10]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', default='')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--frames', type=int, default=150)
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--backend', default='torch', choices=('torch', 'onnxruntime'), help='inference.backend')
    parser.add_argument(
        '--score-threshold',
        type=float,
        default=0.0,
        help='0 (default): every detection up to max_detections reaches the refiner, the dearest case; the '
        "node's own default is 0.20",
    )
    args = parser.parse_args()
    T.refuse_unless_isolated()
    work = Path(tempfile.mkdtemp(prefix='bench_node_'))
    checkpoint = args.checkpoint or (str(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT.is_file() else '')
    label = checkpoint
    if not checkpoint:
        checkpoint = str(T.write_tiny_checkpoint(work / 'tiny.pt'))
        label = 'tiny config, random weights'
    images, K = T.make_sequence(frames=args.frames, width=args.width, height=args.height)
    runner_times, device = bench_runner(checkpoint, args.device, images, K, args.backend, args.score_threshold)
    sequential, streamed, sent, missing, diag = bench_node(
        checkpoint, args.device, images, K, args.rate, work / 'node.log', args.backend, args.score_threshold
    )
    import os
    import platform

    import torch

    print(
        f'model: {label}; backend {args.backend}; score threshold {args.score_threshold:g}; device {device}; '
        f'frames {args.width}x{args.height} rgb8; torch threads '
        f'{torch.get_num_threads()}; {os.cpu_count()} CPUs; {platform.processor() or platform.machine()}'
    )
    print(f'bare runner.step               : {percentiles(runner_times)}')
    print(f'node, one frame at a time      : {percentiles(sequential)}')
    print(f'node, {args.rate:g} Hz stream           : {percentiles(streamed)}')
    print(
        f'{args.rate:g} Hz stream: sent {sent}, answered {sent - missing}, not answered {missing}; node '
        f'diagnostics: received {diag.get("frames received")}, processed {diag.get("frames processed")}, '
        f'dropped {diag.get("frames dropped (newer frame arrived)")}, lost before the node '
        f'{diag.get("frames lost before the node (DDS reader queue)")}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
