"""Resuming a run. Training checkpoints are model checkpoints (`seqpose_core.model.save_checkpoint`: model +
config, written to a temporary file and renamed, so a run killed while saving keeps the previous one) with a
`training` entry that holds everything a bit-for-bit resume needs: optimiser, scheduler, grad scaler, step,
the data position and the RNG states (python, numpy, torch, CUDA) of every process. Everything is plain
containers and tensors, so the file loads with `torch.load(weights_only=True)`, and `seqpose eval
--checkpoint` takes it as it is.
"""

import dataclasses
import os
import random
from pathlib import Path

import numpy as np
import torch

TRAINING_STATE_VERSION = 1
CHECKPOINT_NAME = 'checkpoint.pt'  # the latest training checkpoint of a run folder (what --resume reads)


def save_training_checkpoint(path, model, cfg, training_state):
    from seqpose_core.model import save_checkpoint

    return save_checkpoint(path, model, cfg, training={'version': TRAINING_STATE_VERSION, **training_state})


def capture_rng_state():
    """This process's RNG states as plain containers + tensors (weights_only-loadable)."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        'python': random.getstate(),
        'numpy': {
            'keys': torch.from_numpy(keys.astype(np.int64)),
            'position': int(position),
            'has_gauss': int(has_gauss),
            'cached_gaussian': float(cached_gaussian),
        },
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state['numpy']
    np.random.set_state(
        (
            'MT19937',
            numpy_state['keys'].numpy().astype(np.uint32),
            numpy_state['position'],
            numpy_state['has_gauss'],
            numpy_state['cached_gaussian'],
        )
    )
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def load_training_checkpoint(path):
    """The checkpoint dict ('model', 'config', 'training'); FileNotFoundError / ValueError otherwise."""
    from seqpose_core.model import WeightsError, load_checkpoint

    if not os.path.isfile(path):
        raise FileNotFoundError(f'no checkpoint at {path}')
    try:
        checkpoint = load_checkpoint(path)
    except WeightsError as error:
        raise ValueError(str(error)) from None
    training = checkpoint.get('training')
    if not isinstance(training, dict) or training.get('version') != TRAINING_STATE_VERSION:
        raise ValueError(
            f'{path}: a model checkpoint without training state (version {TRAINING_STATE_VERSION}); '
            'it cannot be resumed'
        )
    return checkpoint


def load_run_checkpoint(run_dir):
    """The training checkpoint of run folder `run_dir`, for --resume; TrainingError when there is none."""
    from seqpose_core.train.errors import TrainingError

    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.exists():
        raise TrainingError(f'--resume: no {CHECKPOINT_NAME} in {run_dir}')
    try:
        return load_training_checkpoint(path)
    except ValueError as error:
        raise TrainingError(f'--resume: {error}') from None


def memory_state(memory):
    """A MemoryQueue as plain containers and tensors (weights_only-loadable), for a streaming run's checkpoint."""
    return {
        'num_frames': memory.num_frames,
        'top_k': memory.top_k,
        'batch_size': memory.batch_size,
        'frames': [
            {field.name: getattr(frame, field.name) for field in dataclasses.fields(frame)} for frame in memory.frames
        ],
    }


def memory_from_state(state, device):
    from seqpose_core.model.memory import MemoryFrame, MemoryQueue

    frames = [
        MemoryFrame(**{name: value.to(device) if torch.is_tensor(value) else value for name, value in frame.items()})
        for frame in state['frames']
    ]
    return MemoryQueue(state['num_frames'], state['top_k'], state['batch_size'], frames)
