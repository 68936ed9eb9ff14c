"""The inference section of the configuration: the runner's own settings and one section per runner stage.

Every setting is written once, here: a dataclass field with its default, a `help` line and, where it has
one, its valid range or choices (`setting(...)`). `__post_init__` validates each section, so a YAML file,
a checkpoint, `seqpose eval --set inference.support_plane.enabled=false`, a node parameter
(`support_plane.enabled`) and `StreamRunner.configure` all get the same answer. The node's parameters for
these settings are generated from this table (`settings_table`).

Architecture (what the checkpoint's tensors are) stays in `model.config.ModelConfig`; what is chosen after
training (which classes the refiner serves, how much its depth counts) lives here. Checkpoints written before
the sections existed keep loading: `migrate_inference_values` maps their flat names.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from seqpose_core import CLASS_NAMES
from seqpose_core.config_schema import ConfigError

# Command-line mode names (the paper's MF / SF) -> InferenceConfig.mode
MODES = {'mf': 'video', 'sf': 'single'}
SUPPRESSIONS = ('projected_iou', 'centre_distance', 'none')
SCORE_FUSIONS = ('query', 'proposal')
BACKENDS = ('torch', 'onnxruntime')


def setting(default, help, range=None, choices=None, **kwargs):
    """A dataclass field with its user-facing description and bounds (read by the node's parameter table and
    by validation)."""
    metadata = {'help': help, 'range': range, 'choices': choices}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


def section(cls, help):
    return field(default_factory=cls, metadata={'help': help})


def check_fields(values, where):
    """ConfigError naming the first field of dataclass `values` that is outside its range or choices."""
    for item in dataclasses.fields(values):
        value = getattr(values, item.name)
        bounds, choices = item.metadata.get('range'), item.metadata.get('choices')
        if item.type in ('bool', bool) and not isinstance(value, bool):
            raise ConfigError(f'{where}.{item.name} {value!r}: expected true or false')
        if item.type in ('int', int) and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f'{where}.{item.name} {value!r}: expected an integer')
        if item.type in ('float', float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f'{where}.{item.name} {value!r}: expected a number')
            object.__setattr__(values, item.name, float(value))
            value = float(value)
        if choices is not None and value not in choices:
            raise ConfigError(f'{where}.{item.name} {value!r}: expected one of {list(choices)}')
        if bounds is not None:
            low, high, *open_ends = bounds
            low_open, high_open = open_ends[0] if open_ends else (False, False)
            if value < low or value > high or (low_open and value == low) or (high_open and value == high):
                left, right = '(' if low_open else '[', ')' if high_open else ']'
                raise ConfigError(f'{where}.{item.name} {value}: expected a value in {left}{low}, {high}{right}')


def _class_names(names, where):
    names = tuple(names)
    unknown = [name for name in names if name not in CLASS_NAMES]
    if unknown:
        raise ConfigError(f'{where} {list(names)}: {unknown} not among the classes {list(CLASS_NAMES)}')
    return names


# --------------------------------------------------------------------------------------------- memory
@dataclass
class MemorySettings:
    """Which frames the query memory keeps (video mode): every frame (the paper, and how the shipped checkpoint was
    trained), or keyframes, so that the memory remembers other views than this one."""

    keyframe_interval: float = setting(
        0.0,
        'seconds: a frame enters the memory when this long has passed since the last one that did (0: every frame)',
        range=(0.0, 3600.0),
    )
    keyframe_distance: float = setting(
        0.0,
        'metres: with camera motion, a frame also enters the memory once the camera moved this far (0: off)',
        range=(0.0, 100.0),
    )

    def __post_init__(self):
        check_fields(self, 'inference.memory')


# --------------------------------------------------------------------------------------------- stage sections
@dataclass
class SuppressionSettings:
    """One detection per object (seqpose_core.suppression), after the decoder and again after the refiner
    moved boxes."""

    method: str = setting(
        'projected_iou',
        "'projected_iou' (same class, projected boxes overlapping by more than "
        "iou, or centres closer than distance), 'centre_distance' or 'none'",
        choices=SUPPRESSIONS,
    )
    iou: float = setting(0.5, 'projected-box IoU above which two same-class detections are one', range=(0.0, 1.0))
    distance: float = setting(0.05, 'metres: same-class detections whose centres are closer are one', range=(0.0, 10.0))

    def __post_init__(self):
        check_fields(self, 'inference.suppression')


@dataclass
class RefinerSettings:
    """Models with a pose refiner (model.refiner_width > 0): a second look at each detection in a crop of the
    full-resolution image (seqpose_core.stages.refiner)."""

    rotation: bool = setting(
        True,
        "the refiner replaces the decoder's rotation of the detections of `classes` "
        "(false: the decoder's pose, e.g. for an ablation)",
    )
    box: bool = setting(
        True,
        "where the model's refiner re-estimates boxes (model.refiner_box): it replaces the "
        'translation and size of the detections of `box_classes` too (needs rotation)',
    )
    passes: int = setting(
        2,
        'how many times the refiner looks; each pass after the first reads the crop around the box the one before gave',
        range=(1, 16),
    )
    # the refined depth in log space: this weight on the crop's (its metric size over its projected diagonal),
    # the rest on the decoder's (which also sees the table and the neighbours)
    depth_weight: float = setting(
        0.5, "weight of the crop's depth against the decoder's (1: the crop's alone)", range=(0.0, 1.0)
    )
    classes: tuple[str, ...] = setting(
        ('camera', 'laptop', 'mug'),
        'the classes whose rotation the refiner serves '
        '(`seqpose train-refiner --classes`, `seqpose select-refiner-classes`)',
    )
    box_classes: tuple[str, ...] = setting((), 'of `classes`, those whose box the refiner serves too')

    def __post_init__(self):
        check_fields(self, 'inference.refiner')
        self.classes = _class_names(self.classes, 'inference.refiner.classes')
        self.box_classes = _class_names(self.box_classes, 'inference.refiner.box_classes')
        outside = [name for name in self.box_classes if name not in self.classes]
        if outside:
            raise ConfigError(
                f'inference.refiner.box_classes: {outside} not in inference.refiner.classes {list(self.classes)}'
            )


@dataclass
class CropScoringSettings:
    """Models whose refiner scores crops (model.refiner_scoring): a detection's score s becomes s^(1 - w) p^w, p
    the crop's probability of its class (seqpose_core.stages.crop_scoring)."""

    enabled: bool = setting(True, "fuse the crop scorer's opinion into the score (false: the decoder's score)")
    weight: float = setting(0.5, "w: the crop scorer's weight in the published score", range=(0.0, 1.0))
    before_refiner: bool = setting(
        False,
        "score each decoder box from a crop around it before the refiner looks (the refiner's first pass on that "
        'crop is then reused), so the refiner reads only the boxes that stay above the threshold; false: score the '
        "refined box's own crop after the refiner",
    )

    def __post_init__(self):
        check_fields(self, 'inference.crop_scoring')


