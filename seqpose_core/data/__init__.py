"""NOCS data: readers of the official CAMERA / REAL layout, targets, transforms, frame and clip datasets.

Exports are resolved on first use, so that `seqpose_core.config` (which needs only `data.config`) does not
import the readers and datasets (and torch) with it.
"""
_EXPORTS = {
    'NocsClipDataset': 'seqpose_core.data.dataset',
    'NocsFrameDataset': 'seqpose_core.data.dataset',
    'camera_motion_from_annotations': 'seqpose_core.data.dataset',
    'collate_clips': 'seqpose_core.data.dataset',
    'CAMERA_INTRINSICS': 'seqpose_core.data.layout',
    'REAL_INTRINSICS': 'seqpose_core.data.layout',
    'NocsFormatError': 'seqpose_core.data.layout',
    'enumerate_scenes': 'seqpose_core.data.layout',
    'iter_scenes': 'seqpose_core.data.layout',
    'resolve_split': 'seqpose_core.data.layout',
    'NocsFrameReader': 'seqpose_core.data.reader',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
