"""NOCS data: readers of the official CAMERA / REAL layout, targets, transforms, frame and clip datasets."""
from seqpose_core.data.dataset import (NocsClipDataset, NocsFrameDataset, camera_motion_from_annotations,
                                       collate_clips)
from seqpose_core.data.layout import (CAMERA_INTRINSICS, REAL_INTRINSICS, NocsFormatError, enumerate_scenes,
                                      iter_scenes, resolve_split)
from seqpose_core.data.reader import NocsFrameReader

__all__ = ['NocsClipDataset', 'NocsFrameDataset', 'camera_motion_from_annotations', 'collate_clips',
           'CAMERA_INTRINSICS', 'REAL_INTRINSICS', 'NocsFormatError', 'NocsFrameReader', 'enumerate_scenes',
           'iter_scenes', 'resolve_split']
