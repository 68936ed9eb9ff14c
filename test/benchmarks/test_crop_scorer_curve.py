"""benchmarks/crop_scorer_curve.py: points over kept detections, each from a fresh head."""

import csv
import runpy

import pytest

from helpers.generated_scenes import generate_scenes
from helpers.tiny_runner import tiny_refiner_checkpoint
from seqpose_core.cli import main as seqpose

pytest.importorskip('matplotlib')


def test_points_grow_with_the_scenes_and_ignore_the_checkpoints_own_scorer(tmp_path, capsys):
    root = tmp_path / 'scenes'
    generate_scenes(root, scenes=2, frames=3, size='160x120', split='test', seed=9, objects='3-4')
    start = tiny_refiner_checkpoint(tmp_path / 'refined.pt')
    collected = tmp_path / 'collected'
    assert (
        seqpose(
            [
                'train-crop-scorer',
                '--checkpoint',
                str(start),
                '--data',
                str(root),
                '--split',
                'real_test',
                '--val-data',
                str(root),
                '--keep-detections',
                '--epochs',
                '3',
                '--batch-size',
                '8',
                '--out',
                str(collected),
                '--no-progress',
            ]
        )
        == 0
    )
    main = runpy.run_path('benchmarks/crop_scorer_curve.py')['main']

    def points(checkpoint, out):
        assert (
            main(
                [
                    '--checkpoint',
                    str(checkpoint),
                    '--detections',
                    str(collected / 'detections.pt'),
                    '--val-detections',
                    str(collected / 'val_detections.pt'),
                    '--scenes',
                    '1',
                    '2',
                    '5',
                    '--epochs',
                    '1',
                    '2',
                    '--batch-size',
                    '8',
                    '--out',
                    str(out),
                ]
            )
            == 0
        )
        with open(out / 'curve.csv', encoding='utf-8') as stream:
            return list(csv.DictReader(stream))

    rows = points(start, tmp_path / 'curve')
    assert [(row['epochs'], row['scenes']) for row in rows] == [('1', '1'), ('1', '2'), ('2', '1'), ('2', '2')]
    assert 0 < int(rows[0]['detections']) < int(rows[1]['detections'])
    assert '5 scenes: the detections hold 2; skipped' in capsys.readouterr().err
    assert (tmp_path / 'curve' / 'curve.png').stat().st_size > 0
    # the scored checkpoint (same refiner, its scorer trained above) gives the very same points
    assert points(collected / 'model.pt', tmp_path / 'again') == rows
