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

HELP = 'latency, per-stage times, FLOP utilisation (vs a measured GEMM) and streaming memory of the runner'
DESCRIPTION = HELP + """

Examples:
  seqpose bench --config tiny
  seqpose bench --config seqpose_vits --mode sf --frames 30 --json bench_s_sf.json
  seqpose bench --config tiny --memory-frames 10000        # RSS must stay flat once warm
  seqpose bench --config seqpose_vits --device cuda --compile   # bf16 autocast (+ torch.compile)

Stages (ms per frame, medians): preprocess (resize + normalise + to device), encoder (DINOv2), decoder (DPT head),
fusion (eq. 3, + dense heads when on), stsq (decoder layers), pose_head, postprocess (threshold, NMS,
Detection objects) and other (memory queue bookkeeping, Python overhead: step total minus the stages)."""


STAGE_ORDER = ('preprocess', 'encoder', 'decoder', 'fusion', 'dense', 'stsq', 'pose_head', 'postprocess', 'other')


def add_arguments(parser):
    parser.add_argument('--config', default='seqpose_vits',
                        help='YAML path or shipped config name (default: %(default)s)')
    parser.add_argument('--checkpoint', metavar='PATH', default=None,
                        help='time a trained checkpoint instead of random weights (same speed; optional)')
    parser.add_argument('--frames', type=int, default=30, help='timed frames after warm-up (default: %(default)s)')
    parser.add_argument('--warmup', type=int, default=5, help='untimed frames first (default: %(default)s)')
    parser.add_argument('--mode', choices=sorted(MODES), default='mf',
                        help='sf: single frame (memory off), mf: video (memory on; default)')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:N]' (default: %(default)s)")
    parser.add_argument('--threads', type=int, default=0,
                        help='CPU threads for torch (default: all cores this process may use)')
    parser.add_argument('--image-size', metavar='HxW', default=None,
                        help='size of the synthetic camera frames (default: the network input size)')
    parser.add_argument('--no-autocast', action='store_true', help='CUDA: run fp32 instead of bf16 autocast')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the fixed-shape parts (encoder, DPT head, fusion, decoder layers)')
    parser.add_argument('--compile-mode', default=None,
                        help="torch.compile mode, e.g. 'reduce-overhead' (CUDA graphs) or 'max-autotune'")
    parser.add_argument('--gemm-size', type=int, default=0,
                        help='n of the n x n x n peak GEMM (default: 2048 on CPU, 8192 on CUDA)')
    parser.add_argument('--gemm-repeats', type=int, default=5,
                        help='best-of repeats of the GEMM (default: %(default)s)')
    parser.add_argument('--no-interleave', action='store_true',
                        help='skip the small GEMM after every timed frame (the contention-matched ratio)')
    parser.add_argument('--memory-frames', type=int, default=0,
                        help='after the timing, stream this many frames and report RSS start/end/slope')
    parser.add_argument('--memory-samples', type=int, default=100, help='RSS samples over --memory-frames')
    parser.add_argument('--json', metavar='FILE', default=None, help='write the results as one JSON object')
    parser.add_argument('--seed', type=int, default=0)


