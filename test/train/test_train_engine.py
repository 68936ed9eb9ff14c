"""`seqpose train` on a small generated scene: the schedule, checkpoints, logs and a bit-for-bit resume."""

import csv

import pytest
import torch

from helpers.generated_scenes import generate_scenes
from seqpose_core.cli import main as seqpose
from seqpose_core.train.optim import lr_factor
from seqpose_core.train.streams import step_kind

# The tiny model with dropout on, so that a resume that lost the RNG state would show.
TINY = [
    '--config',
    'tiny',
    '--no-progress',
    '--set',
    'model.dropout=0.1',
    '--set',
    'train.batch_size=2',
    '--set',
    'train.max_steps=6',
    '--set',
    'train.warmup_steps=2',
    '--set',
    'train.log_every=1',
    '--set',
    'train.checkpoint_every=2',
    '--set',
    'train.num_threads=1',
]


@pytest.fixture(scope='module')
def scene_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    generate_scenes(root, scenes=1, frames=6, size='112x84', split='train', seed=11)
    return root


def parameters(run_dir, name='checkpoint.pt'):
    return torch.load(run_dir / name, map_location='cpu', weights_only=True)


def log_steps(run_dir):
    with open(run_dir / 'train_log.csv', newline='', encoding='utf-8') as stream:
        return [int(row['step']) for row in csv.DictReader(stream)]


def test_resume_continues_bit_for_bit(scene_root, tmp_path):
    # mixed: clips with memory and single-frame batches (the scene's frames) in one run
    mixed = TINY + [
        '--set',
        'train.mode=mixed',
        '--set',
        'train.single_split=real_train',
        '--set',
        'data.clip_length=3',
        '--data',
        str(scene_root),
    ]
    whole, interrupted = tmp_path / 'whole', tmp_path / 'interrupted'
    assert seqpose(['train', *mixed, '--out', str(whole)]) == 0
    assert seqpose(['train', *mixed, '--out', str(interrupted), '--max-steps', '3']) == 0  # "killed" after 3
    after_stop = parameters(interrupted)
    assert after_stop['training']['step'] == 3
    assert seqpose(['train', '--resume', '--data', str(scene_root), '--out', str(interrupted), '--no-progress']) == 0

    expected, resumed = parameters(whole), parameters(interrupted)
    assert resumed['training']['step'] == expected['training']['step'] == 6
    assert expected['model'].keys() == resumed['model'].keys()
    for name, value in expected['model'].items():
        assert torch.equal(value, resumed['model'][name]), name
    # the test can fail: training moved the parameters after the interruption
    assert any(not torch.equal(value, after_stop['model'][name]) for name, value in expected['model'].items())
    # optimiser moments agree as well
    for group_state, resumed_state in zip(
        expected['training']['optimizer']['state'].values(), resumed['training']['optimizer']['state'].values()
    ):
        assert torch.equal(group_state['exp_avg'], resumed_state['exp_avg'])
    assert log_steps(interrupted) == log_steps(whole) == [1, 2, 3, 4, 5, 6]
    assert (whole / 'model.pt').is_file() and not list(whole.glob('*.tmp*'))


def test_resume_needs_a_checkpoint(scene_root, tmp_path, capsys):
    assert seqpose(['train', '--resume', '--data', str(scene_root), '--out', str(tmp_path / 'empty')]) == 1
    assert 'no checkpoint.pt' in capsys.readouterr().err


def test_bad_config_values_are_reported(scene_root, tmp_path, capsys):
    assert (
        seqpose(
            ['train', *TINY, '--data', str(scene_root), '--out', str(tmp_path / 'run'), '--set', 'train.mode=sometimes']
        )
        == 1
    )
    assert 'train.mode' in capsys.readouterr().err
    assert (
        seqpose(
            ['train', *TINY, '--data', str(scene_root), '--out', str(tmp_path / 'run'), '--set', 'train.no_such_key=1']
        )
        == 1
    )
    assert 'no_such_key' in capsys.readouterr().err


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    factors = [lr_factor(step, 100, 10, 0.001, 0.01) for step in range(101)]
    assert factors[0] == pytest.approx(0.001)
    assert factors[10] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:10], factors[1:11]))  # warm-up rises
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))  # cosine falls
    assert factors[55] == pytest.approx(0.01 + 0.99 * 0.5)  # half-way
    assert factors[100] == pytest.approx(0.01)


