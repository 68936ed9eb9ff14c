"""A tiny random SeqPose and runners around it: what the runner-level tests share.

    tiny = pytest.fixture(scope='module', name='tiny')(tiny_model)      # (config, model), built once per module
    runner = make_runner(tiny, mode='single', score_threshold=0.0)
    start = tiny_refiner_checkpoint(tmp_path / 'refined.pt')             # for train-crop-scorer
"""
import dataclasses

import torch

from seqpose_core.config import load_config
from seqpose_core.model import build_model, save_checkpoint
from seqpose_core.runner import StreamRunner


def tiny_model():
    """(the `tiny` SeqPoseConfig, a model of it with seed-0 weights)."""
    config = load_config('tiny')
    torch.manual_seed(0)
    return config, build_model(config.model)


def make_runner(tiny, **inference):
    """A CPU StreamRunner of tiny_model's (config, model), its inference settings changed by `inference`."""
    config, model = tiny
    cfg = dataclasses.replace(config.inference, **inference)
    return StreamRunner(model, cfg, input_size=(config.data.input_height, config.data.input_width), device='cpu')


def tiny_refiner_checkpoint(path, seed=6, **extras):
    """A `tiny` checkpoint with a width-4 pose refiner (no scorer) and score threshold 0, its weights seeded with
    `seed`, saved at `path` with `extras`; returns the path. What train-crop-scorer starts from in the tests."""
    config = load_config('tiny')
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, refiner_width=4),
                                 inference=dataclasses.replace(config.inference, score_threshold=0.0))
    torch.manual_seed(seed)
    return save_checkpoint(path, build_model(config.model), config, **extras)
