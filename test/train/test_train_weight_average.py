"""The moving average of the weights (train.ema_decay): its arithmetic, and a run that validates, ships and
resumes with it."""

import pytest
import torch
from torch import nn

from helpers.generated_scenes import generate_scenes
from seqpose_core.cli import main as seqpose
from seqpose_core.train.weight_average import WeightAverage


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_average_follows_the_ramped_decay_and_leaves_integer_buffers_to_the_model():
    model = small_model()
    start = model[0].weight.detach().clone()
    average = WeightAverage(model, decay=0.9)
    expected = start.clone()
    for step in range(1, 301):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        model[1].num_batches_tracked += 1
        average.update(model)
        decay = min(0.9, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * (start + step)
    torch.testing.assert_close(average.state['0.weight'], expected)
    # the ramp ends after 80 updates; then the average lags the weights by decay / (1 - decay) = 9 steps of +1
    lag = (model[0].weight - average.state['0.weight']).mean().item()
    assert 8.0 < lag < 10.0
    assert int(average.state['1.num_batches_tracked']) == 300


def test_applied_swaps_the_average_in_and_the_weights_back():
    model = small_model()
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model[0].bias.fill_(3.0)
    average.update(model)
    own = model[0].bias.detach().clone()
    with average.applied(model):
        torch.testing.assert_close(model[0].bias, average.state['0.bias'])
        assert not torch.equal(model[0].bias, own)
    assert torch.equal(model[0].bias, own)


def test_state_round_trips_and_bad_values_are_refused():
    model = small_model()
    average = WeightAverage(model, decay=0.99)
    average.update(model)
    restored = WeightAverage(small_model(), decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.decay == 0.99 and restored.updates == 1
    for name, value in average.state.items():
        assert torch.equal(value, restored.state[name])
    with pytest.raises(ValueError, match='ema_decay'):
        WeightAverage(model, decay=1.0)
    with pytest.raises(ValueError, match='does not fit'):
        WeightAverage(nn.Linear(3, 4), decay=0.5).load_state_dict(average.state_dict())


TINY = [
    '--config',
    'tiny',
    '--no-progress',
    '--set',
    'train.batch_size=2',
    '--set',
    'train.max_steps=6',
    '--set',
    'train.warmup_steps=2',
    '--set',
    'train.checkpoint_every=2',
    '--set',
    'train.num_threads=1',
    '--set',
    'train.mode=single',
    '--set',
    'train.single_split=real_train',
    '--set',
    'train.ema_decay=0.8',
]


@pytest.fixture(scope='module')
def scene_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    generate_scenes(root, scenes=1, frames=4, size='112x84', split='train', seed=12)
    return root


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def test_a_run_ships_the_average_and_resumes_it_bit_for_bit(scene_root, tmp_path):
    run = TINY + ['--data', str(scene_root)]
    whole, interrupted = tmp_path / 'whole', tmp_path / 'interrupted'
    assert seqpose(['train', *run, '--out', str(whole)]) == 0
    assert seqpose(['train', *run, '--out', str(interrupted), '--max-steps', '3']) == 0
    assert seqpose(['train', '--resume', '--data', str(scene_root), '--out', str(interrupted), '--no-progress']) == 0
    shipped, last = load(whole / 'model.pt')['model'], load(whole / 'model_last.pt')['model']
    checkpoint = load(whole / 'checkpoint.pt')
    average = checkpoint['training']['weight_average']
    assert average['updates'] == 6
    for name, value in shipped.items():
        assert torch.equal(value, average['state'][name]), name
        assert torch.equal(last[name], checkpoint['model'][name]), name
    assert any(value.is_floating_point() and not torch.equal(value, last[name]) for name, value in shipped.items())
    resumed = load(interrupted / 'model.pt')['model']
    for name, value in shipped.items():
        assert torch.equal(value, resumed[name]), name


def test_a_bad_decay_is_reported(scene_root, tmp_path, capsys):
    assert (
        seqpose(
            ['train', *TINY, '--data', str(scene_root), '--out', str(tmp_path / 'bad'), '--set', 'train.ema_decay=1.5']
        )
        != 0
    )
    assert 'train.ema_decay must be in [0, 1)' in capsys.readouterr().err