def test_mixed_mode_interleaves_at_the_configured_ratio():
    kinds = [step_kind(step, 'mixed', 0.25) for step in range(400)]
    assert kinds.count('single') == 100
    assert kinds[:4].count('single') == 1
    assert set(step_kind(step, 'video', 0.25) for step in range(10)) == {'video'}


def test_periodic_validation_writes_nocs_metrics(scene_root, tmp_path):
    run = tmp_path / 'run'
    assert (
        seqpose(
            [
                'train',
                *TINY,
                '--data',
                str(scene_root),
                '--out',
                str(run),
                '--max-steps',
                '4',
                '--set',
                'train.val_every=2',
                '--set',
                'train.val_split=real_train',
                '--set',
                'train.video_split=real_train',
                '--set',
                'data.clip_length=2',
            ]
        )
        == 0
    )
    with open(run / 'val_log.csv', newline='', encoding='utf-8') as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row['step']) for row in rows] == [2, 4]
    assert all(0.0 <= float(row['IoU25']) <= 100.0 for row in rows if row['IoU25'] != 'nan')
    assert (run / 'val' / 'step_0000002' / 'metrics.json').is_file()


def test_sampling_offsets_and_anchor_positions_learn_slower():
    from seqpose_core.config import load_config
    from seqpose_core.model import build_model
    from seqpose_core.train.optim import parameter_groups

    cfg = load_config('tiny')
    cfg.train.lr, cfg.train.backbone_lr_mult, cfg.train.sampling_lr_mult = 1e-3, 0.5, 0.1
    model = build_model(cfg.model)
    groups = parameter_groups(model, cfg.train)
    lr_of = {id(parameter): group['lr'] for group in groups for parameter in group['params']}
    named = dict(model.named_parameters())
    assert lr_of[id(named['decoder.anchors.reference_points'])] == pytest.approx(1e-4)
    assert lr_of[id(named['decoder.layers.0.geometry_attention.sampling_offsets.weight'])] == pytest.approx(1e-4)
    assert lr_of[id(named['decoder.layers.0.geometry_attention.attention_weights.weight'])] == pytest.approx(1e-3)
    assert lr_of[id(named['encoder.patch_embed.proj.weight'])] == pytest.approx(5e-4)
    assert len(lr_of) == len(named)
    # multiplier 1: the sampling parameters join the head's groups (the optimiser layout of older runs)
    cfg.train.sampling_lr_mult = 1.0
    assert {group['name'] for group in parameter_groups(model, cfg.train)} <= {
        'backbone/decay',
        'backbone/no_decay',
        'head/decay',
        'head/no_decay',
    }


@pytest.mark.parametrize('oracle', [False, True])
def test_validation_gives_the_runner_no_ground_truth_unless_the_oracle_is_named(
    scene_root, tmp_path, monkeypatch, oracle
):
    from seqpose_core.config import load_config
    from seqpose_core.train import validation
    from seqpose_core.train.engine import build_trainer

    seen = []

    def evaluate_model(model, cfg, data_root, split, mode, out_dir, **options):
        seen.append((mode, options['camera_motion']))
        return {'mean': {'IoU25': 1.0}}

    monkeypatch.setattr(validation, 'evaluate_model', evaluate_model)
    cfg = load_config(
        'tiny',
        {'train': {'batch_size': 2, 'val_every': 1, 'val_split': 'real_train', 'val_oracle_camera_motion': oracle}},
    )
    trainer = build_trainer(cfg, scene_root, tmp_path / 'run', progress=False)
    try:
        assert trainer.validate()['IoU25'] == 1.0
    finally:
        trainer.group.close()
    assert seen == [('mf', 'gt' if oracle else 'none')]