# --- measurements ------------------------------------------------------------------------------------------------
def percentile(values, q):
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * q / 100.0
    low = int(math.floor(position))
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _synchronize(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure_peak_gflops(device, size=0, repeats=5, dtype=None):
    """Best-of `repeats` throughput of an n^3 matmul (fp32 on CPU, bf16 on CUDA), GFLOP/s = 2 n^3 / s."""
    import torch
    if dtype is None:
        dtype = torch.bfloat16 if device.type == 'cuda' else torch.float32
    size = size or (8192 if device.type == 'cuda' else 2048)
    generator = torch.Generator(device='cpu').manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    with torch.inference_mode():
        torch.matmul(a, b, out=out)            # warm-up (thread pool, BLAS dispatch, CUDA kernels)
        _synchronize(device)
        best = float('inf')
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            _synchronize(device)
            best = min(best, time.perf_counter() - start)
    return {'peak_gflops': 2.0 * size ** 3 / best / 1e9, 'gemm_size': size,
            'gemm_dtype': str(dtype).replace('torch.', ''), 'gemm_seconds': best}


def read_memory(device=None):
    """{'rss_mib': ...} (+ CUDA allocated/reserved MiB on a GPU)."""
    try:
        import psutil
        rss = psutil.Process(os.getpid()).memory_info().rss
    except ImportError:
        with open('/proc/self/statm') as handle:
            rss = int(handle.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    sample = {'rss_mib': rss / 2 ** 20}
    if device is not None and device.type == 'cuda':
        import torch
        sample['cuda_allocated_mib'] = torch.cuda.memory_allocated(device) / 2 ** 20
        sample['cuda_reserved_mib'] = torch.cuda.memory_reserved(device) / 2 ** 20
    return sample


def linear_slope(xs, ys):
    """Least-squares slope dy/dx (0 for fewer than two points)."""
    if len(xs) < 2:
        return 0.0
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var


def memory_summary(samples, warm_fraction=0.1, key='rss_mib', tolerance_mib=4.0, tolerance_fraction=0.02):
    """samples: [(frame, {key: MiB})]. Once warm (after the first `warm_fraction` of the frames): start, end,
    max, the least-squares slope in MiB per 1000 frames and the medians of the first and last quarter of the
    warm samples. RSS moves up and down between frames (the allocator hands big blocks back to the system and
    takes them again), so single samples are noisy; `flat` = neither the fitted growth over the warm window nor
    the last-quarter minus first-quarter median grows by the tolerance (max(tolerance_mib, tolerance_fraction
    of the level)). Shrinking is not a leak."""
    if not samples:
        return {}
    last_frame = samples[-1][0]
    warm = [(f, s[key]) for f, s in samples if f >= warm_fraction * last_frame] or [(f, s[key]) for f, s in samples]
    frames, values = [f for f, _ in warm], [v for _, v in warm]
    slope = linear_slope(frames, values)                    # MiB per frame
    growth = slope * (frames[-1] - frames[0])
    quarter = max(1, len(values) // 4)
    first, last = statistics.median(values[:quarter]), statistics.median(values[-quarter:])
    tolerance = max(tolerance_mib, tolerance_fraction * first)
    return {'key': key, 'warm_from_frame': frames[0], 'frames': last_frame,
            'start_mib': round(values[0], 2), 'end_mib': round(values[-1], 2), 'max_mib': round(max(values), 2),
            'min_mib': round(min(values), 2), 'first_sample_mib': round(samples[0][1][key], 2),
            'first_quarter_median_mib': round(first, 2), 'last_quarter_median_mib': round(last, 2),
            'slope_mib_per_1000_frames': round(slope * 1000, 4), 'fitted_growth_mib': round(growth, 3),
            'flat': bool(growth < tolerance and last - first < tolerance), 'tolerance_mib': round(tolerance, 2)}


# --- the benchmark ---------------------------------------------------------------------------------------------
def configure_threads(threads=0):
    """Use every core this process may run on (torch's default can differ in containers)."""
    import torch
    if not threads:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:
            threads = os.cpu_count() or 1
    torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def synthetic_stream(image_hw, input_hw, count=8, seed=0):
    """A few random frames (cycled), their K, and a small per-frame camera motion (T_cur_from_prev)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=(image_hw[0], image_hw[1], 3), dtype=np.uint8) for _ in range(count)]
    focal = 0.9 * image_hw[1]
    K = np.array([[focal, 0.0, image_hw[1] / 2 - 0.5], [0.0, focal, image_hw[0] / 2 - 0.5], [0.0, 0.0, 1.0]])
    angle = math.radians(0.5)                       # 0.5 degrees about y and 5 mm along x per frame
    motion = np.eye(4)
    motion[0, 0] = motion[2, 2] = math.cos(angle)
    motion[0, 2], motion[2, 0] = math.sin(angle), -math.sin(angle)
    motion[0, 3] = 0.005
    return images, K, motion


def runner_for_benchmark(args, config):
    """The runner of --checkpoint (its stored config), or a randomly initialised model of --config."""
    import torch

    from seqpose_core.runner import build_runner
    device = str(torch.device(args.device))
    if args.checkpoint:
        runner = build_runner(args.checkpoint, mode=args.mode, device=device)
    else:
        from seqpose_core.model.seqpose import build_model
        torch.manual_seed(args.seed)
        model = build_model(config.model, load_pretrained=False)
        runner = build_runner(model=model, config=config, mode=args.mode, device=device)
    if args.compile:
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


def run_benchmark(args):
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
    runner, input_hw = runner_for_benchmark(args, config)
    image_hw = input_hw
    if args.image_size:
        try:
            image_hw = tuple(int(v) for v in args.image_size.lower().split('x'))
            assert len(image_hw) == 2 and min(image_hw) >= 2
        except (ValueError, AssertionError):
            raise ValueError(f'--image-size {args.image_size!r}: expected HxW, e.g. 480x640') from None
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
    _synchronize(device)
    latencies, stage_samples, detections, interleaved = [], [], 0, []
    small_gemm = 1024 if device.type == 'cpu' else 4096
    for _ in range(args.frames):
        timer.reset()
        start = time.perf_counter()
        detections += len(step())
        _synchronize(device)
        elapsed = time.perf_counter() - start
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
        'config': args.config, 'device': str(device), 'device_name': device_name(device), 'mode': args.mode,
        'input_hw': list(input_hw), 'image_hw': list(image_hw), 'frames': args.frames, 'warmup': args.warmup,
        'threads': threads, 'dtype': 'bfloat16-autocast' if use_autocast else 'float32',
        'compiled': bool(args.compile),
        'latency_ms_median': round(median, 4), 'latency_ms_p90': round(percentile(latencies, 90), 4),
        'latency_ms_min': round(min(latencies), 4), 'latency_ms_mean': round(statistics.fmean(latencies), 4),
        'fps': fps, 'gflops_per_frame': gflops, 'peak_gflops': peak,
        'utilization': gflops * fps / peak,
        'stages_ms': stages_ms,
        'stages_gflops': {n: round(v, 6) for n, v in stage_gflops.items()},
        'stages_utilization': {n: round(stage_gflops[n] / (stages_ms[n] / 1000) / peak, 4)
                               for n in stage_gflops if stages_ms.get(n, 0) > 0 and stage_gflops[n] > 0},
        'gemm': {'size': peak_before['gemm_size'], 'dtype': peak_before['gemm_dtype'],
                 'gflops_before': peak_before['peak_gflops'], 'gflops_after': peak_after['peak_gflops']},
        'interleaved_gemm': ({'size': small_gemm, 'gflops_median': statistics.median(interleaved),
                              'gflops_max': max(interleaved),
                              'utilization': gflops * fps / statistics.median(interleaved),
                              'utilization_best_frame': gflops * (1000.0 / min(latencies)) / max(interleaved)}
                             if interleaved else None),
        'detections_per_frame': detections / args.frames,
        'load_average': list(os.getloadavg()) if hasattr(os, 'getloadavg') else None,
        'cpu_count': os.cpu_count(), 'torch': torch.__version__, 'python': platform.python_version(),
        'machine': platform.machine(), 'timestamp': time.strftime('%Y-%m-%dT%H:%M:%S'),
    }
    if args.memory_frames > 0:
        result['memory'] = stream_memory(step, args.memory_frames, args.memory_samples, device)
    return result


def stream_memory(step, frames, samples=100, device=None):
    """Run `frames` steps, sampling memory every frames/samples steps; summary (+ CUDA) and the samples."""
    import gc
    gc.collect()
    every = max(1, frames // max(1, samples))
    series = [(0, read_memory(device))]
    start = time.perf_counter()
    for index in range(1, frames + 1):
        step()
        if index % every == 0 or index == frames:
            series.append((index, read_memory(device)))
    out = {'frames': frames, 'seconds': round(time.perf_counter() - start, 2),
           'rss': memory_summary(series, key='rss_mib'),
           'samples': [[f, round(s['rss_mib'], 3)] for f, s in series]}
    if device is not None and device.type == 'cuda':
        out['cuda_allocated'] = memory_summary(series, key='cuda_allocated_mib', tolerance_mib=1.0,
                                               tolerance_fraction=0.0)
        out['cuda_reserved'] = memory_summary(series, key='cuda_reserved_mib', tolerance_mib=16.0,
                                              tolerance_fraction=0.0)
    return out


def device_name(device):
    import torch
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as handle:
            for line in handle:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- report --------------------------------------------------------------------------------------------------------
def format_table(result):
    lines = [f"seqpose bench: config {result['config']}, mode {result['mode']}, device {result['device']} "
             f"({result['device_name']}, {result['threads']} threads, {result['dtype']}"
             f"{', compiled' if result['compiled'] else ''}), input {result['input_hw'][0]}x{result['input_hw'][1]}",
             f"load average {' '.join(f'{v:.2f}' for v in result['load_average'] or ())}; "
             f"{result['frames']} frames after {result['warmup']} warm-up", '',
             f"  {'stage':<12}{'ms (median)':>12}{'share':>8}{'GFLOPs':>10}{'util':>8}"]
    total = result['latency_ms_median']
    for name, ms in result['stages_ms'].items():
        gf = result['stages_gflops'].get(name)
        util = result['stages_utilization'].get(name)
        lines.append(f"  {name:<12}{ms:>12.3f}{100 * ms / total:>7.1f}%"
                     f"{(f'{gf:10.3f}' if gf is not None else ' ' * 10)}"
                     f"{(f'{100 * util:7.1f}%' if util is not None else '')}")
    lines += ['',
              f"  latency     median {total:.3f} ms, p90 {result['latency_ms_p90']:.3f} ms  ->  "
              f"{result['fps']:.2f} FPS",
              f"  work        {result['gflops_per_frame']:.3f} GFLOPs/frame (analytic) -> "
              f"{result['gflops_per_frame'] * result['fps']:.1f} GFLOP/s achieved",
              f"  machine     {result['peak_gflops']:.1f} GFLOP/s peak ({result['gemm']['dtype']} GEMM "
              f"{result['gemm']['size']}^3, best of before {result['gemm']['gflops_before']:.1f} / after "
              f"{result['gemm']['gflops_after']:.1f})",
              f"  utilization {100 * result['utilization']:.1f}% of the measured GEMM throughput"]
    inter = result.get('interleaved_gemm')
    if inter:
        lines.append(f"              {100 * inter['utilization']:.1f}% against a {inter['size']}^3 GEMM run "
                     f"after every "
                     f"frame (median {inter['gflops_median']:.1f} GFLOP/s; best frame vs best GEMM "
                     f"{100 * inter['utilization_best_frame']:.1f}%)")
    memory = result.get('memory')
    if memory:
        for key in ('rss', 'cuda_allocated', 'cuda_reserved'):
            summary = memory.get(key)
            if not summary:
                continue
            lines.append(f"  memory      {key}: median {summary['first_quarter_median_mib']:.1f} -> "
                         f"{summary['last_quarter_median_mib']:.1f} MiB (first/last quarter), "
                         f"{summary['start_mib']:.1f} -> "
                         f"{summary['end_mib']:.1f} MiB over frames "
                         f"{summary['warm_from_frame']}..{summary['frames']} (max {summary['max_mib']:.1f}), slope "
                         f"{summary['slope_mib_per_1000_frames']:+.3f} MiB/1000 frames: "
                         f"{'FLAT' if summary['flat'] else 'GROWING'}")
    return '\n'.join(lines)


def run(args):
    result = run_benchmark(args)
    print(format_table(result))
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(result, handle, indent=2)
            handle.write('\n')
        print(f'\nwrote {args.json}')
    memory = result.get('memory')
    if memory and not all(memory[k]['flat'] for k in ('rss', 'cuda_allocated') if k in memory):
        print('seqpose bench: memory grows during streaming (see above)', file=sys.stderr)
        return 1
    return 0