@dataclass
class TrackSettings:
    """The one tracker (seqpose_core.stages.tracks): track ids, and in video mode scores that remember."""

    score_decay: float = setting(
        0.8,
        "video mode: a detection publishes the mean of its track's scores, the past "
        "weighted by this per frame (0: each frame's own score)",
        range=(0.0, 1.0, (False, True)),
    )
    distance: float = setting(
        0.1,
        'metres: a detection continues the nearest track of its class within this',
        range=(0.0, 10.0, (True, False)),
    )
    confirm_hits: int = setting(
        2, 'frames a track must be seen in before it is confirmed (gets a TF frame)', range=(1, 1000)
    )
    max_misses: int = setting(5, 'frames a track lives on unseen before it ends', range=(0, 1000))

    def __post_init__(self):
        check_fields(self, 'inference.tracks')


@dataclass
class SupportPlaneSettings:
    """Objects standing on one surface share its up (seqpose_core.stages.support_plane)."""

    enabled: bool = setting(
        True,
        'detections whose up axis lies within gate_deg of the score-weighted consensus '
        'take it (false: each keeps its own rotation: objects held in a hand, on a slope)',
    )
    gate_deg: float = setting(
        20.0,
        'degrees: the widest an up axis may be from the consensus and vote or take it',
        range=(0.0, 90.0, (True, True)),
    )
    decay: float = setting(
        0.97,
        "video mode: the past frames' votes weigh this per frame (0: each frame alone)",
        range=(0.0, 1.0, (False, True)),
    )

    def __post_init__(self):
        check_fields(self, 'inference.support_plane')


