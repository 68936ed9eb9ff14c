"""`seqpose bench`: latency, per-stage breakdown, FLOP utilisation and streaming memory of the StreamRunner.

Everything is measured in ONE run on synthetic frames (random uint8 RGB at the config's input size unless
--image-size says otherwise): per-frame latency of `StreamRunner.step` (median, p90), the time of each model
stage (model.stage_timer), the analytic FLOPs of a frame (seqpose_core.model.flops), and the machine's own
matmul throughput (a large GEMM: fp32 on CPU, bf16 on CUDA) so that

    utilization = gflops_per_frame * fps / peak_gflops,   fps = 1000 / latency_ms_median

is a ratio that survives a noisy, shared machine. `--memory-frames N` then runs N more frames and samples the
resident memory (psutil if installed, else /proc/self/statm; CUDA allocated/reserved on a GPU) to check that
streaming does not grow memory once warm.
"""

import json
import math
import os
import platform
import statistics
import sys
import time

from seqpose_core.config import MODES
from seqpose_core.measure import (
    configure_threads,
    device_name,
    measure_peak_gflops,
    percentile,
    stream_memory,
    synchronize,
)
from seqpose_core.stages.config import BACKENDS

HELP = 'latency, per-stage times, FLOP utilisation (vs a measured GEMM) and streaming memory of the runner'
DESCRIPTION = (
    HELP
    + """

Examples:
  seqpose bench --config tiny
  seqpose bench --config seqpose_vits --mode sf --frames 30 --json bench_s_sf.json
  seqpose bench --config tiny --memory-frames 10000        # RSS must stay flat once warm
  seqpose bench --config seqpose_vits --device cuda --compile   # bf16 autocast (+ torch.compile)
  seqpose bench --checkpoint seqpose_core/weights/default.pt --image-size 480x640 --backend torch --backend onnxruntime

Stages (ms per frame, medians): preprocess (resize + normalise + to device), encoder (DINOv2), decoder (DPT head),
fusion (eq. 3, + dense heads when on), stsq (decoder layers), pose_head, postprocess (threshold, NMS,
Detection objects), refiner (the pose refiner's crops and CNN, models with one) and other (memory queue
bookkeeping, Python overhead: step total minus the stages)."""
)


STAGE_ORDER = (
    'preprocess',
    'network',  # backend onnxruntime: the frame graph, encoder to pose heads, in one call
    'encoder',
    'depth_head',
    'fusion',
    'dense',
    'stsq',
    'pose_head',
    'postprocess',
    # then the runner's stages, in their order (seqpose_core.stages.pipeline.STAGES)
    'refiner',
    'crop_scoring',
    'tracks',
    'support_plane',
    'world_fusion',
    'covariance',
    'other',
)


def add_arguments(parser):
    parser.add_argument(
        '--config', default='seqpose_vits', help='YAML path or shipped config name (default: %(default)s)'
    )
    parser.add_argument(
        '--checkpoint',
        metavar='PATH',
        default=None,
        help='time a trained checkpoint instead of random weights (same speed; optional)',
    )
    parser.add_argument('--frames', type=int, default=30, help='timed frames after warm-up (default: %(default)s)')
    parser.add_argument('--warmup', type=int, default=5, help='untimed frames first (default: %(default)s)')
    parser.add_argument(
        '--mode',
        choices=sorted(MODES),
        default='mf',
        help='sf: single frame (memory off), mf: video (memory on; default)',
    )
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:N]' (default: %(default)s)")
    parser.add_argument(
        '--backend',
        action='append',
        choices=BACKENDS,
        default=None,
        help='network backend (inference.backend; default torch); given twice, both run one after the other on '
        'the same frames and a comparison follows',
    )
    parser.add_argument(
        '--threads', type=int, default=0, help='CPU threads for torch (default: all cores this process may use)'
    )
    parser.add_argument(
        '--image-size',
        metavar='HxW',
        default=None,
        help='size of the synthetic camera frames (default: the network input size)',
    )
    parser.add_argument('--no-autocast', action='store_true', help='CUDA: run fp32 instead of bf16 autocast')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the fixed-shape parts (encoder, DPT head, fusion, decoder layers)',
    )
    parser.add_argument(
        '--compile-mode',
        default=None,
        help="torch.compile mode, e.g. 'reduce-overhead' (CUDA graphs) or 'max-autotune'",
    )
    parser.add_argument(
        '--gemm-size', type=int, default=0, help='n of the n x n x n peak GEMM (default: 2048 on CPU, 8192 on CUDA)'
    )
    parser.add_argument(
        '--gemm-repeats', type=int, default=5, help='best-of repeats of the GEMM (default: %(default)s)'
    )
    parser.add_argument(
        '--no-interleave',
        action='store_true',
        help='skip the small GEMM after every timed frame (the contention-matched ratio)',
    )
    parser.add_argument(
        '--memory-frames',
        type=int,
        default=0,
        help='after the timing, stream this many frames and report RSS start/end/slope',
    )
    parser.add_argument('--memory-samples', type=int, default=100, help='RSS samples over --memory-frames')
    parser.add_argument('--json', metavar='FILE', default=None, help='write the results as one JSON object')
    parser.add_argument('--seed', type=int, default=0)


