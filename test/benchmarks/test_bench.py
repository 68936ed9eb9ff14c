"""`seqpose bench` on the tiny config: the JSON carries every key and its numbers agree with each other."""

import json
import math

import pytest

from seqpose_core.cli import main
from seqpose_core.measure import linear_slope, memory_summary, percentile

KEYS = (
    'config',
    'device',
    'mode',
    'latency_ms_median',
    'latency_ms_p90',
    'fps',
    'gflops_per_frame',
    'peak_gflops',
    'utilization',
    'stages_ms',
)
STAGES = ('preprocess', 'encoder', 'depth_head', 'fusion', 'stsq', 'pose_head', 'postprocess')


@pytest.mark.parametrize('mode', ['sf', 'mf'])
def test_bench_json_has_all_keys_and_consistent_values(tmp_path, mode, capsys):
    out = tmp_path / 'bench.json'
    assert (
        main(
            [
                'bench',
                '--config',
                'tiny',
                '--frames',
                '3',
                '--warmup',
                '1',
                '--mode',
                mode,
                '--gemm-size',
                '512',
                '--gemm-repeats',
                '2',
                '--threads',
                '1',
                '--json',
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert 'utilization' in printed and 'encoder' in printed
    result = json.loads(out.read_text())
    assert all(key in result for key in KEYS), sorted(set(KEYS) - set(result))
    assert result['config'] == 'tiny' and result['device'] == 'cpu' and result['mode'] == mode
    assert 0 < result['latency_ms_median'] <= result['latency_ms_p90']
    assert math.isclose(result['fps'], 1000.0 / result['latency_ms_median'], rel_tol=1e-3)
    assert result['peak_gflops'] > 0 and result['gflops_per_frame'] > 0
    assert math.isclose(
        result['utilization'], result['gflops_per_frame'] * result['fps'] / result['peak_gflops'], rel_tol=1e-3
    )
    assert set(STAGES) <= set(result['stages_ms']) and all(v >= 0 for v in result['stages_ms'].values())
    # the stages are parts of a frame: their medians cannot add up to much more than the median frame
    assert sum(result['stages_ms'].values()) < 2 * result['latency_ms_p90']
    assert math.isclose(result['gflops_per_frame'], sum(result['stages_gflops'].values()), rel_tol=1e-3)


def test_memory_mode_reports_a_flat_summary(tmp_path):
    out = tmp_path / 'bench.json'
    assert (
        main(
            [
                'bench',
                '--config',
                'tiny',
                '--frames',
                '2',
                '--warmup',
                '1',
                '--gemm-size',
                '256',
                '--threads',
                '1',
                '--no-interleave',
                '--memory-frames',
                '40',
                '--memory-samples',
                '10',
                '--json',
                str(out),
            ]
        )
        == 0
    )
    memory = json.loads(out.read_text())['memory']
    assert memory['frames'] == 40 and len(memory['samples']) == 11
    assert {'start_mib', 'end_mib', 'slope_mib_per_1000_frames', 'flat'} <= set(memory['rss'])


def test_summary_helpers_detect_growth():
    assert percentile([1, 2, 3, 4, 5], 50) == 3 and percentile([1, 2, 3, 4, 5], 90) == pytest.approx(4.6)
    assert linear_slope([0, 1, 2], [1, 3, 5]) == pytest.approx(2.0)
    flat = [(f, {'rss_mib': 100.0 + (0.01 if f % 2 else 0)}) for f in range(0, 1000, 10)]
    leaking = [(f, {'rss_mib': 100.0 + 0.02 * f}) for f in range(0, 1000, 10)]  # 20 MiB per 1000 frames
    assert memory_summary(flat)['flat']
    summary = memory_summary(leaking)
    assert not summary['flat'] and summary['slope_mib_per_1000_frames'] == pytest.approx(20.0, rel=1e-3)
    # the allocator returning big blocks makes RSS jump down and back: noisy, shrinking or not, it is no leak
    noisy = [(f, {'rss_mib': 500.0 - (60.0 if f % 70 == 0 else 0.0) - 0.005 * f}) for f in range(0, 1000, 10)]
    assert memory_summary(noisy)['flat']
    slow_leak = [(f, {'rss_mib': 500.0 + 0.015 * f + (30.0 if f % 30 == 0 else 0.0)}) for f in range(0, 1000, 10)]
    assert not memory_summary(slow_leak)['flat']  # 15 MiB over the run, beyond 2 % of 500 MiB


def test_the_stage_order_names_every_runner_stage():
    """seqpose bench prints the runner's stages in their order: a stage added to the runner is not lost in 'other'."""
    from seqpose_core.commands.bench import STAGE_ORDER
    from seqpose_core.stages.pipeline import STAGES

    names = [stage.name for stage in STAGES]
    assert [name for name in STAGE_ORDER if name in names] == names
