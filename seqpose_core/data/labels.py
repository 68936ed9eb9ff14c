"""Per-frame labels of a training / evaluation sample from a NOCS frame: per-object GT arrays, semantic mask,
instance index map, surface normals from depth."""

import numpy as np

from seqpose_core.data.files import MASK_BACKGROUND
from seqpose_core.geometry import backproject_depth_map

SEMANTIC_IGNORE = 255


def object_targets(annotation):
    """FrameAnnotation -> dict of numpy arrays in the frame-sample names (docs/architecture.md, Data):
    gt_class_ids (n,), gt_rotations (n, 3, 3), gt_translations (n, 3) m, gt_sizes (n, 3) m (= s x normalised
    extents), gt_handle_visibility (n,), gt_RTs (n, 4, 4) = [s R | t] and gt_scales (n, 3) = normalised extents
    (the evaluation form), gt_instance_ids (n,)."""
    count = len(annotation)
    return {
        'gt_class_ids': annotation.class_ids.astype(np.int64).reshape(count),
        'gt_rotations': annotation.rotations.astype(np.float32).reshape(count, 3, 3),
        'gt_translations': annotation.translations.astype(np.float32).reshape(count, 3),
        'gt_sizes': annotation.sizes.astype(np.float32).reshape(count, 3),
        'gt_handle_visibility': annotation.handle_visibility.astype(np.int64).reshape(count),
        'gt_RTs': annotation.scaled_poses.astype(np.float32).reshape(count, 4, 4),
        'gt_scales': annotation.normalised_sizes.astype(np.float32).reshape(count, 3),
        'gt_instance_ids': annotation.instance_ids.astype(np.int64).reshape(count),
    }


def semantic_mask(instance_mask, meta):
    """(H, W) instance ids (255 background) + meta -> (H, W) int64 class ids: 0 background (and class-0
    distractors, which are not one of the categories), 1..6 for the meta's class of each instance. Every
    instance of a category is labelled, including those too small to carry a pose label."""
    lookup = np.zeros(256, np.int64)
    for entry in meta:
        lookup[entry.instance_id] = entry.class_id
    lookup[MASK_BACKGROUND] = 0
    return lookup[instance_mask]


def instance_index_map(instance_mask, instance_ids):
    """(H, W) instance ids + the frame's GT instance ids (n,) -> (H, W) int64: for each pixel the index of its
    object in the GT list (the order of `object_targets`), 255 where it shows none of them (background,
    distractors, instances without a pose label)."""
    lookup = np.full(256, MASK_BACKGROUND, np.int64)
    for index, instance_id in enumerate(np.asarray(instance_ids).reshape(-1)):
        if 0 <= int(instance_id) < MASK_BACKGROUND:
            lookup[int(instance_id)] = index
    return lookup[instance_mask]


def depth_normals(depth, K, max_relative_jump=0.1):
    """Unit surface normals (H, W, 3) in the camera frame from a depth map (H, W) metres and its intrinsics.

    n = (P(u+1) - P(u-1)) x (P(v+1) - P(v-1)) of the back-projected neighbours, flipped to face the camera
    (n . P < 0). Zero where the pixel or one of its four neighbours has no depth, at the image border, and
    across depth discontinuities (a neighbour's depth differing by more than `max_relative_jump` of the
    pixel's): a normal spanning an occlusion edge belongs to no surface."""
    depth = np.asarray(depth, np.float64)
    points = backproject_depth_map(depth, np.asarray(K, np.float64))  # (H, W, 3)
    normals = np.zeros_like(points)
    valid = depth > 0
    inner = np.zeros_like(valid)
    inner[1:-1, 1:-1] = valid[1:-1, 1:-1] & valid[1:-1, :-2] & valid[1:-1, 2:] & valid[:-2, 1:-1] & valid[2:, 1:-1]
    if max_relative_jump is not None:
        centre = depth[1:-1, 1:-1]
        limit = max_relative_jump * centre
        smooth = (np.abs(depth[1:-1, 2:] - depth[1:-1, :-2]) <= 2 * limit) & (
            np.abs(depth[2:, 1:-1] - depth[:-2, 1:-1]) <= 2 * limit
        )
        inner[1:-1, 1:-1] &= smooth
    d_u = points[1:-1, 2:] - points[1:-1, :-2]  # (H-2, W-2, 3)
    d_v = points[2:, 1:-1] - points[:-2, 1:-1]
    cross = np.cross(d_u, d_v)
    towards_camera = np.where((cross * points[1:-1, 1:-1]).sum(-1, keepdims=True) > 0, -cross, cross)
    length = np.linalg.norm(towards_camera, axis=-1, keepdims=True)
    normals[1:-1, 1:-1] = towards_camera / np.maximum(length, 1e-12)
    inner[1:-1, 1:-1] &= length[..., 0] > 1e-12
    normals[~inner] = 0.0
    return normals.astype(np.float32)
