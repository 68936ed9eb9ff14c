#!/usr/bin/env python3
"""Streaming memory check: run the StreamRunner over a long synthetic video and fail if memory grows.

    python benchmarks/bench_stream_memory.py                     # tiny 10,000 frames, then S 1,000 frames
    python benchmarks/bench_stream_memory.py --configs tiny --frames 10000 --mode mf --json mem.json

Each config runs `seqpose bench --memory-frames N` in its own process (a clean RSS baseline). RSS comes from
psutil when installed, else /proc/self/statm; on CUDA the allocated and reserved memory are checked too.
Exit status 1 when any run is not flat (growth over the warm window >= the tolerance, 4 MiB for RSS).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

DEFAULT_FRAMES = {'tiny': 10000, 'seqpose_vits': 1000}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--configs', nargs='+', default=list(DEFAULT_FRAMES))
    parser.add_argument('--frames', type=int, default=0, help='frames per config (default: tiny 10000, S 1000)')
    parser.add_argument('--mode', choices=('sf', 'mf'), default='mf')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=0)
    parser.add_argument('--samples', type=int, default=100)
    parser.add_argument('--json', metavar='FILE', help='write {config: memory summary} here')
    args = parser.parse_args(argv)

    results, ok = {}, True
    for config in args.configs:
        frames = args.frames or DEFAULT_FRAMES.get(config, 1000)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, 'bench.json')
            command = [
                sys.executable,
                '-m',
                'seqpose_core.cli',
                'bench',
                '--config',
                config,
                '--mode',
                args.mode,
                '--device',
                args.device,
                '--threads',
                str(args.threads),
                '--frames',
                '20',
                '--warmup',
                '5',
                '--memory-frames',
                str(frames),
                '--memory-samples',
                str(args.samples),
                '--json',
                out,
            ]
            print('$', ' '.join(command[1:]), flush=True)
            code = subprocess.call(command)
            if not os.path.exists(out):
                print(f'{config}: no result (exit {code})', file=sys.stderr)
                ok = False
                continue
            with open(out) as handle:
                result = json.load(handle)
        memory = result['memory']
        results[config] = {
            'frames': frames,
            'mode': args.mode,
            'device': result['device'],
            'load_average': result['load_average'],
            **{k: v for k, v in memory.items()},
        }
        ok = ok and code == 0
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(results, handle, indent=2)
    for config, memory in results.items():
        rss = memory['rss']
        print(
            f'{config}: {memory["frames"]} frames ({memory["mode"]}), RSS median '
            f'{rss["first_quarter_median_mib"]:.1f} '
            f'-> {rss["last_quarter_median_mib"]:.1f} MiB (first/last quarter once warm, from frame '
            f'{rss["warm_from_frame"]}; samples {rss["min_mib"]:.1f}..{rss["max_mib"]:.1f}), slope '
            f'{rss["slope_mib_per_1000_frames"]:+.3f} MiB/1000 frames: {"flat" if rss["flat"] else "GROWING"}'
        )
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
