"""The SeqPose network (DINOv2 + Depth-Anything-V2 DPT + STSQ decoder) and its checkpoints.

Imports are lazy so that `seqpose_core.config` (which needs only `model.config`) does not pull in torch.
"""

from seqpose_core import lazy_getattr

_EXPORTS = {
    'SeqPose': 'seqpose_core.model.seqpose',
    'build_model': 'seqpose_core.model.seqpose',
    'StageTimer': 'seqpose_core.timing',
    'MemoryQueue': 'seqpose_core.model.memory',
    'ModelConfig': 'seqpose_core.model.config',
    'save_checkpoint': 'seqpose_core.model.checkpoint',
    'load_checkpoint': 'seqpose_core.model.checkpoint',
    'load_model_from_checkpoint': 'seqpose_core.model.seqpose',
    'model_from_checkpoint': 'seqpose_core.model.seqpose',
    'WeightsError': 'seqpose_core.model.checkpoint',
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
