"""Weights: our checkpoints (which carry their config) and the official DINOv2 / Depth-Anything-V2 files.

- `save_checkpoint(path, model, cfg, **extra)`: {'format', 'version', 'config', 'config_type', 'model', **extra},
  written to a temporary file and renamed, so a crash never leaves a half-written checkpoint. A `.safetensors`
  path stores the tensors with the config as JSON metadata (extras must then be JSON-serialisable).
- `load_checkpoint(path)` / `model_config_from_checkpoint(content)`: the stored dict and its ModelConfig
  (`model.seqpose.load_model_from_checkpoint` rebuilds the model; `seqpose_core.config.config_from_checkpoint`
  the whole SeqPoseConfig).
- `average_checkpoints(paths, weights)` / `save_checkpoint_content(path, content)`: the weighted mean of the
  weights of checkpoints of one model (checkpoint averaging, a "model soup"), written like any checkpoint.
- `load_dinov2_weights(model, path)`: `dinov2_vit{s,b,l}14_pretrain.pth` into model.encoder.
- `load_depth_anything_weights(model, path)`: `depth_anything_v2_vit{s,b,l}.pth` (`pretrained.*` -> encoder,
  `depth_head.*` -> DPT head).
All loads are strict and raise `WeightsError` naming the file and listing missing, unexpected and mis-shaped
keys. Pickled files are read with `torch.load(..., weights_only=True)` (no code execution).
"""

import dataclasses
import json
import os
from pathlib import Path

import torch

from seqpose_core.config_schema import ConfigError, from_dict
from seqpose_core.model.config import MOVED_TO_INFERENCE, ModelConfig

CHECKPOINT_FORMAT = 'seqpose-checkpoint'
CHECKPOINT_VERSION = 1
_LIST_LIMIT = 12  # keys listed per category in error messages


class WeightsError(RuntimeError):
    """A weight file that cannot be read or does not fit the model."""


# --- reading ------------------------------------------------------------------------------------------------
def _is_safetensors(path):
    return str(path).endswith('.safetensors')


def read_weights_file(path):
    """Everything in a weight file: a dict (tensors, or our checkpoint dict). Raises WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f'{path}: no such weight file')
    try:
        if _is_safetensors(path):
            from safetensors import safe_open

            with safe_open(str(path), framework='pt', device='cpu') as handle:
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
                metadata = handle.metadata() or {}
            if metadata.get('format') == CHECKPOINT_FORMAT:
                content = json.loads(metadata.get('seqpose', '{}'))
                content.update(format=CHECKPOINT_FORMAT, model=tensors)
                return content
            return tensors
        content = torch.load(str(path), map_location='cpu', weights_only=True)
    except WeightsError:
        raise
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise WeightsError(f'{path}: cannot read weights ({type(error).__name__}: {error})') from None
    if not isinstance(content, dict):
        raise WeightsError(f'{path}: expected a dict of tensors, got {type(content).__name__}')
    return content


def _state_dict_of(content, path):
    """The tensor dict inside a file's content (official files are flat; some wrap it in 'model')."""
    if content.get('format') == CHECKPOINT_FORMAT:
        return content['model']
    if all(torch.is_tensor(v) for v in content.values()):
        return content
    for key in ('model', 'state_dict'):
        if isinstance(content.get(key), dict):
            return content[key]
    raise WeightsError(f'{path}: no tensor dict found (top-level keys: {sorted(content)[:_LIST_LIMIT]})')


def _listing(title, keys):
    keys = list(keys)
    shown = ', '.join(keys[:_LIST_LIMIT])
    if len(keys) > _LIST_LIMIT:
        shown += f', ... (+{len(keys) - _LIST_LIMIT} more)'
    return f'\n  {title} ({len(keys)}): {shown}'


def check_state_dict(module, state, prefix='', allow_missing=False):
    """Problems as text ('' when `state` fits `module` exactly; with allow_missing, when every tensor of `state`
    fits `module`); keys are shown with the file's `prefix`."""
    return _state_problems(module.state_dict(), state, prefix, allow_missing)


