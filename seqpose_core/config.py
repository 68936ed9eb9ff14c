"""Configuration: YAML files <-> nested dataclasses.

One `SeqPoseConfig` holds a section per concern; each section's dataclass lives beside the code that uses it
(`model.config.ModelConfig`, `data.config.DataConfig`, `train.config.TrainConfig`, `InferenceConfig` here).
Shipped configs are in `seqpose_core/configs/*.yaml` and are found by bare name (`--config tiny`).
"""
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seqpose_core.config_schema import ConfigError, from_dict, merge_dicts, to_dict
from seqpose_core.data.config import DataConfig
from seqpose_core.model.config import ModelConfig
from seqpose_core.train.config import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parent / 'configs'


# Command-line mode names (the paper's MF / SF) -> InferenceConfig.mode
MODES = {'mf': 'video', 'sf': 'single'}
# Where the video mode's camera motion comes from in evaluation: none (what a camera without odometry has) or
# gt, an ORACLE derived from the ground-truth poses of the frames being scored (never a headline number)
CAMERA_MOTION_CHOICES = ('none', 'gt')


@dataclass
class InferenceConfig:
    """How the stateful runner turns network outputs into detections."""
    mode: str = 'video'             # 'video' (memory on, the paper's MF) or 'single' (memory off, SF)
    score_threshold: float = 0.3    # detections below this score are dropped
    max_detections: int = 20        # per frame, after score sorting
    # One detection per object (seqpose_core.suppression): 'projected_iou' (same class, projected boxes
    # overlapping by more than nms_iou, or centres closer than nms_distance), 'centre_distance' or 'none'.
    duplicate_suppression: str = 'projected_iou'
    nms_iou: float = 0.5
    nms_distance: float = 0.05      # metres: same-class detections whose centres are closer are merged
    max_frame_gap: float = 1.0      # seconds: a larger gap between stamps resets the memory
    # 'query': a detection's class and score are the query's own (the paper). 'proposal' (models with
    # proposal_queries only): sqrt(query probability x the proposal head's probability at the cell under the
    # predicted centre), per class (model.proposals.centre_evidence).
    score_fusion: str = 'query'
    # Models with a pose refiner (model.refiner_width > 0): let it replace the decoder's rotation (and box) of the
    # detections of its classes (False: the decoder's pose, e.g. for an ablation).
    rotation_refinement: bool = True
    # Models whose refiner also re-estimates the box (model.refiner_box): let it replace the decoder's translation
    # and size of those detections too (False: the refiner's rotation alone).
    box_refinement: bool = True
    # How many times the refiner looks: each pass after the first reads the crop around the box the one before
    # gave (model.pose_refiner.refine_poses); 1: once.
    refiner_passes: int = 2
    # Models whose refiner scores crops (model.refiner_scoring): a detection's score becomes its score^(1 - w) x the
    # crop's probability of its class^w (w: crop_score_weight), and the score threshold applies to that too
    # (False: the decoder's score).
    crop_scoring: bool = True
    crop_score_weight: float = 0.5
    # Video mode: a detection publishes the decayed mean of its scores along its track (seqpose_core.score_tracks;
    # the previous frame's detection of its class within score_track_distance metres), the past weighted by
    # score_track_decay per frame; the score threshold applies to that. 0: each frame's own score.
    score_track_decay: float = 0.8
    score_track_distance: float = 0.1
    # Objects standing on one surface share its up (seqpose_core.support_plane): detections whose up axis lies
    # within support_plane_gate_deg of the score-weighted consensus take it. In video mode the consensus carries
    # over frames, the votes of the past weighted by support_plane_decay per frame (single mode: this frame's).
    support_plane: bool = True
    support_plane_gate_deg: float = 20.0
    support_plane_decay: float = 0.97
    device: str = 'cpu'


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
    return from_dict(SeqPoseConfig, values, where)


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
        return from_dict(SeqPoseConfig, values, str(path))
    except ConfigError as error:
        raise ConfigError(f'{path}: stored config does not fit this version: {error}') from None
