"""Streaming video training and camera motion in training.

- Streaming (train.streaming): each step is one frame of each batch slot's sequence, the memory the model
  returned at the previous step is carried into the next, and it starts empty where the sequences (here: the
  scenes) start; a run interrupted in mid-sequence resumes bit for bit.
- Camera motion: the model is given a frame's motion only where `has_camera_motion` says there is one, and
  `train.camera_motion_dropout` withholds it on that fraction of the sequences.
"""

import pytest
import torch

from helpers.generated_scenes import generate_scenes
from seqpose_core.cli import main as seqpose
from seqpose_core.config import load_config
from seqpose_core.train.camera_motion import model_camera_motion, withheld_sequences, withhold_camera_motion
from seqpose_core.train.engine import build_trainer

FRAMES = 4
TINY = {
    'model': {'dropout': 0.1},
    'train': {
        'batch_size': 2,
        'warmup_steps': 2,
        'log_every': 1,
        'checkpoint_every': 2,
        'num_threads': 1,
        'video_split': 'real_train',
    },
}


@pytest.fixture(scope='module')
def two_scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    generate_scenes(root, scenes=2, frames=FRAMES, size='112x84', split='train', seed=21)
    return root


def tiny_config(**train):
    overrides = {'model': dict(TINY['model']), 'train': {**TINY['train'], **train}}
    return load_config('tiny', overrides)


def record(trainer):
    """Wrap the trainer's model call and its video stream: per step the memory given, the memory returned, the
    camera motion given, and the (scene, frame) of every slot."""
    calls, batches = [], []
    model, stream = trainer.ddp_model, trainer.streams['video']

    def forward(images, K, memory=None, camera_motion=None, dense=True, score_fusion='query'):
        outputs, new_memory = model(
            images, K, memory=memory, camera_motion=camera_motion, dense=dense, score_fusion=score_fusion
        )
        calls.append({'memory': memory, 'returned': new_memory, 'camera_motion': camera_motion})
        return outputs, new_memory

    def next_batch(next_batch=stream.next):
        batch = next_batch()
        frames = batch if isinstance(batch, list) else [batch]
        batches.append([list(zip(frame['scene'], frame['frame'])) for frame in frames])
        return batch

    trainer.ddp_model = forward
    stream.next = next_batch
    return calls, batches


def run(trainer):
    try:
        return trainer.run()
    finally:
        trainer.group.close()


def test_streaming_carries_the_memory_across_steps_and_resets_it_at_scene_starts(two_scenes, tmp_path):
    cfg = tiny_config(streaming=True, stream_length=FRAMES, max_steps=2 * FRAMES)
    trainer = build_trainer(cfg, two_scenes, tmp_path / 'run', progress=False)
    calls, batches = record(trainer)
    assert run(trainer) == 2 * FRAMES
    assert len(calls) == len(batches) == 2 * FRAMES  # one frame batch per step
    for step, call in enumerate(calls):
        slots = batches[step][0]
        assert [frame for _, frame in slots] == [f'{step % FRAMES:04d}'] * 2  # every slot walks its scene
        if step % FRAMES == 0:  # a scene starts: empty memory
            assert call['memory'].is_empty() and call['camera_motion'] is None
        else:  # the last step's memory, carried
            assert call['memory'] is calls[step - 1]['returned'] and not call['memory'].is_empty()
            assert [scene for scene, _ in slots] == [scene for scene, _ in batches[step - 1][0]]
            assert call['camera_motion'] is not None
    assert {scene for scene, _ in batches[0][0]} == {'scene_1', 'scene_2'}
    assert all(not returned.requires_grad for call in calls for returned in [call['returned'].features])