# --- measurements ------------------------------------------------------------------------------------------------


# --- the benchmark ---------------------------------------------------------------------------------------------


def parse_image_size(text, option='--image-size'):
    """'HxW' -> (height, width); ValueError naming `option` otherwise."""
    try:
        height_width = tuple(int(v) for v in text.lower().split('x'))
        assert len(height_width) == 2 and min(height_width) >= 2
    except (ValueError, AssertionError):
        raise ValueError(f'{option} {text!r}: expected HxW, e.g. 480x640') from None
    return height_width


def synthetic_stream(image_hw, input_hw, count=8, seed=0):
    """A few random frames (cycled), their K, and a small per-frame camera motion (T_cur_from_prev)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=(image_hw[0], image_hw[1], 3), dtype=np.uint8) for _ in range(count)]
    focal = 0.9 * image_hw[1]
    K = np.array([[focal, 0.0, image_hw[1] / 2 - 0.5], [0.0, focal, image_hw[0] / 2 - 0.5], [0.0, 0.0, 1.0]])
    angle = math.radians(0.5)  # 0.5 degrees about y and 5 mm along x per frame
    motion = np.eye(4)
    motion[0, 0] = motion[2, 2] = math.cos(angle)
    motion[0, 2], motion[2, 0] = math.sin(angle), -math.sin(angle)
    motion[0, 3] = 0.005
    return images, K, motion


def runner_for_benchmark(args, config, backend='torch'):
    """The runner of --checkpoint (its stored config), or a randomly initialised model of --config."""
    import torch

    from seqpose_core.runner import build_runner

    device = str(torch.device(args.device))
    overrides = {'backend': backend}
    if args.checkpoint:
        runner = build_runner(args.checkpoint, mode=args.mode, device=device, overrides=overrides)
    else:
        from seqpose_core.model.seqpose import build_model

        torch.manual_seed(args.seed)
        model = build_model(config.model, load_pretrained=False)
        runner = build_runner(model=model, config=config, mode=args.mode, device=device, overrides=overrides)
    if args.compile:
        if backend != 'torch':
            raise ValueError(f'--compile: only with the torch backend (got {backend})')
        compile_model(runner.model, args.compile_mode)
    return runner, runner.input_size


def compile_model(model, mode=None):
    """torch.compile the fixed-shape parts; the MemoryQueue bookkeeping stays eager (it is Python objects)."""
    import torch

    model.encoder = torch.compile(model.encoder, mode=mode, dynamic=False)
    model.depth_head = torch.compile(model.depth_head, mode=mode, dynamic=False)
    model.fusion = torch.compile(model.fusion, mode=mode, dynamic=False)
    for index, layer in enumerate(model.decoder.layers):
        model.decoder.layers[index] = torch.compile(layer, mode=mode, dynamic=False)


def autocast_context(device, enabled):
    import contextlib

    import torch

    if device.type == 'cuda' and enabled:
        return torch.autocast('cuda', dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_benchmark(args, backend='torch'):
    import torch

    from seqpose_core.config import load_config
    from seqpose_core.model.flops import count_flops
    from seqpose_core.runner import Frame
    from seqpose_core.timing import StageTimer

    if args.frames < 1 or args.warmup < 0:
        raise ValueError(f'--frames must be >= 1 and --warmup >= 0, got {args.frames}, {args.warmup}')
    device = torch.device(args.device)
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'--device {args.device}: CUDA is not available in this torch build / machine')
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    threads = configure_threads(args.threads)
    config = load_config(args.config)
    runner, input_hw = runner_for_benchmark(args, config, backend)
    image_hw = input_hw
    if args.image_size:
        image_hw = parse_image_size(args.image_size)
    images, K, motion = synthetic_stream(image_hw, input_hw, seed=args.seed)
    use_autocast = device.type == 'cuda' and not args.no_autocast
    timer = StageTimer()
    runner.model.stage_timer = timer
    frame_index = [0]

    def step():
        i = frame_index[0]
        frame_index[0] += 1
        camera_motion = motion if (args.mode == 'mf' and i > 0) else None
        with autocast_context(device, use_autocast):
            return runner.step(Frame(images[i % len(images)], K, i / 30.0, camera_motion=camera_motion)).detections

    peak_before = measure_peak_gflops(device, args.gemm_size, args.gemm_repeats)
    for _ in range(args.warmup):
        step()
    synchronize(device)
    latencies, stage_samples, detections, interleaved, published = [], [], 0, [], []
    small_gemm = 1024 if device.type == 'cpu' else 4096
    for _ in range(args.frames):
        timer.reset()
        start = time.perf_counter()
        frame_detections = step()
        synchronize(device)
        elapsed = time.perf_counter() - start
        detections += len(frame_detections)
        published.append([(d.class_id, round(d.score, 3)) for d in frame_detections])
        latencies.append(elapsed * 1000)
        stages = {name: seconds * 1000 for name, seconds in timer.seconds.items()}
        stages['other'] = max(0.0, elapsed * 1000 - sum(stages.values()))
        stage_samples.append(stages)
        if not args.no_interleave:
            # the machine's throughput right now: on a shared machine it moves with the load, so the ratio of
            # medians taken side by side is steadier than latency against a best-of GEMM taken elsewhere
            interleaved.append(measure_peak_gflops(device, small_gemm, 1)['peak_gflops'])
    peak_after = measure_peak_gflops(device, args.gemm_size, args.gemm_repeats)
    peak = max(peak_before['peak_gflops'], peak_after['peak_gflops'])

    median = statistics.median(latencies)
    fps = 1000.0 / median
    flops = count_flops(runner.model.cfg, input_hw, dense=False, memory_full=(args.mode == 'mf'))
    gflops = flops['total'] / 1e9
    names = [n for n in STAGE_ORDER if any(n in s for s in stage_samples)]
    names += sorted({n for s in stage_samples for n in s} - set(names))
    stages_ms = {n: round(statistics.median([s.get(n, 0.0) for s in stage_samples]), 4) for n in names}
    stage_gflops = {n: flops[n] / 1e9 for n in flops if n != 'total'}
    result = {
        'config': args.checkpoint or args.config,
        'backend': backend,
        'providers': list(getattr(runner.model, 'providers', ())) or None,
        'device': str(device),
        'device_name': device_name(device),
        'mode': args.mode,
        'input_hw': list(input_hw),
        'image_hw': list(image_hw),
        'frames': args.frames,
        'warmup': args.warmup,
        'threads': threads,
        'dtype': 'bfloat16-autocast' if use_autocast else 'float32',
        'compiled': bool(args.compile),
        'latency_ms_median': round(median, 4),
        'latency_ms_p90': round(percentile(latencies, 90), 4),
        'latency_ms_min': round(min(latencies), 4),
        'latency_ms_mean': round(statistics.fmean(latencies), 4),
        'fps': fps,
        'gflops_per_frame': gflops,
        'peak_gflops': peak,
        'utilization': gflops * fps / peak,
        'stages_ms': stages_ms,
        'stages_gflops': {n: round(v, 6) for n, v in stage_gflops.items()},
        'stages_utilization': {
            n: round(stage_gflops[n] / (stages_ms[n] / 1000) / peak, 4)
            for n in stage_gflops
            if stages_ms.get(n, 0) > 0 and stage_gflops[n] > 0
        },
        'gemm': {
            'size': peak_before['gemm_size'],
            'dtype': peak_before['gemm_dtype'],
            'gflops_before': peak_before['peak_gflops'],
            'gflops_after': peak_after['peak_gflops'],
        },
        'interleaved_gemm': (
            {
                'size': small_gemm,
                'gflops_median': statistics.median(interleaved),
                'gflops_max': max(interleaved),
                'utilization': gflops * fps / statistics.median(interleaved),
                'utilization_best_frame': gflops * (1000.0 / min(latencies)) / max(interleaved),
            }
            if interleaved
            else None
        ),
        'detections_per_frame': detections / args.frames,
        'published': published,
        'load_average': list(os.getloadavg()) if hasattr(os, 'getloadavg') else None,
        'cpu_count': os.cpu_count(),
        'torch': torch.__version__,
        'python': platform.python_version(),
        'machine': platform.machine(),
        'timestamp': time.strftime('%Y-%m-%dT%H:%M:%S'),
    }
    if args.memory_frames > 0:
        result['memory'] = stream_memory(step, args.memory_frames, args.memory_samples, device)
    return result


# --- report --------------------------------------------------------------------------------------------------------
def format_table(result):
    lines = [
        f'seqpose bench: {result["config"]}, backend {result["backend"]}, mode {result["mode"]}, '
        f'device {result["device"]} '
        f'({result["device_name"]}, {result["threads"]} threads, {result["dtype"]}'
        f'{", compiled" if result["compiled"] else ""}), input {result["input_hw"][0]}x{result["input_hw"][1]}',
        f'load average {" ".join(f"{v:.2f}" for v in result["load_average"] or ())}; '
        f'{result["frames"]} frames after {result["warmup"]} warm-up',
        '',
        f'  {"stage":<12}{"ms (median)":>12}{"share":>8}{"GFLOPs":>10}{"util":>8}',
    ]
    total = result['latency_ms_median']
    for name, ms in result['stages_ms'].items():
        gf = result['stages_gflops'].get(name)
        util = result['stages_utilization'].get(name)
        lines.append(
            f'  {name:<12}{ms:>12.3f}{100 * ms / total:>7.1f}%'
            f'{(f"{gf:10.3f}" if gf is not None else " " * 10)}'
            f'{(f"{100 * util:7.1f}%" if util is not None else "")}'
        )
    lines += [
        '',
        f'  latency     median {total:.3f} ms, p90 {result["latency_ms_p90"]:.3f} ms  ->  {result["fps"]:.2f} FPS',
        f'  work        {result["gflops_per_frame"]:.3f} GFLOPs/frame (analytic) -> '
        f'{result["gflops_per_frame"] * result["fps"]:.1f} GFLOP/s achieved',
        f'  machine     {result["peak_gflops"]:.1f} GFLOP/s peak ({result["gemm"]["dtype"]} GEMM '
        f'{result["gemm"]["size"]}^3, best of before {result["gemm"]["gflops_before"]:.1f} / after '
        f'{result["gemm"]["gflops_after"]:.1f})',
        f'  utilization {100 * result["utilization"]:.1f}% of the measured GEMM throughput',
    ]
    inter = result.get('interleaved_gemm')
    if inter:
        lines.append(
            f'              {100 * inter["utilization"]:.1f}% against a {inter["size"]}^3 GEMM run '
            f'after every '
            f'frame (median {inter["gflops_median"]:.1f} GFLOP/s; best frame vs best GEMM '
            f'{100 * inter["utilization_best_frame"]:.1f}%)'
        )
    memory = result.get('memory')
    if memory:
        for key in ('rss', 'cuda_allocated', 'cuda_reserved'):
            summary = memory.get(key)
            if not summary:
                continue
            lines.append(
                f'  memory      {key}: median {summary["first_quarter_median_mib"]:.1f} -> '
                f'{summary["last_quarter_median_mib"]:.1f} MiB (first/last quarter), '
                f'{summary["start_mib"]:.1f} -> '
                f'{summary["end_mib"]:.1f} MiB over frames '
                f'{summary["warm_from_frame"]}..{summary["frames"]} (max {summary["max_mib"]:.1f}), slope '
                f'{summary["slope_mib_per_1000_frames"]:+.3f} MiB/1000 frames: '
                f'{"FLAT" if summary["flat"] else "GROWING"}'
            )
    return '\n'.join(lines)


def compare(results):
    """Lines comparing the backends of one run: latency, utilisation, and whether they published the same."""
    base = results[0]
    lines = [
        '',
        f'  {"backend":<14}{"median ms":>10}{"p90 ms":>9}{"FPS":>8}{"util":>8}  same detections as {base["backend"]}',
    ]
    for result in results:
        same = sum(a == b for a, b in zip(base['published'], result['published']))
        lines.append(
            f'  {result["backend"]:<14}{result["latency_ms_median"]:>10.2f}{result["latency_ms_p90"]:>9.2f}'
            f'{result["fps"]:>8.1f}{100 * result["utilization"]:>7.1f}%  {same}/{len(base["published"])} frames'
        )
    return lines


def run(args):
    results = []
    for backend in args.backend or ['torch']:
        result = run_benchmark(args, backend)
        print(format_table(result))
        print()
        results.append(result)
    if len(results) > 1:
        print('\n'.join(compare(results)))
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(results[0] if len(results) == 1 else results, handle, indent=2)
            handle.write('\n')
        print(f'\nwrote {args.json}')
    for result in results:
        memory = result.get('memory')
        if memory and not all(memory[k]['flat'] for k in ('rss', 'cuda_allocated') if k in memory):
            print('seqpose bench: memory grows during streaming (see above)', file=sys.stderr)
            return 1
    return 0