def _state_problems(expected, state, prefix='', allow_missing=False, names=('file', 'model')):
    """Problems of tensor dict `state` against `expected` as text ('' when they fit); `names` label the two
    shapes of a mis-shaped tensor."""
    missing = [] if allow_missing else [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [
        f'{prefix}{k} ({names[0]} {tuple(state[k].shape)}, {names[1]} {tuple(expected[k].shape)})'
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = ''
    if missing:
        problems += _listing('missing', [prefix + k for k in missing])
    if unexpected:
        problems += _listing('unexpected', [prefix + k for k in unexpected])
    if mis_shaped:
        problems += _listing('mis-shaped', mis_shaped)
    return problems


def load_state_strict(module, state, path, what, prefix=''):
    problems = check_state_dict(module, state, prefix)
    if problems:
        raise WeightsError(f'{path}: does not fit the {what}:{problems}')
    module.load_state_dict(state, strict=True)


def load_state_growing(module, state, path, what):
    """Load `state` into a module that may have grown since it was written (a warm start of a model with a new
    part switched on, e.g. depth guidance): every tensor of the file must fit the module, and the module's
    tensors the file lacks keep their own initialisation. Returns the names of those new tensors; raises
    WeightsError on a tensor the module does not have or one of another shape (a different model, not a grown one)."""
    problems = check_state_dict(module, state, allow_missing=True)
    if problems:
        raise WeightsError(f'{path}: does not fit the {what}:{problems}')
    module.load_state_dict(state, strict=False)
    return [k for k in module.state_dict() if k not in state]


# --- official weights ---------------------------------------------------------------------------------------
def load_dinov2_weights(model, path):
    """Official DINOv2 (`dinov2_vit{s,b,l}14_pretrain.pth`) into model.encoder (or a bare encoder)."""
    encoder = getattr(model, 'encoder', model)
    state = _state_dict_of(read_weights_file(path), path)
    if any(k.startswith('pretrained.') for k in state):
        raise WeightsError(
            f'{path}: this looks like a Depth-Anything-V2 checkpoint (keys under `pretrained.`); '
            'pass it as the Depth-Anything-V2 weights'
        )
    load_state_strict(encoder, state, path, f'DINOv2 encoder ({_encoder_name(model)})')


def load_depth_anything_weights(model, path):
    """Official Depth-Anything-V2 (`pretrained.*` + `depth_head.*`) into model.encoder + model.depth_head."""
    state = _state_dict_of(read_weights_file(path), path)
    encoder_state = {k[len('pretrained.') :]: v for k, v in state.items() if k.startswith('pretrained.')}
    head_state = {k[len('depth_head.') :]: v for k, v in state.items() if k.startswith('depth_head.')}
    other = [k for k in state if not k.startswith(('pretrained.', 'depth_head.'))]
    problems = check_state_dict(model.encoder, encoder_state, 'pretrained.')
    problems += check_state_dict(model.depth_head, head_state, 'depth_head.')
    if other:
        problems += _listing('unexpected', other)
    if problems:
        raise WeightsError(
            f'{path}: does not fit the Depth-Anything-V2 layout of this model ({_encoder_name(model)}):{problems}'
        )
    model.encoder.load_state_dict(encoder_state, strict=True)
    model.depth_head.load_state_dict(head_state, strict=True)


def _encoder_name(model):
    cfg = getattr(model, 'cfg', None)
    encoder = getattr(model, 'encoder', model)
    name = cfg.encoder if cfg is not None else 'encoder'
    return f'{name}, width {encoder.embed_dim}, {len(encoder.blocks)} blocks'


# --- our checkpoints ----------------------------------------------------------------------------------------
def _config_payload(cfg):
    # Duck-typed on the class name: the full SeqPoseConfig lives above this package (seqpose_core.config).
    name = type(cfg).__name__
    if name not in ('SeqPoseConfig', 'ModelConfig') or not dataclasses.is_dataclass(cfg):
        raise TypeError(f'cfg: expected a SeqPoseConfig or ModelConfig, got {name}')
    return name, dataclasses.asdict(cfg)


def save_checkpoint(path, model, cfg, **extra):
    """Write model weights + config (+ extra entries, e.g. optimizer state, epoch) atomically."""
    config_type, config = _config_payload(cfg)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return _write_checkpoint(path, state, {'config': config, 'config_type': config_type, **extra})


def save_checkpoint_content(path, content):
    """Write a checkpoint dict as `load_checkpoint` returns it (e.g. from `average_checkpoints`) atomically."""
    header = {k: v for k, v in content.items() if k not in ('format', 'version', 'model')}
    state = {k: v.detach().cpu().contiguous() for k, v in content['model'].items()}
    return _write_checkpoint(path, state, header)


def _write_checkpoint(path, state, header):
    # Written to a temporary file and renamed: a crash never leaves a half-written checkpoint.
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    try:
        if _is_safetensors(path):
            from safetensors.torch import save_file

            metadata = {'format': CHECKPOINT_FORMAT, 'seqpose': json.dumps({'version': CHECKPOINT_VERSION, **header})}
            save_file(state, str(tmp), metadata=metadata)
        else:
            torch.save({'format': CHECKPOINT_FORMAT, 'version': CHECKPOINT_VERSION, **header, 'model': state}, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# tensor-name prefixes of older checkpoints -> today's (the refiner was the rotation refiner until 2026-12-06)
# applied in order: a name renamed by one entry is matched by the next
LEGACY_PREFIXES = {'rotation_refiner.': 'pose_refiner.', 'pose_refiner.scorer.': 'crop_scorer.head.'}


def renamed_legacy_tensors(state):
    """`state` (a tensor dict) with the names of older checkpoints (LEGACY_PREFIXES) renamed to today's."""
    renamed = {}
    for name, value in state.items():
        for old, new in LEGACY_PREFIXES.items():
            if name.startswith(old):
                name = new + name[len(old) :]
        renamed[name] = value
    return renamed


def load_checkpoint(path):
    """Our checkpoint as a dict ('config', 'config_type', 'model', extras), tensor names as today's model has
    them (an older file's renamed: LEGACY_PREFIXES). Raises WeightsError otherwise."""
    content = read_weights_file(path)
    if content.get('format') != CHECKPOINT_FORMAT:
        raise WeightsError(
            f'{path}: not a SeqPose checkpoint (no config inside); official DINOv2 / '
            'Depth-Anything-V2 files load with load_dinov2_weights / load_depth_anything_weights'
        )
    content['model'] = renamed_legacy_tensors(content['model'])
    average = (content.get('training') or {}).get('weight_average')
    if isinstance(average, dict) and isinstance(average.get('state'), dict):
        average['state'] = renamed_legacy_tensors(average['state'])
    return content


def average_checkpoints(paths, weights=None):
    """The weighted mean of the weights of SeqPose checkpoints of one model, as a checkpoint dict.

    Checkpoints that share a start (continuations of one checkpoint, or points along one run) lie in one basin
    of the loss, where the mean of their weights is usually at least as good as each (checkpoint averaging;
    "model soups", Wortsman et al., ICML 2022); models trained apart do not average. `weights` (one per path,
    >= 0, not all 0; default equal) are normalised to sum to 1. Floating-point tensors are averaged in float32
    and stored in the first file's dtype; integer buffers (BatchNorm's batch counters) are the first file's.
    The config and extras are the first file's, plus 'averaged_from': [{'path', 'weight'}]. Raises
    WeightsError naming the file whose model config or tensors differ from the first's."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise WeightsError('average_checkpoints: no checkpoint given')
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths):
        raise WeightsError(f'average_checkpoints: {len(weights)} weights for {len(paths)} checkpoints')
    if any(not w >= 0 for w in weights) or sum(weights) <= 0:
        raise WeightsError(f'average_checkpoints: weights must be >= 0 and not all 0, got {weights}')
    weights = [w / sum(weights) for w in weights]
    contents = [load_checkpoint(p) for p in paths]
    first, first_config = contents[0], model_config_from_checkpoint(contents[0], paths[0])
    for path, content in zip(paths[1:], contents[1:]):
        if model_config_from_checkpoint(content, path) != first_config:
            raise WeightsError(
                f'{path}: its model config differs from that of {paths[0]}; only checkpoints of one model average'
            )
        problems = _state_problems(first['model'], content['model'], names=(path.name, paths[0].name))
        if problems:
            raise WeightsError(f'{path}: its tensors differ from those of {paths[0]}:{problems}')
    state = {}
    for key, tensor in first['model'].items():
        if tensor.is_floating_point():
            mean = sum(w * content['model'][key].float() for w, content in zip(weights, contents))
            state[key] = mean.to(tensor.dtype)
        else:
            state[key] = tensor.clone()
    averaged = {k: v for k, v in first.items() if k != 'model'}
    averaged['averaged_from'] = [{'path': str(p), 'weight': w} for p, w in zip(paths, weights)]
    averaged['model'] = state
    return averaged


def model_config_from_checkpoint(content, path='checkpoint'):
    """The ModelConfig stored in one of our checkpoints (its `model` section, or the whole config of a
    ModelConfig-only checkpoint)."""
    values = content.get('config') or {}
    if content.get('config_type') != 'ModelConfig':
        values = values.get('model') or {}
    values = {name: value for name, value in values.items() if name not in MOVED_TO_INFERENCE}
    try:
        return from_dict(ModelConfig, values, f'{path}: model')
    except ConfigError as error:
        raise WeightsError(f'{path}: stored model config does not fit this version: {error}') from None
