"""Ground truth of one frame (`FrameAnnotation`): from the object-deformnet `_label.pkl` when there is one,
otherwise derived the way those repositories do: the coord map of each instance is aligned to its
back-projected depth (Umeyama, `geometry.robust_umeyama`).
"""

from dataclasses import dataclass

import numpy as np

from seqpose_core import NUM_CLASSES
from seqpose_core.data.layout import NocsFormatError
from seqpose_core.geometry import backproject, compose_scaled_pose, robust_umeyama
from seqpose_core.safe_pickle import safe_load


@dataclass
class FrameAnnotation:
    """Per-object ground truth of one frame, in the object-deformnet label form (n objects)."""

    class_ids: np.ndarray  # (n,) int64, 1..6
    instance_ids: np.ndarray  # (n,) int64, mask values
    model_names: list  # (n,) str: the physical instance (MetaEntry.model_key)
    rotations: np.ndarray  # (n, 3, 3) float64, object -> camera
    translations: np.ndarray  # (n, 3) float64, metres, OpenCV camera frame
    scales: np.ndarray  # (n,) float64, s = box diagonal in metres
    normalised_sizes: np.ndarray  # (n, 3) float64, extents of the unit-diagonal model (gt_scales)
    handle_visibility: np.ndarray  # (n,) int64
    source: str = ''  # the label file, or 'derived' for the Umeyama path

    def __len__(self):
        return len(self.class_ids)

    @property
    def sizes(self):
        """(n, 3) metric extents = s * normalised extents."""
        return self.scales[:, None] * self.normalised_sizes

    @property
    def scaled_poses(self):
        """(n, 4, 4) [s R | t], the evaluation's gt_RTs."""
        return compose_scaled_pose(self.rotations, self.translations, self.scales).reshape(-1, 4, 4)


def _as_array(label, key, path, dtype, shape):
    """label[key] as an array of `shape` (None = any length on that axis); wrong shape -> error naming path."""
    try:
        value = np.asarray(label[key], dtype=dtype)
    except (TypeError, ValueError) as error:
        raise NocsFormatError(f'{path}: "{key}" is not numeric: {error}') from None
    if value.ndim != len(shape) or any(want is not None and got != want for got, want in zip(value.shape, shape)):
        raise NocsFormatError(
            f'{path}: "{key}" has shape {value.shape}, expected '
            f'{tuple("n" if s is None else s for s in shape)} with n = {shape[0]}'
        )
    if not np.all(np.isfinite(value)):
        raise NocsFormatError(f'{path}: "{key}" holds NaN or infinite values')
    return value


