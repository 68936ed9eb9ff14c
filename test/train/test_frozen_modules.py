"""train.frozen_modules: the named parts keep their weights and BatchNorm statistics while the rest trains."""

import pytest
import torch

from helpers.generated_scenes import generate_scenes
from seqpose_core.cli import main as seqpose
from seqpose_core.config import load_config
from seqpose_core.model.seqpose import build_model
from seqpose_core.train.errors import TrainingError
from seqpose_core.train.frozen import freeze_modules, set_training_mode

TINY = [
    '--config',
    'tiny',
    '--no-progress',
    '--set',
    'model.patch_stem=conv',
    '--set',
    'train.batch_size=2',
    '--set',
    'train.max_steps=3',
    '--set',
    'train.warmup_steps=1',
    '--set',
    'train.lr=1e-2',
    '--set',
    'train.num_threads=1',
    '--set',
    'train.video_split=real_train',
    '--set',
    'data.clip_length=2',
]


@pytest.fixture(scope='module')
def scene_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    generate_scenes(root, scenes=1, frames=4, size='112x84', split='train', seed=12)
    return root


def state(run_dir, name):
    return torch.load(run_dir / name, map_location='cpu', weights_only=True)['model']


def test_frozen_parts_keep_weights_and_batchnorm_statistics(scene_root, tmp_path):
    start = tmp_path / 'start'
    assert (
        seqpose(
            [
                'train',
                *TINY,
                '--data',
                str(scene_root),
                '--out',
                str(start),
                '--set',
                'train.max_steps=1',
                '--set',
                'train.lr=0.0',
            ]
        )
        == 0
    )
    frozen = ['encoder', 'depth_head', 'fusion', 'dense_heads']
    run = tmp_path / 'frozen'
    # validation in the middle: it must hand the model back with the frozen parts still in eval mode
    assert (
        seqpose(
            [
                'train',
                *TINY,
                '--data',
                str(scene_root),
                '--out',
                str(run),
                '--set',
                f'train.init_weights={start / "model.pt"}',
                '--set',
                f'train.frozen_modules=[{",".join(frozen)}]',
                '--set',
                'train.val_every=1',
                '--set',
                'train.val_split=real_train',
            ]
        )
        == 0
    )
    before, after = state(start, 'model.pt'), state(run, 'model.pt')
    stem_statistics = [name for name in before if name.startswith('encoder.') and name.endswith('running_mean')]
    assert stem_statistics, 'the conv stem has BatchNorm statistics to check'
    for name, value in before.items():
        if name.split('.')[0] in frozen:
            assert torch.equal(value, after[name]), name
    assert any(not torch.equal(value, after[name]) for name, value in before.items() if name.startswith('decoder.')), (
        'the decoder trained'
    )


def test_a_part_the_model_lacks_is_refused_by_name():
    model = build_model(load_config('tiny').model, load_pretrained=False)
    with pytest.raises(TrainingError, match=r"frozen_modules: \['backbone'\].*encoder"):
        freeze_modules(model, ['backbone'])
    freeze_modules(model, ['encoder'])
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    set_training_mode(model, ['encoder'])
    assert not model.encoder.training and model.decoder.training and model.training
