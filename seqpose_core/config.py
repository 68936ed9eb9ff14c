"""Configuration: YAML files <-> nested dataclasses.

One `SeqPoseConfig` holds a section per concern; each section's dataclass lives beside the code that uses it
(`model.config.ModelConfig`, `data.config.DataConfig`, `train.config.TrainConfig`, and the runner's
`stages.config.InferenceConfig`, a section per runner stage). Files and checkpoints written before the inference
section had stage sections load through `migrated` (the old flat names map to today's dotted ones).
Shipped configs are in `seqpose_core/configs/*.yaml` and are found by bare name (`--config tiny`).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seqpose_core.config_schema import ConfigError, from_dict, merge_dicts, to_dict
from seqpose_core.data.config import DataConfig
from seqpose_core.model.config import ModelConfig
from seqpose_core.stages.config import MODES, InferenceConfig, migrate_inference_values
from seqpose_core.train.config import TrainConfig

__all__ = [
    'CAMERA_MOTION_CHOICES',
    'ConfigError',
    'InferenceConfig',
    'MODES',
    'SeqPoseConfig',
    'config_from_checkpoint',
    'load_config',
    'save_config',
]

CONFIG_DIR = Path(__file__).resolve().parent / 'configs'


# Where the video mode's camera motion comes from in evaluation: none (what a camera without odometry has),
# odometry (the scene's odometry.txt: what a robot's odometry reports, drift and jitter included; generated
# videos have it, REAL275 has not), or gt, an ORACLE derived from the ground-truth poses of the frames being
# scored (never a headline number)
CAMERA_MOTION_CHOICES = ('none', 'odometry', 'gt')


@dataclass
class SeqPoseConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)


def resolve_config_path(name_or_path) -> Path:
    """A path to a YAML file, or the bare name of a shipped config (`tiny`, `seqpose_vits`)."""
    path = Path(name_or_path)
    if path.suffix in ('.yaml', '.yml') and path.exists():
        return path
    shipped = CONFIG_DIR / f'{path.stem}.yaml'
    if shipped.exists():
        return shipped
    known = sorted(p.stem for p in CONFIG_DIR.glob('*.yaml'))
    raise ConfigError(f'config {name_or_path!r}: no such file and not a shipped config (shipped: {known})')


def load_config(name_or_path=None, overrides=None) -> SeqPoseConfig:
    """Load a YAML config (by path or shipped name); `overrides` is a nested dict applied on top."""
    values = {}
    if name_or_path is not None:
        path = resolve_config_path(name_or_path)
        with open(path, encoding='utf-8') as stream:
            try:
                values = yaml.safe_load(stream) or {}
            except yaml.YAMLError as error:
                raise ConfigError(f'{path}: not valid YAML: {error}') from None
        where = str(path)
    else:
        where = 'config'
    if overrides:
        values = merge_dicts(values, overrides)
    return from_dict(SeqPoseConfig, migrated(values), where)


def migrated(values):
    """A whole config as a dict in today's shape: the inference section's old flat names, and the run-time
    choices older files kept in the model section (refiner_classes, ...), moved to their inference sections."""
    values = dict(values)
    model = dict(values.get('model') or {})
    values['inference'] = migrate_inference_values(values.get('inference'), model)
    if 'model' in values or model:
        values['model'] = model
    if not values['inference']:
        values.pop('inference')
    return values


def save_config(config: SeqPoseConfig, path):
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as stream:
        yaml.safe_dump(to_dict(config), stream, sort_keys=False)
    os.replace(tmp, path)


def config_from_checkpoint(content, path='checkpoint'):
    """The SeqPoseConfig stored in one of our checkpoints (`model.checkpoint.load_checkpoint`'s dict); a
    ModelConfig-only checkpoint gets the default other sections."""
    values = content.get('config') or {}
    if content.get('config_type') == 'ModelConfig':
        values = {'model': values}
    try:
        return from_dict(SeqPoseConfig, migrated(values), str(path))
    except ConfigError as error:
        raise ConfigError(f'{path}: stored config does not fit this version: {error}') from None
