"""A tiny random SeqPose and runners around it: what the runner-level tests share.

    tiny = pytest.fixture(scope='module', name='tiny')(tiny_model)      # (config, model), built once per module
    runner = make_runner(tiny, mode='single', score_threshold=0.0)
"""
import dataclasses

import torch

from seqpose_core.config import load_config
from seqpose_core.model import build_model
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
