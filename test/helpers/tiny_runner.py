"""A tiny random SeqPose and runners around it: what the runner-level tests share.

tiny = tiny_model()                                  # (config, model); conftest's `tiny` fixture: once per module
runner = make_runner(tiny, mode='single', score_threshold=0.0)
start = tiny_refiner_checkpoint(tmp_path / 'refined.pt')             # for train-crop-scorer
"""

import dataclasses

import torch

from seqpose_core.config import load_config
from seqpose_core.model import build_model, save_checkpoint
from seqpose_core.runner import StreamRunner
from seqpose_core.stages.config import with_settings


def tiny_model():
    """(the `tiny` SeqPoseConfig, a model of it with seed-0 weights)."""
    config = load_config('tiny')
    torch.manual_seed(0)
    return config, build_model(config.model)


def make_runner(tiny, **settings):
    """A CPU StreamRunner of tiny_model's (config, model), its inference settings changed by `settings` (dotted
    names: `make_runner(tiny, mode='single', **{'support_plane.enabled': False})`)."""
    config, model = tiny
    cfg = with_settings(config.inference, settings)
    return StreamRunner(model, cfg, input_size=(config.data.input_height, config.data.input_width), device='cpu')


def tiny_refiner_checkpoint(path, seed=6, **extras):
    """A `tiny` checkpoint with a width-4 pose refiner (no scorer) and score threshold 0, its weights seeded with
    `seed`, saved at `path` with `extras`; returns the path. What train-crop-scorer starts from in the tests."""
    config = load_config('tiny')
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, refiner_width=4),
        inference=dataclasses.replace(config.inference, score_threshold=0.0),
    )
    torch.manual_seed(seed)
    return save_checkpoint(path, build_model(config.model), config, **extras)


def apply_stage(runner, name, detections, camera_motion=None, image_rgb=None, K=None):
    """Run the runner's stage `name` alone on `detections`, as its step does (the stage's state goes back into
    the runner; the threshold after a stage that changes scores applies); returns the detections."""
    import numpy as np

    from seqpose_core.stages.pipeline import FrameContext

    stage = next(stage for stage in runner.stages if stage.name == name)
    image_rgb = image_rgb if image_rgb is not None else np.zeros((4, 4, 3), np.uint8)
    context = FrameContext(image_rgb, np.eye(3) if K is None else K, camera_motion, runner.cfg.mode, runner.device)
    detections, runner.stage_states[name] = stage.apply(detections, context, runner.stage_states[name])
    return runner.above_threshold(detections) if stage.changes_scores else detections