def test_streaming_run_resumes_bit_for_bit_in_mid_sequence(two_scenes, tmp_path):
    args = ['--config', 'tiny', '--no-progress', '--data', str(two_scenes)]
    for section, values in TINY.items():
        args += [item for key, value in values.items() for item in ('--set', f'{section}.{key}={value}')]
    args += [
        '--set',
        'train.streaming=true',
        '--set',
        f'train.stream_length={FRAMES}',
        '--set',
        'train.max_steps=6',
        '--set',
        'train.camera_motion_dropout=0.5',
    ]
    whole, interrupted = tmp_path / 'whole', tmp_path / 'interrupted'
    assert seqpose(['train', *args, '--out', str(whole)]) == 0
    assert seqpose(['train', *args, '--out', str(interrupted), '--max-steps', '2']) == 0  # step 2 of 4
    stopped = torch.load(interrupted / 'checkpoint.pt', map_location='cpu', weights_only=True)['training']
    assert stopped['data_position']['video']['time'] == 2 and len(stopped['stream_memory'][0]['frames']) == 2
    assert seqpose(['train', '--resume', '--data', str(two_scenes), '--out', str(interrupted), '--no-progress']) == 0
    expected = torch.load(whole / 'checkpoint.pt', map_location='cpu', weights_only=True)
    resumed = torch.load(interrupted / 'checkpoint.pt', map_location='cpu', weights_only=True)
    assert resumed['training']['step'] == expected['training']['step'] == 6
    for name, value in expected['model'].items():
        assert torch.equal(value, resumed['model'][name]), name
    for frame, resumed_frame in zip(
        expected['training']['stream_memory'][0]['frames'], resumed['training']['stream_memory'][0]['frames']
    ):
        assert all(torch.equal(frame[key], resumed_frame[key]) for key in ('features', 'reference_points'))


def test_camera_motion_reaches_the_model_only_where_the_frame_has_one():
    motion = torch.eye(4).repeat(3, 1, 1)
    motion[:, 0, 3] = torch.tensor([0.1, 0.2, 0.3])
    frame = {'camera_motion': motion, 'has_camera_motion': torch.tensor([False, False, False])}
    assert model_camera_motion(frame, 'cpu') is None  # a motion in the batch, but not known
    frame['has_camera_motion'] = torch.tensor([True, False, True])
    given = model_camera_motion(frame, 'cpu')
    assert given[:, 0, 3].tolist() == pytest.approx([0.1, 0.0, 0.3])
    assert torch.equal(given[1], torch.eye(4))


def test_camera_motion_dropout_withholds_whole_sequences_reproducibly():
    draws = withheld_sequences(seed=3, epoch=1, position=7, batch_size=4000, fraction=0.3)
    assert abs(draws.float().mean().item() - 0.3) < 0.03
    assert torch.equal(draws, withheld_sequences(3, 1, 7, 4000, 0.3))
    assert not torch.equal(draws, withheld_sequences(3, 1, 8, 4000, 0.3))
    assert not withheld_sequences(3, 1, 7, 10, 0.0).any() and withheld_sequences(3, 1, 7, 10, 1.0).all()
    clip = [
        {'camera_motion': torch.full((2, 4, 4), 2.0), 'has_camera_motion': torch.tensor([True, True])} for _ in range(3)
    ]
    clip = withhold_camera_motion(clip, torch.tensor([False, True]))
    for frame in clip:  # every frame of the withheld sequence
        assert frame['has_camera_motion'].tolist() == [True, False]
        assert torch.equal(frame['camera_motion'][1], torch.eye(4)) and frame['camera_motion'][0].eq(2).all()


@pytest.mark.parametrize('dropout', [0.0, 1.0])
def test_clip_training_withholds_camera_motion_at_the_configured_rate(two_scenes, tmp_path, dropout):
    cfg = tiny_config(max_steps=2, camera_motion_dropout=dropout)
    cfg.data.clip_length = 3
    trainer = build_trainer(cfg, two_scenes, tmp_path / 'run', progress=False)
    calls, _ = record(trainer)
    run(trainer)
    given = [call['camera_motion'] is not None for call in calls]
    assert len(given) == 2 * 3 and not any(given[0::3])  # never at a clip's first frame
    assert all(given[1::3] + given[2::3]) if dropout == 0.0 else not any(given)
