"""Validation during training: the NOCS metrics of the current model on the validation split."""

from pathlib import Path

from seqpose_core.data import NocsFormatError, resolve_split
from seqpose_core.eval.run import evaluate_model
from seqpose_core.train.errors import TrainingError
from seqpose_core.train.frozen import set_training_mode
from seqpose_core.train.resume import capture_rng_state, restore_rng_state


def check_validation_data(val_data, train_cfg):
    """Fail at start-up rather than after the first val_every steps."""
    if train_cfg.val_every <= 0:
        return
    try:
        resolve_split(val_data, train_cfg.val_split)
    except NocsFormatError as error:
        raise TrainingError(
            f'validation every {train_cfg.val_every} steps: {error}; pass --val-data DIR or set train.val_every=0'
        ) from None


def validate(model, cfg, val_data, out_dir, device, oracle_camera_motion=False):
    """Metrics ('mean' row, percent) of `model` on cfg.train.val_split of `val_data`, in video mode and, as a
    deployed camera without odometry, with no camera motion (`oracle_camera_motion`: the motion derived from
    the ground truth of the frames being scored, for ablations only); results and metrics.json land in
    out_dir. Neither the model's mode nor the training's random stream changes."""
    rng_state = capture_rng_state()
    model.eval()
    try:
        metrics = evaluate_model(
            model,
            cfg,
            val_data,
            cfg.train.val_split,
            'mf',
            Path(out_dir),
            max_scenes=cfg.train.val_max_scenes or None,
            overlays=0,
            progress=False,
            device=str(device),
            camera_motion='gt' if oracle_camera_motion else 'none',
        )
    finally:
        set_training_mode(model, cfg.train.frozen_modules)
        restore_rng_state(rng_state)
    return metrics['mean']
