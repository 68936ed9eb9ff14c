"""Measurements for benchmarks: percentiles, the machine's own GEMM throughput (the yardstick that survives a
noisy shared machine), process memory over a long stream and its trend, torch threads."""

import math
import os
import platform
import statistics
import time


def percentile(values, q):
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * q / 100.0
    low = int(math.floor(position))
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def synchronize(device):
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
        torch.matmul(a, b, out=out)  # warm-up (thread pool, BLAS dispatch, CUDA kernels)
        synchronize(device)
        best = float('inf')
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
    return {
        'peak_gflops': 2.0 * size**3 / best / 1e9,
        'gemm_size': size,
        'gemm_dtype': str(dtype).replace('torch.', ''),
        'gemm_seconds': best,
    }


def read_memory(device=None):
    """{'rss_mib': ...} (+ CUDA allocated/reserved MiB on a GPU)."""
    try:
        import psutil

        rss = psutil.Process(os.getpid()).memory_info().rss
    except ImportError:
        with open('/proc/self/statm') as handle:
            rss = int(handle.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    sample = {'rss_mib': rss / 2**20}
    if device is not None and device.type == 'cuda':
        import torch

        sample['cuda_allocated_mib'] = torch.cuda.memory_allocated(device) / 2**20
        sample['cuda_reserved_mib'] = torch.cuda.memory_reserved(device) / 2**20
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
    slope = linear_slope(frames, values)  # MiB per frame
    growth = slope * (frames[-1] - frames[0])
    quarter = max(1, len(values) // 4)
    first, last = statistics.median(values[:quarter]), statistics.median(values[-quarter:])
    tolerance = max(tolerance_mib, tolerance_fraction * first)
    return {
        'key': key,
        'warm_from_frame': frames[0],
        'frames': last_frame,
        'start_mib': round(values[0], 2),
        'end_mib': round(values[-1], 2),
        'max_mib': round(max(values), 2),
        'min_mib': round(min(values), 2),
        'first_sample_mib': round(samples[0][1][key], 2),
        'first_quarter_median_mib': round(first, 2),
        'last_quarter_median_mib': round(last, 2),
        'slope_mib_per_1000_frames': round(slope * 1000, 4),
        'fitted_growth_mib': round(growth, 3),
        'flat': bool(growth < tolerance and last - first < tolerance),
        'tolerance_mib': round(tolerance, 2),
    }


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
    out = {
        'frames': frames,
        'seconds': round(time.perf_counter() - start, 2),
        'rss': memory_summary(series, key='rss_mib'),
        'samples': [[f, round(s['rss_mib'], 3)] for f, s in series],
    }
    if device is not None and device.type == 'cuda':
        out['cuda_allocated'] = memory_summary(
            series, key='cuda_allocated_mib', tolerance_mib=1.0, tolerance_fraction=0.0
        )
        out['cuda_reserved'] = memory_summary(
            series, key='cuda_reserved_mib', tolerance_mib=16.0, tolerance_fraction=0.0
        )
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