@dataclass
class WorldFusionSettings:
    """Video mode with camera motion (odometry): each track's centre fused in the world from its rays across
    frames, the model's depth the prior (seqpose_core.stages.world_fusion)."""

    enabled: bool = setting(
        True, "fuse each track's rays in the world when the camera motion is known (false: each frame's own centre)"
    )
    image_motion: bool = setting(
        False,
        'video without odometry: the camera motion from the image (tracked corners and the objects seen in both '
        'frames, seqpose_core.stages.image_motion), so that the tracks fuse at one scale shared by the scene. '
        'Off: it gained on selection video and lost on held-out video (docs/experiments/2026-12-08-image-motion.md)',
    )
    image_motion_centre_sigma: float = setting(
        0.02,
        "metres: how far the model's centre of an object jitters between frames (the image motion's object term)",
        range=(0.0, 1.0, (True, False)),
    )
    image_motion_keyframe_distance: float = setting(
        0.08,
        'metres of camera travel after which the image motion measures from a new keyframe',
        range=(0.0, 10.0, (True, False)),
    )
    bearing_sigma: float = setting(
        0.02,
        "radians: how far off the model's viewing ray of an object's centre is, frame by frame",
        range=(0.0, 1.0, (True, False)),
    )
    bearing_correlation: float = setting(
        0.05,
        "how much of that error one object's frames share (N rays count as N / (1 + (N - 1) x this))",
        range=(0.0, 1.0),
    )
    depth_sigma: float = setting(
        0.15,
        "the model's depth error as a fraction of the range: the prior, counted once per track",
        range=(0.0, 10.0, (True, False)),
    )
    move_gate: float = setting(
        0.1,
        "metres across its ray beyond which an observation is off its track's estimate (not fused)",
        range=(0.0, 10.0, (True, False)),
    )
    keep: float = setting(
        1.0,
        "weight of a track's earlier evidence at each new view (1: every view counts alike; below 1 the estimate "
        'follows a change within about 1 / (1 - keep) views)',
        range=(0.0, 1.0, (True, False)),
    )
    depth_gate: float = setting(
        0.0,
        "relative change of the model's range over the fused range beyond which a view is off its track's estimate "
        '(a move along the ray; after 10 fused views). 0: off (0.1 and 0.2 lost 2-7 points on static selection video)',
        range=(0.0, 10.0),
    )
    restart_after: int = setting(
        3,
        'observations off the estimate in a row after which the object has moved: its fusion starts again',
        range=(1, 1000),
    )
    carry_depth: bool = setting(
        True,
        "a moved object's fusion starts again at the depth its earlier fusion measured for it (the instance's depth "
        "bias over the model's), not at the model's depth",
    )
    carried_depth_sigma: float = setting(
        0.05,
        "that depth's error as a fraction of the range (how much one instance's depth bias changes between places)",
        range=(0.0, 10.0, (True, False)),
    )

    rotation: bool = setting(
        True, "asymmetric classes: publish the score-weighted mode of the track's recent rotations in the world"
    )
    rotation_gate_deg: float = setting(
        30.0, 'degrees: rotations within this of each other agree (the mode and its inliers)', range=(0.0, 180.0)
    )
    rotation_history: int = setting(300, 'the latest rotations of a track that vote (10 s at 30 Hz)', range=(1, 10000))

    coast_frames: int = setting(
        30,
        'frames a well-fused track the detector missed is still published where the world puts it (0: never)',
        range=(0, 1000),
    )
    coast_min_views: int = setting(15, 'views a track must have fused before it may coast', range=(1, 100000))
    coast_decay: float = setting(
        0.9, "a coasting track's score is its last one times this per frame unseen", range=(0.0, 1.0)
    )

    def __post_init__(self):
        check_fields(self, 'inference.world_fusion')


# --------------------------------------------------------------------------------------------- covariance
# a class's row: the position's sigma at zero depth along x, y (across the viewing ray) and z (along it), metres;
# its growth per metre of depth, the same three; the rotation's sigma about the object's own x, y, z, radians
COVARIANCE_ROW = 9
UNCALIBRATED = (0.0,) * COVARIANCE_ROW
COVARIANCE_ROW_HELP = (
    'sigma = a + b z (z: the depth, metres) as (a_x, a_y, a_z, b_x, b_y, b_z, r_x, r_y, r_z): the position along '
    'x, y across the viewing ray and z along it (a metres, b metres per metre), then the rotation about the '
    "object's x, y, z (radians); all 0: not calibrated"
)


@dataclass
class CovarianceTable:
    """Per class, the measured error of the model as standard deviations (`seqpose calibrate-covariance`)."""

    bottle: tuple[float, ...] = setting(UNCALIBRATED, f'bottle: {COVARIANCE_ROW_HELP}')
    bowl: tuple[float, ...] = setting(UNCALIBRATED, f'bowl: {COVARIANCE_ROW_HELP}')
    camera: tuple[float, ...] = setting(UNCALIBRATED, f'camera: {COVARIANCE_ROW_HELP}')
    can: tuple[float, ...] = setting(UNCALIBRATED, f'can: {COVARIANCE_ROW_HELP}')
    laptop: tuple[float, ...] = setting(UNCALIBRATED, f'laptop: {COVARIANCE_ROW_HELP}')
    mug: tuple[float, ...] = setting(UNCALIBRATED, f'mug: {COVARIANCE_ROW_HELP}')
    # validated by CovarianceSettings, which knows the table's name


