"""Soak: seqpose_node fed a looping scene for a long time (a bag played with --loop, as on a demo stand): the
set of TF frame names it publishes must stay bounded (object ids are reused once a track ends) and its memory
flat. Prints the figures; no pass/fail.

Run inside a private network namespace (DDS must not leave loopback):
    unshare -n bash -c 'ip link set lo up && ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \\
        .venv/bin/python benchmarks/bench_node_soak.py [--minutes 10] [--rate 10] [--loop-frames 30]'

The node runs the embedded default model with score_threshold 0 and max_detections 20, so every frame carries
20 objects and tracks start and end all the time (the worst case for TF frame names); the stamps restart every
--loop-frames frames, so the memory and the tracker reset at each loop, as with a looping bag. The camera is an
outside process (test/helpers/camera_client.py), reliable 640x480 rgb8, stock Fast DDS.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'test'))

from helpers import ros_harness as T  # noqa: E402


def rss_mib(pid):
    with open(f'/proc/{pid}/status', encoding='ascii') as handle:
        for line in handle:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--minutes', type=float, default=1.0)
    parser.add_argument('--rate', type=float, default=10.0, help='camera frames per second')
    parser.add_argument('--loop-frames', type=int, default=30, help='the scene loops every N frames')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--checkpoint', default='', help="'' = the embedded default model")
    args = parser.parse_args()
    T.refuse_unless_isolated()
    work = Path(tempfile.mkdtemp(prefix='soak_'))
    node_args = ['-r', '__ns:=/soak', '-p', 'score_threshold:=0.0', '-p', 'max_detections:=20']
    if args.checkpoint:
        node_args += ['-p', f'checkpoint:={args.checkpoint}']
    node = T.NodeProcess(work / 'node.log', *node_args)
    frames = int(args.minutes * 60 * args.rate)
    samples = []
    try:
        if not node.wait_for_log('listening on', 180):
            raise RuntimeError('node did not start:\n' + node.log())
        client = subprocess.Popen(
            [
                sys.executable,
                str(REPO / 'test' / 'helpers' / 'camera_client.py'),
                '--image-topic',
                '/soak/image',
                '--info-topic',
                '/soak/camera_info',
                '--detections-topic',
                '/soak/detections',
                '--frames',
                str(frames),
                '--rate',
                str(args.rate),
                '--width',
                str(args.width),
                '--height',
                str(args.height),
                '--loop',
                str(args.loop_frames),
                '--report-every',
                '60',
            ],
            env=T.ros2_environment(''),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        start = time.monotonic()
        while client.poll() is None:
            samples.append((time.monotonic() - start, rss_mib(node.process.pid)))
            time.sleep(5.0)
        out, err = client.communicate()
        lines = [json.loads(line) for line in out.splitlines() if line.startswith('{')]
        if client.returncode != 0 or not lines or 'sent' not in lines[-1]:
            raise RuntimeError(f'camera client failed: {out[-2000:]}\n{err[-2000:]}')
        result, progress = lines[-1], lines[:-1]
    finally:
        node.stop()
    diagnostics = [line for line in node.log().splitlines() if 'WARN' in line or 'ERROR' in line]
    names = result['tf_children']
    warm = [rss for t, rss in samples if t >= min(30.0, samples[-1][0] / 2)] or [samples[-1][1]]
    per_minute = [rss for t, rss in samples if int(t) % 60 < 5]
    print(
        f'soak: {args.minutes:g} min, {frames} frames {args.width}x{args.height} at {args.rate:g} Hz, scene looping '
        f'every {args.loop_frames} frames ({frames // args.loop_frames} loops); Detection3DArray messages '
        f'received {result["messages"]} ({100.0 * result["messages"] / max(frames, 1):.1f} %)'
    )
    print(
        f'TF child frame names ever published: {len(names)} '
        f'(e.g. {", ".join(names[:4])}{", ..." if len(names) > 4 else ""})'
    )
    if progress:
        print(
            '  over time (s: names): '
            + ', '.join(f'{p["t"]:.0f}: {p["tf_names"]}' for p in progress)
            + f', end: {len(names)}'
        )
    print(
        f'node RSS: first sample {samples[0][1]:.1f} MiB, after warm-up {warm[0]:.1f} MiB, end {samples[-1][1]:.1f} '
        f'MiB, max {max(r for _, r in samples):.1f} MiB ({len(samples)} samples every 5 s)'
    )
    print('  per minute (MiB): ' + ', '.join(f'{r:.1f}' for r in per_minute))
    print(f'node warnings/errors logged (throttled): {len(diagnostics)}')
    for line in diagnostics[:5]:
        print('  ' + line[:200])
    return 0


if __name__ == '__main__':
    sys.exit(main())
