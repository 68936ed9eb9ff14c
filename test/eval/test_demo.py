"""`seqpose demo`, the README's main job, end to end on a small generated video: SF, MF, MF with odometry and
the class-mean reference of the same frames are printed, and metrics.json is written for each run."""

import json

from seqpose_core.cli import main as seqpose


def test_demo_runs_end_to_end_on_the_embedded_model(tmp_path, capsys):
    out = tmp_path / 'demo'
    assert seqpose(['demo', '--out', str(out), '--scenes', '1', '--frames', '3', '--size', '160x120']) == 0
    printed = capsys.readouterr().out
    for row in ('sf ', 'mf ', 'mf_odometry', 'class-mean reference'):
        assert any(line.startswith(row) for line in printed.splitlines()), row
    for mode in ('sf', 'mf', 'mf_odometry'):
        assert set(json.loads((out / mode / 'metrics.json').read_text())['mean']) >= {'IoU50', '10deg10cm'}
