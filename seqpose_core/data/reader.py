"""`NocsFrameReader`: everything of one frame of a split (images, intrinsics, meta, ground truth), checked
against each other.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqpose_core.data.annotation import FrameAnnotation, derive_annotation, load_label
from seqpose_core.data.files import (
    MASK_BACKGROUND,
    ODOMETRY_FILE,
    ObjectModelSizes,
    read_color,
    read_coord,
    read_depth,
    read_intrinsics_file,
    read_mask,
    read_meta,
    read_odometry_file,
)
from seqpose_core.data.layout import CAMERA_INTRINSICS, NATIVE_HW, REAL_INTRINSICS, NocsFormatError, resolve_split

# object-deformnet drops instances with fewer valid-depth mask pixels than this at 640x480; we scale it with
# the image area so that small renders keep proportionally small objects
MIN_PIXELS_AT_NATIVE = 64


@dataclass
class NocsFrame:
    """Everything read from one frame's files, at the native resolution."""

    scene: str
    frame: str
    prefix: Path
    color: np.ndarray  # (H, W, 3) uint8 RGB
    depth: np.ndarray  # (H, W) float32 metres, 0 = invalid
    instance_mask: np.ndarray  # (H, W) uint8, 255 = background
    K: np.ndarray  # (3, 3) float64
    meta: list  # [MetaEntry]
    annotation: FrameAnnotation
    coord: np.ndarray = field(default=None, repr=False)  # (H, W, 3) float32, only when read


class NocsFrameReader:
    """Reads frames of one split (`resolve_split` names) under a NOCS-layout root.

    `read(prefix)` -> NocsFrame. `use_labels=False` ignores `_label.pkl` files and always derives the GT.
    `min_pixels`: instances with fewer valid-depth pixels are dropped on the derived path (default: 64 at
    640x480, scaled with the image area, as object-deformnet)."""

    def __init__(self, root, split, use_labels=True, min_pixels=None, read_coord_map=False):
        self.root = Path(root)
        self.location = resolve_split(self.root, split)
        self.use_labels = use_labels
        self.min_pixels = min_pixels
        self.read_coord_map = read_coord_map
        self.model_sizes = ObjectModelSizes(self.root)
        self._intrinsics = {}

    @property
    def kind(self):
        return self.location.kind

    def intrinsics(self, scene_folder):
        scene_folder = Path(scene_folder)
        if scene_folder not in self._intrinsics:
            path = scene_folder / 'intrinsics.txt'
            if path.is_file():
                K = read_intrinsics_file(path)
            else:
                K = REAL_INTRINSICS if self.kind == 'real' else CAMERA_INTRINSICS
            self._intrinsics[scene_folder] = np.array(K, np.float64)
        return self._intrinsics[scene_folder]

    def odometry(self, scene_folder):
        """{frame number: odom_from_camera (4, 4)} from the scene's odometry.txt, or None when the scene has none
        (REAL275, CAMERA25: no odometry was recorded)."""
        path = Path(scene_folder) / ODOMETRY_FILE
        return read_odometry_file(path) if path.is_file() else None

    def _min_pixels(self, hw):
        if self.min_pixels is not None:
            return self.min_pixels
        return max(4, int(round(MIN_PIXELS_AT_NATIVE * hw[0] * hw[1] / (NATIVE_HW[0] * NATIVE_HW[1]))))

    def read(self, prefix):
        prefix = Path(prefix)
        color = read_color(f'{prefix}_color.png')
        depth = read_depth(f'{prefix}_depth.png')
        mask = read_mask(f'{prefix}_mask.png')
        meta = read_meta(f'{prefix}_meta.txt')
        for name, image in (('depth', depth), ('mask', mask)):
            if image.shape[:2] != color.shape[:2]:
                raise NocsFormatError(
                    f'{prefix}_{name}.png: size {image.shape[1]}x{image.shape[0]} differs from '
                    f'the color image ({color.shape[1]}x{color.shape[0]})'
                )
        meta_ids = {entry.instance_id for entry in meta}
        mask_ids = set(np.unique(mask).tolist()) - {MASK_BACKGROUND}
        unknown = sorted(mask_ids - meta_ids)
        if unknown:
            raise NocsFormatError(
                f'{prefix}_mask.png: instance id(s) {unknown} are not in {prefix}_meta.txt (ids {sorted(meta_ids)})'
            )
        K = self.intrinsics(prefix.parent)
        label_path = Path(f'{prefix}_label.pkl')
        coord = None
        if self.use_labels and label_path.is_file():
            annotation = load_label(label_path, meta, self.kind, self.location.subset, self.model_sizes)
            missing = sorted(set(annotation.instance_ids.tolist()) - mask_ids)
            if missing:
                raise NocsFormatError(f'{label_path}: instance id(s) {missing} do not occur in {prefix}_mask.png')
        else:
            coord = read_coord(f'{prefix}_coord.png')
            if coord.shape[:2] != color.shape[:2]:
                raise NocsFormatError(
                    f'{prefix}_coord.png: size {coord.shape[1]}x{coord.shape[0]} differs from '
                    f'the color image ({color.shape[1]}x{color.shape[0]})'
                )
            annotation = derive_annotation(
                mask,
                coord,
                depth,
                K,
                meta,
                self.kind,
                self.location.subset,
                self.model_sizes,
                self._min_pixels(mask.shape),
                prefix,
            )
        if self.read_coord_map and coord is None:
            coord = read_coord(f'{prefix}_coord.png')
        return NocsFrame(
            scene=prefix.parent.name,
            frame=prefix.name,
            prefix=prefix,
            color=color,
            depth=depth,
            instance_mask=mask,
            K=K,
            meta=meta,
            annotation=annotation,
            coord=coord,
        )