def covariance_row(values, where):
    """A class's row as 9 floats; ConfigError naming `where` unless it is all 0 (not calibrated) or every
    sigma is positive at every depth (a or b > 0 per position axis, r > 0 per rotation axis)."""
    try:
        row = tuple(float(value) for value in values)
    except (TypeError, ValueError):
        raise ConfigError(f'{where} {values!r}: expected {COVARIANCE_ROW} numbers') from None
    if len(row) != COVARIANCE_ROW:
        raise ConfigError(f'{where} {list(row)}: expected {COVARIANCE_ROW} numbers, got {len(row)}')
    if not all(math.isfinite(value) and value >= 0 for value in row):
        raise ConfigError(f'{where} {list(row)}: expected finite numbers >= 0')
    if row != UNCALIBRATED:
        flat = [axis for axis in range(3) if row[axis] == 0 and row[3 + axis] == 0]
        if flat or 0 in row[6:]:
            raise ConfigError(f'{where} {list(row)}: every sigma must be positive (all 0: not calibrated)')
    return row


@dataclass
class CovarianceSettings:
    """The pose covariance each detection carries (extras['pose_covariance'], 6x6, camera frame: x, y, z, rotation
    about x, y, z; the node publishes it): the model's measured error on held-out video, per class, by depth
    (seqpose_core.stages.covariance; `seqpose calibrate-covariance` fits it from a `seqpose eval` output)."""

    enabled: bool = setting(True, 'attach the calibrated pose covariance where the checkpoint has one (false: none)')
    no_motion: CovarianceTable = section(
        CovarianceTable, 'frames without camera motion (and single-frame mode): the model alone'
    )
    odometry: CovarianceTable = section(
        CovarianceTable,
        "video frames with camera motion and world fusion on: the fused centres' error (not calibrated: no_motion's)",
    )

    def __post_init__(self):
        check_fields(self, 'inference.covariance')
        for table in ('no_motion', 'odometry'):
            for name in CLASS_NAMES:
                row = getattr(getattr(self, table), name)
                setattr(getattr(self, table), name, covariance_row(row, f'inference.covariance.{table}.{name}'))


# --------------------------------------------------------------------------------------------- the section
@dataclass
class InferenceConfig:
    """How the stateful runner turns network outputs into detections."""

    mode: str = setting(
        'video',
        "'video' (memory on, the paper's MF) or 'single' (memory off, SF); a change resets",
        choices=tuple(MODES.values()),
    )
    score_threshold: float = setting(0.3, 'detections scoring below this are not published', range=(0.0, 1.0))
    max_detections: int = setting(20, 'at most this many detections a frame, best first', range=(1, 1000))
    max_frame_gap: float = setting(
        1.0,
        'seconds between the stamps of consecutive received frames above which '
        'the memory and tracks reset (0: never on a gap)',
        range=(0.0, 3600.0),
    )
    # 'proposal' (models with proposal_queries only): sqrt(query probability x the proposal head's probability
    # at the cell under the predicted centre), per class (model.proposals.centre_evidence)
    score_fusion: str = setting(
        'query',
        "'query': the queries' own scores (the paper); 'proposal': fused with the proposal head's evidence",
        choices=SCORE_FUSIONS,
    )
    device: str = setting('cpu', "torch device: 'cpu', 'cuda', 'cuda:N'")
    reuse_freed_memory: bool = setting(
        True,
        "CPU: keep freed memory in the process (glibc's mmap and trim thresholds at 1 GiB), so that each frame's "
        'large tensors reuse warm pages instead of faulting in new ones (seqpose_core.allocator); once on, it stays '
        'on for the process',
    )
    # The runner's logic is the same under both; only the network call differs (seqpose_core.backends).
    backend: str = setting(
        'torch',
        "'torch': the model in PyTorch; 'onnxruntime': its exported graphs (seqpose export) in ONNX Runtime",
        choices=BACKENDS,
    )
    onnx_dir: str = setting(
        '',
        "backend 'onnxruntime': a `seqpose export` directory of this checkpoint ('': exported once into the "
        'user cache, keyed by the checkpoint hash)',
    )
    engine_cache: str = setting(
        '',
        "backend 'onnxruntime' on cuda: where TensorRT keeps its built engines ('': beside the graphs)",
    )
    memory: MemorySettings = section(MemorySettings, MemorySettings.__doc__)
    suppression: SuppressionSettings = section(SuppressionSettings, SuppressionSettings.__doc__)
    refiner: RefinerSettings = section(RefinerSettings, RefinerSettings.__doc__)
    crop_scoring: CropScoringSettings = section(CropScoringSettings, CropScoringSettings.__doc__)
    tracks: TrackSettings = section(TrackSettings, TrackSettings.__doc__)
    world_fusion: WorldFusionSettings = section(WorldFusionSettings, WorldFusionSettings.__doc__)
    support_plane: SupportPlaneSettings = section(SupportPlaneSettings, SupportPlaneSettings.__doc__)
    covariance: CovarianceSettings = section(CovarianceSettings, CovarianceSettings.__doc__)

    def __post_init__(self):
        self.mode = MODES.get(self.mode, self.mode)
        check_fields(self, 'inference')


