"""Live replay: a from-nocs bag played at its recorded rate into a real `seqpose_node` subprocess, the node's
output recorded and scored. Runs only inside a private network namespace (the Makefile's `unshare -n`)."""

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.bags import FRAMES, SCENES, generate_scenes, tiny_checkpoint
from seqpose_core.bag.from_nocs import write_nocs_bag
from seqpose_core.bag.live import live_replay
from seqpose_core.eval.results_io import load_result_file


def _isolation_problem():
    try:
        from helpers.ros_harness import ros_isolation_problem
    except ImportError as error:  # rclpy / the node package not importable here
        return f'ROS 2 Python packages unavailable: {error}'
    return ros_isolation_problem()


pytestmark = pytest.mark.skipif(bool(_isolation_problem()), reason=_isolation_problem() or 'isolated')


def test_live_replay_reports_latency_drops_and_map_loss(tmp_path):
    root = generate_scenes(tmp_path / 'scenes')
    checkpoint = tiny_checkpoint(tmp_path / 'tiny.pt')
    bag = tmp_path / 'scenes_bag'
    write_nocs_bag([root / 'Real' / 'test'], bag, progress=False)

    report = live_replay(bag, tmp_path / 'live', checkpoint=checkpoint, mode='mf', startup_timeout=90)

    assert report.images_published == FRAMES * SCENES
    assert 0 < report.detections_received <= report.images_published
    assert report.dropped_frames == report.images_published - report.detections_received
    assert report.latency_ms['count'] == report.detections_received
    assert 0 < report.latency_ms['median'] <= report.latency_ms['max'] < 10_000
    assert report.deterministic_metrics and report.live_metrics and report.map_loss
    # The node runs the same StreamRunner on the same pixels, K and stamp gaps. Every frame it answered before
    # its first dropped frame saw the same memory as the deterministic replay, so it published the same
    # detections (to the float32 of the messages). A dropped frame changes the memory of the frames after it
    # (they are counted, not compared); the first frame of the bag is answered on any machine (the node is idle).
    deterministic = {p.name: p for p in Path(report.outputs['deterministic'], 'results').glob('*.pkl')}
    answered = {p.name: p for p in Path(report.outputs['answered'], 'results').glob('*.pkl')}
    assert len(deterministic) == report.images_published and len(answered) == report.detections_received
    dropped = sorted(set(deterministic) - set(answered))
    assert len(dropped) == report.dropped_frames
    compared = [name for name in sorted(answered) if not dropped or name < dropped[0]]
    assert compared and compared[0] == min(deterministic)
    for name in compared:
        (live,), (reference,) = load_result_file(answered[name]), load_result_file(deterministic[name])
        np.testing.assert_array_equal(live['pred_class_ids'], reference['pred_class_ids'], err_msg=name)
        for key in ('pred_scores', 'pred_RTs', 'pred_scales'):
            np.testing.assert_allclose(live[key], reference[key], atol=1e-5, err_msg=f'{name} {key}')
    if not dropped:
        assert all(abs(loss) < 1e-9 for loss in report.map_loss.values()), report.map_loss
    saved = json.loads((tmp_path / 'live' / 'live_report.json').read_text())
    assert saved['dropped_frames'] == report.dropped_frames and 'skipped' in saved
    assert 'latency' in report.format() and 'mAP loss' in report.format()