def load_label(path, meta, kind, subset, model_sizes):
    """object-deformnet `_label.pkl` -> FrameAnnotation, checked against the frame's meta."""
    label = safe_load(path, what='label pickle')
    if not isinstance(label, dict):
        raise NocsFormatError(f'{path}: expected a dict, got {type(label).__name__}')
    required = ('class_ids', 'instance_ids', 'scales', 'rotations', 'translations')
    absent = [key for key in required if key not in label]
    if absent:
        raise NocsFormatError(f'{path}: missing key(s) {absent}; has {sorted(label)}')
    class_ids = _as_array(label, 'class_ids', path, np.int64, (None,))
    count = len(class_ids)
    instance_ids = _as_array(label, 'instance_ids', path, np.int64, (count,))
    scales = _as_array(label, 'scales', path, np.float64, (count,))
    rotations = _as_array(label, 'rotations', path, np.float64, (count, 3, 3))
    translations = _as_array(label, 'translations', path, np.float64, (count, 3))
    if np.any(scales <= 0):
        raise NocsFormatError(f'{path}: "scales" must be positive, got {scales.tolist()}')
    # float32 storage: a rotation is orthonormal to ~1e-6; anything far off is not a rotation
    gram_error = np.abs(rotations @ np.swapaxes(rotations, 1, 2) - np.eye(3)).max(initial=0.0)
    if gram_error > 1e-3 or (count and np.any(np.linalg.det(rotations) < 0)):
        raise NocsFormatError(
            f'{path}: "rotations" are not proper rotation matrices (|R R^T - I| = '
            f'{gram_error:.3g}); a scaled [sR] here would make the pose wrong'
        )

    meta_by_id = {entry.instance_id: entry for entry in meta}
    entries = []
    for instance_id, class_id in zip(instance_ids, class_ids):
        entry = meta_by_id.get(int(instance_id))
        if entry is None:
            raise NocsFormatError(
                f"{path}: instance id {instance_id} is not in the frame's _meta.txt (ids {sorted(meta_by_id)})"
            )
        if entry.class_id != class_id or not 1 <= class_id <= NUM_CLASSES:
            raise NocsFormatError(
                f'{path}: instance {instance_id} has class {class_id} but _meta.txt says {entry.class_id}'
            )
        entries.append(entry)
    if 'model_list' in label:
        model_list = list(label['model_list'])
        if len(model_list) != count:
            raise NocsFormatError(f'{path}: "model_list" has {len(model_list)} entries for {count} objects')

    if 'size' in label:
        normalised_sizes = _as_array(label, 'size', path, np.float64, (count, 3))
    else:
        # object-deformnet's train labels carry no size: the model files give it (as its own training does)
        normalised_sizes = np.array(
            [model_sizes.normalised_extents(kind, subset, entry)[0] for entry in entries], np.float64
        ).reshape(count, 3)
    if 'handle_visibility' in label:
        handle_visibility = _as_array(label, 'handle_visibility', path, np.int64, (count,))
    else:
        handle_visibility = np.ones(count, np.int64)  # NOCS's default when the GT has none
    return FrameAnnotation(
        class_ids=class_ids,
        instance_ids=instance_ids,
        model_names=[entry.model_key for entry in entries],
        rotations=rotations,
        translations=translations,
        scales=scales,
        normalised_sizes=normalised_sizes,
        handle_visibility=handle_visibility,
        source=str(path),
    )


def derive_annotation(mask, coord, depth, K, meta, kind, subset, model_sizes, min_pixels, prefix):
    """Ground truth without a label file: for each meta instance (class > 0, present in the mask) with at least
    `min_pixels` valid-depth pixels, align its coord-map points (NOCS units) to its back-projected depth
    (metres) with a similarity transform. REAL models know their metric scale (obj_models txt), so only R and t
    are fitted there; CAMERA fits the scale too (object-deformnet lib/align.py does the same for CAMERA)."""
    present = set(np.unique(mask).tolist())
    rows = []
    for entry in meta:
        if entry.class_id == 0 or entry.instance_id not in present:
            continue
        pixels = (mask == entry.instance_id) & (depth > 0)
        if np.count_nonzero(pixels) < min_pixels:
            continue
        normalised, known_scale = model_sizes.normalised_extents(kind, subset, entry)
        v, u = np.nonzero(pixels)
        camera_points = backproject(np.stack([u, v], 1).astype(np.float64), depth[v, u].astype(np.float64), K)
        object_points = coord[v, u].astype(np.float64)
        scale, rotation, translation = robust_umeyama(object_points, camera_points, scale=known_scale)
        if not scale > 0:
            raise NocsFormatError(
                f'{prefix}_coord.png: instance {entry.instance_id}: the coord map does not align '
                'with the depth (degenerate or flat coordinates)'
            )
        rows.append((entry, rotation, translation, scale, normalised))
    return FrameAnnotation(
        class_ids=np.array([r[0].class_id for r in rows], np.int64),
        instance_ids=np.array([r[0].instance_id for r in rows], np.int64),
        model_names=[r[0].model_key for r in rows],
        rotations=np.array([r[1] for r in rows], np.float64).reshape(-1, 3, 3),
        translations=np.array([r[2] for r in rows], np.float64).reshape(-1, 3),
        scales=np.array([r[3] for r in rows], np.float64),
        normalised_sizes=np.array([r[4] for r in rows], np.float64).reshape(-1, 3),
        handle_visibility=np.ones(len(rows), np.int64),
        source='derived',
    )