# --------------------------------------------------------------------------------------------- dotted names
@dataclass(frozen=True)
class SettingSpec:
    """One run-time setting by its dotted name under `inference.` (e.g. 'support_plane.enabled')."""

    name: str
    default: Any
    help: str
    range: Any = None
    choices: Any = None


def settings_table(config: InferenceConfig = None, prefix=''):
    """Every leaf setting of `config` (default: the defaults) as SettingSpecs, in declaration order."""
    config = config if config is not None else InferenceConfig()
    specs = []
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            specs.extend(settings_table(value, f'{prefix}{item.name}.'))
        else:
            specs.append(
                SettingSpec(
                    f'{prefix}{item.name}',
                    value,
                    item.metadata.get('help', ''),
                    item.metadata.get('range'),
                    item.metadata.get('choices'),
                )
            )
    return specs


def nested(dotted):
    """{'support_plane.enabled': False, 'mode': 'single'} -> {'support_plane': {'enabled': False}, 'mode': ...}."""
    tree = {}
    for name, value in dotted.items():
        node = tree
        *parents, leaf = name.split('.')
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ConfigError(f'inference.{name}: {parent} is a setting, not a section')
        node[leaf] = value
    return tree


def with_settings(config: InferenceConfig, changes) -> InferenceConfig:
    """`config` with `changes` ({dotted name: value}, or a nested dict) applied; validated as a whole, unknown
    names refused with the known ones."""
    from seqpose_core.config_schema import from_dict, merge_dicts, to_dict

    tree = nested(_flatten(dict(changes)))
    return from_dict(InferenceConfig, merge_dicts(to_dict(config), migrate_inference_values(tree)), 'inference')


def _flatten(tree, prefix=''):
    flat = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f'{prefix}{name}.'))
        else:
            flat[f'{prefix}{name}'] = value
    return flat


# --------------------------------------------------------------------------------------------- old names
# Flat names of the inference section before it had stage sections -> today's dotted names.
LEGACY_INFERENCE_NAMES = {
    'duplicate_suppression': 'suppression.method',
    'nms_iou': 'suppression.iou',
    'nms_distance': 'suppression.distance',
    'rotation_refinement': 'refiner.rotation',
    'box_refinement': 'refiner.box',
    'refiner_passes': 'refiner.passes',
    'crop_score_weight': 'crop_scoring.weight',
    'score_track_decay': 'tracks.score_decay',
    'score_track_distance': 'tracks.distance',
    'support_plane_gate_deg': 'support_plane.gate_deg',
    'support_plane_decay': 'support_plane.decay',
}
# switches that were booleans and are now a section's `enabled`
LEGACY_SWITCHES = ('crop_scoring', 'support_plane')
# run-time choices that older checkpoints kept in the model section -> their dotted inference names
LEGACY_MODEL_NAMES = {
    'refiner_classes': 'refiner.classes',
    'refiner_box_classes': 'refiner.box_classes',
    'refiner_depth_weight': 'refiner.depth_weight',
}


def migrate_inference_values(values, model_values=None):
    """An inference section as a (nested) dict in today's shape, from one that may use the old flat names; the
    old model-section run-time choices in `model_values` (popped from it) join it."""
    values = dict(values or {})
    moved = {}
    for old, new in LEGACY_INFERENCE_NAMES.items():
        if old in values:
            moved[new] = values.pop(old)
    for name in LEGACY_SWITCHES:
        if isinstance(values.get(name), bool):
            moved[f'{name}.enabled'] = values.pop(name)
    if model_values is not None:
        for old, new in LEGACY_MODEL_NAMES.items():
            if old in model_values:
                moved.setdefault(new, model_values.pop(old))
    if not moved:
        return values
    from seqpose_core.config_schema import merge_dicts

    return merge_dicts(values, nested(moved))
