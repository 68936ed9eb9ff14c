"""End to end: the tiny model trained on one generated scene learns it (IoU25 >= 90 through `seqpose eval`).

This proves that matching, losses, the box decoding of the runner and the evaluation agree on every convention
(axes, units, sizes, scales). ~1-2 minutes on a 2-core CPU.
"""

import json

import pytest

from helpers.generated_scenes import generate_scenes
from seqpose_core import CLASS_NAMES
from seqpose_core.cli import main as seqpose
from seqpose_core.data import NocsFrameReader, iter_scenes

STEPS = 300


@pytest.mark.slow
def test_tiny_model_overfits_one_scene(tmp_path):
    data, run, out = tmp_path / 'data', tmp_path / 'run', tmp_path / 'eval'
    generate_scenes(data, scenes=1, frames=8, size='160x120', split='test', seed=3)
    assert (
        seqpose(
            [
                'train',
                '--config',
                'tiny',
                '--data',
                str(data),
                '--out',
                str(run),
                '--no-progress',
                '--set',
                'train.mode=single',
                '--set',
                'train.single_split=real_test',
                '--set',
                f'train.max_steps={STEPS}',
                '--set',
                'train.warmup_steps=20',
                '--set',
                'train.lr=1e-3',
                '--set',
                'train.checkpoint_every=1000',
                '--set',
                'train.log_every=50',
                '--set',
                'data.augment=false',
                # one thread: on a shared 2-core machine two OpenMP threads can run 10x slower
                '--set',
                'train.num_threads=1',
            ]
        )
        == 0
    )
    assert (
        seqpose(
            [
                'eval',
                '--checkpoint',
                str(run / 'model.pt'),
                '--data',
                str(data),
                '--split',
                'test',
                '--mode',
                'sf',
                '--out',
                str(out),
                '--overlays',
                '1',
            ]
        )
        == 0
    )

    metrics = json.loads((out / 'metrics.json').read_text())
    reader = NocsFrameReader(data, 'test')
    present = sorted(
        {
            CLASS_NAMES[class_id - 1]
            for _, prefixes in iter_scenes(data, 'test')
            for prefix in prefixes
            for class_id in reader.read(prefix).annotation.class_ids
        }
    )
    assert len(present) >= 2
    # the mean row averages all six classes, absent ones included; the scene holds only `present`
    for name in present:
        assert metrics[name]['IoU25'] >= 90, (name, metrics[name])
    assert (out / 'ap_curves.png').is_file()
    assert len(list((out / 'results').glob('results_*.pkl'))) == 8
    assert list((out / 'overlays').glob('*.png'))