def test_warm_start_loads_the_weights_and_starts_a_fresh_schedule(scene_root, tmp_path):
    """train.init_weights: a new run starts from an earlier run's model (a warm restart), step 0, new lr."""
    base = TINY + ['--data', str(scene_root), '--set', 'train.mode=single', '--set', 'train.single_split=real_train']
    first, warm = tmp_path / 'first', tmp_path / 'warm'
    assert seqpose(['train', *base, '--out', str(first)]) == 0
    # lr 0: one step leaves the weights as they started (the checkpoint is written at the stop)
    frozen = ['--max-steps', '1', '--set', 'train.lr=0.0']
    assert (
        seqpose(['train', *base, *frozen, '--out', str(warm), '--set', f'train.init_weights={first / "model.pt"}']) == 0
    )
    trained = parameters(first, 'model.pt')['model']
    started = parameters(warm)
    assert started['training']['step'] == 1
    for name, value in trained.items():
        assert torch.equal(value, started['model'][name]), name
    cold = tmp_path / 'cold'
    assert seqpose(['train', *base, *frozen, '--out', str(cold)]) == 0
    assert any(not torch.equal(value, parameters(cold)['model'][name]) for name, value in trained.items())
    assert (
        seqpose(
            ['train', *base, '--out', str(tmp_path / 'bad'), '--set', f'train.init_weights={tmp_path / "missing.pt"}']
        )
        != 0
    )


def test_warm_start_into_a_grown_model_keeps_the_new_part_initialised(scene_root, tmp_path):
    """init_weights from a run without depth guidance into a run with it: the shared tensors are the earlier run's,
    the guidance tensors start from their own initialisation; a model of another shape is refused."""
    base = TINY + ['--data', str(scene_root), '--set', 'train.mode=single', '--set', 'train.single_split=real_train']
    first, warm = tmp_path / 'first', tmp_path / 'warm'
    assert seqpose(['train', *base, '--out', str(first), '--set', 'model.depth_guidance=false']) == 0
    frozen = ['--max-steps', '1', '--set', 'train.lr=0.0', '--set', 'model.depth_guidance=true']
    assert (
        seqpose(['train', *base, *frozen, '--out', str(warm), '--set', f'train.init_weights={first / "model.pt"}']) == 0
    )
    trained = parameters(first, 'model.pt')['model']
    started = parameters(warm)['model']
    new = sorted(set(started) - set(trained))
    assert new and all('depth' in name for name in new), new
    for name, value in trained.items():
        assert torch.equal(value, started[name]), name
    wider = ['--set', 'model.hidden_dim=48', '--set', 'model.depth_guidance=false']
    assert (
        seqpose(
            [
                'train',
                *base,
                *frozen[:2],
                *wider,
                '--out',
                str(tmp_path / 'wider'),
                '--set',
                f'train.init_weights={first / "model.pt"}',
            ]
        )
        != 0
    )


@pytest.mark.parametrize('proposal_queries, expected', [(4, 'proposal'), (0, 'query')])
def test_training_memory_ranks_by_the_scores_inference_publishes(
    scene_root, tmp_path, monkeypatch, proposal_queries, expected
):
    """The clip's memory keeps its top-K by inference.score_fusion, as the runner's memory does; a model without
    proposal queries falls back to its query scores."""
    from seqpose_core.config import load_config
    from seqpose_core.model.seqpose import SeqPose
    from seqpose_core.train.engine import build_trainer

    seen = []
    forward = SeqPose.forward

    def recording_forward(self, *args, **kwargs):
        seen.append(kwargs.get('score_fusion', 'query'))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(SeqPose, 'forward', recording_forward)
    cfg = load_config(
        'tiny',
        {
            'model': {'proposal_queries': proposal_queries},
            'train': {'batch_size': 1, 'streaming': False, 'num_threads': 1},
            'inference': {'score_fusion': 'proposal'},
        },
    )
    trainer = build_trainer(cfg, scene_root, tmp_path / 'run', progress=False)
    try:
        trainer.train_step('video', trainer.streams['video'].next())
    finally:
        trainer.group.close()
    assert seen and set(seen) == {expected}, seen


def test_a_model_with_azimuth_bins_trains_and_logs_the_azimuth_term(scene_root, tmp_path):
    run = tmp_path / 'bins'
    assert (
        seqpose(
            [
                'train',
                *TINY,
                '--set',
                'model.azimuth_bins=8',
                '--set',
                'data.clip_length=2',
                '--set',
                'train.max_steps=2',
                '--data',
                str(scene_root),
                '--out',
                str(run),
            ]
        )
        == 0
    )
    with open(run / 'train_log.csv', newline='', encoding='utf-8') as stream:
        rows = list(csv.DictReader(stream))
    assert rows and all(float(row['loss_azimuth']) > 0 for row in rows)
    state = parameters(run, 'model.pt')['model']
    assert any('azimuth_bins' in name for name in state)
