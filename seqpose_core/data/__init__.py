"""NOCS data: readers of the official CAMERA / REAL layout, targets, transforms, frame and clip datasets.

Exports are resolved on first use, so that `seqpose_core.config` (which needs only `data.config`) does not
import the readers and datasets (and torch) with it.
"""

from seqpose_core import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _EXPORTS)
