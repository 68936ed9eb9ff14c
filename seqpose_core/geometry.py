"""Rotations, poses, boxes and cameras; every function takes numpy arrays or torch tensors alike.

Conventions (docs/architecture.md): OpenCV camera frame (x right, y down, z forward), metres; NOCS object
frame (origin at the box centre, y up); 6D rotation = the first two columns of R (Zhou et al., CVPR 2019).
"""

import numpy as np
import torch

_EPS = 1e-8


def _is_torch(x):
    return isinstance(x, torch.Tensor)


def _normalize(v):
    if _is_torch(v):
        return v / v.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def _dot(a, b):
    """Inner product over the last axis, keeping it."""
    return (a * b).sum(-1, keepdim=True) if _is_torch(a) else (a * b).sum(-1, keepdims=True)


def _cross(a, b):
    return torch.cross(a, b, dim=-1) if _is_torch(a) else np.cross(a, b)


def _stack(items, axis):
    return torch.stack(items, dim=axis) if _is_torch(items[0]) else np.stack(items, axis=axis)


def _cat(items, axis):
    return torch.cat(items, dim=axis) if _is_torch(items[0]) else np.concatenate(items, axis=axis)


def _transpose(m):
    return m.transpose(-1, -2) if _is_torch(m) else np.swapaxes(m, -1, -2)


def rotation_6d_to_matrix(d6):
    """(..., 6) -> (..., 3, 3): Gram-Schmidt on the two predicted columns (x, y); z is their cross product.

    The y column is kept as predicted and x is made orthogonal to it: y is the symmetry axis of bottles,
    bowls, cans and mugs, whose x column is arbitrary (the loss compares it with the closest GT rotation about
    y) and must not bend the one axis that is defined."""
    a1, a2 = d6[..., 0:3], d6[..., 3:6]
    b2 = _normalize(a2)
    b1 = _normalize(a1 - _dot(b2, a1) * b2)
    b3 = _cross(b1, b2)
    return _stack([b1, b2, b3], axis=-1)  # columns


def matrix_to_rotation_6d(rotation):
    """(..., 3, 3) -> (..., 6): the first two columns, concatenated."""
    return _cat([rotation[..., :, 0], rotation[..., :, 1]], axis=-1)


def compose_scaled_pose(rotation, translation, scale=1.0):
    """[s R | t] as (..., 4, 4); `scale` is a scalar or (...) array."""
    if _is_torch(rotation):
        scale = torch.as_tensor(scale, dtype=rotation.dtype, device=rotation.device)
        pose = torch.zeros(rotation.shape[:-2] + (4, 4), dtype=rotation.dtype, device=rotation.device)
        pose[..., :3, :3] = rotation * scale[..., None, None] if scale.ndim else rotation * scale
    else:
        rotation = np.asarray(rotation, dtype=np.float64)
        scale = np.asarray(scale, dtype=np.float64)
        pose = np.zeros(rotation.shape[:-2] + (4, 4))
        pose[..., :3, :3] = rotation * (scale[..., None, None] if scale.ndim else scale)
    pose[..., :3, 3] = translation
    pose[..., 3, 3] = 1.0
    return pose


def decompose_scaled_pose(pose):
    """[s R | t] (..., 4, 4) -> (R, t, s) with s = cbrt(det(sR)), as the NOCS evaluation takes it."""
    scaled_rotation = pose[..., :3, :3]
    if _is_torch(pose):
        scale = torch.linalg.det(scaled_rotation).clamp_min(_EPS) ** (1.0 / 3.0)
    else:
        scale = np.cbrt(np.linalg.det(scaled_rotation))
    return scaled_rotation / scale[..., None, None], pose[..., :3, 3], scale


# Corner order: x, y, z signs of a unit cube, x slowest; edges are pairs that differ in one sign.
_UNIT_CORNERS = np.array([[x, y, z] for x in (1, -1) for y in (1, -1) for z in (1, -1)], dtype=np.float64) * 0.5
BOX_EDGES = tuple(
    (i, j) for i in range(8) for j in range(i + 1, 8) if int(np.sum(_UNIT_CORNERS[i] != _UNIT_CORNERS[j])) == 1
)


def box_corners(size):
    """(..., 3) box extents -> (..., 8, 3) corners of the box centred at the origin, axes along x, y, z."""
    if _is_torch(size):
        unit = torch.as_tensor(_UNIT_CORNERS, dtype=size.dtype, device=size.device)
    else:
        size = np.asarray(size, dtype=np.float64)
        unit = _UNIT_CORNERS
    return unit * size[..., None, :]


def transform_points(pose, points):
    """Apply (..., 4, 4) poses to (..., N, 3) points."""
    return points @ _transpose(pose[..., :3, :3]) + pose[..., None, :3, 3]


def project_points(points, K):
    """(..., N, 3) camera-frame points -> (..., N, 2) pixels (u, v); z is clamped away from 0, callers mask z<=0."""
    if _is_torch(points):
        z = points[..., 2:3].clamp_min(_EPS)
    else:
        z = np.maximum(points[..., 2:3], _EPS)
    uv = points[..., :2] / z
    fx, fy = K[..., None, 0, 0], K[..., None, 1, 1]
    cx, cy = K[..., None, 0, 2], K[..., None, 1, 2]
    return _stack([uv[..., 0] * fx + cx, uv[..., 1] * fy + cy], axis=-1)


def scale_intrinsics(K, from_hw, to_hw):
    """(..., 3, 3) intrinsics of an image of from_hw -> those of the same image resized to to_hw (a network input,
    a feature level). Pixel centres are at integers, so u' = (u + 0.5) * w' / w - 0.5. Returns a copy."""
    scale_x, scale_y = to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]
    K = K.clone() if _is_torch(K) else np.array(K, np.float64, copy=True)
    K[..., 0, 0] = K[..., 0, 0] * scale_x
    K[..., 0, 1] = K[..., 0, 1] * scale_x
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * scale_x - 0.5
    K[..., 1, 1] = K[..., 1, 1] * scale_y
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * scale_y - 0.5
    return K


def backproject(uv, depth, K):
    """Pixels (..., N, 2) with depths (..., N) -> camera-frame points (..., N, 3): the inverse of project_points."""
    fx, fy = K[..., None, 0, 0], K[..., None, 1, 1]
    cx, cy = K[..., None, 0, 2], K[..., None, 1, 2]
    x = (uv[..., 0] - cx) / fx * depth
    y = (uv[..., 1] - cy) / fy * depth
    return _stack([x, y, depth], axis=-1)


def backproject_depth_map(depth, K):
    """(H, W) depth map in metres -> (H, W, 3) camera-frame points (pixel centres at integer coordinates)."""
    height, width = depth.shape[-2:]
    if _is_torch(depth):
        v, u = torch.meshgrid(
            torch.arange(height, dtype=depth.dtype, device=depth.device),
            torch.arange(width, dtype=depth.dtype, device=depth.device),
            indexing='ij',
        )
    else:
        v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing='ij')
    uv = _stack([u, v], axis=-1).reshape(-1, 2)
    points = backproject(uv, depth.reshape(-1), K)
    return points.reshape(height, width, 3)


def rotation_error_deg(rotation_pred, rotation_gt, symmetric=False):
    """Angle (degrees) between rotations (..., 3, 3); `symmetric` (bool or (...) mask): the angle between the y
    axes only, for objects symmetric about their y axis."""
    if _is_torch(rotation_pred):
        trace = (rotation_pred * rotation_gt).sum((-1, -2))
        full = torch.rad2deg(torch.arccos(((trace - 1) / 2).clamp(-1, 1)))
        y_cos = (rotation_pred[..., :, 1] * rotation_gt[..., :, 1]).sum(-1)
        y_cos = y_cos / (rotation_pred[..., :, 1].norm(dim=-1) * rotation_gt[..., :, 1].norm(dim=-1)).clamp_min(_EPS)
        about_y = torch.rad2deg(torch.arccos(y_cos.clamp(-1, 1)))
        return torch.where(torch.as_tensor(symmetric, device=full.device), about_y, full)
    rotation_pred, rotation_gt = np.asarray(rotation_pred, np.float64), np.asarray(rotation_gt, np.float64)
    trace = (rotation_pred * rotation_gt).sum((-1, -2))
    full = np.degrees(np.arccos(np.clip((trace - 1) / 2, -1, 1)))
    y_pred, y_gt = rotation_pred[..., :, 1], rotation_gt[..., :, 1]
    y_cos = (y_pred * y_gt).sum(-1) / np.maximum(np.linalg.norm(y_pred, axis=-1) * np.linalg.norm(y_gt, axis=-1), _EPS)
    about_y = np.degrees(np.arccos(np.clip(y_cos, -1, 1)))
    return np.where(symmetric, about_y, full)


def translation_error(translation_pred, translation_gt):
    """Euclidean distance (..., 3) -> (...), in the unit of the inputs."""
    diff = translation_pred - translation_gt
    return diff.norm(dim=-1) if _is_torch(diff) else np.linalg.norm(diff, axis=-1)


def camera_motion_between(odom_from_previous, odom_from_current):
    """T_current_from_previous (4, 4), what the runner takes as camera motion, from the camera's poses in a fixed
    (odometry) frame at the previous and the current frame."""
    return np.linalg.inv(odom_from_current) @ odom_from_previous


def invert_rigid(pose):
    """Inverse of rigid (..., 4, 4) transforms without a general matrix inverse."""
    rotation_t = _transpose(pose[..., :3, :3])
    inverse = torch.zeros_like(pose) if _is_torch(pose) else np.zeros_like(pose)
    inverse[..., :3, :3] = rotation_t
    inverse[..., :3, 3] = -(rotation_t @ pose[..., :3, 3:4])[..., 0]
    inverse[..., 3, 3] = 1.0
    return inverse


def relative_camera_motion(object_pose_prev, object_pose_cur):
    """T_cur_from_prev from the rigid pose (4x4, object -> camera) of one static object in two frames.

    The object does not move, so a point p seen in the previous camera frame is at
    P_cur inv(P_prev) p in the current one.
    """
    return object_pose_cur @ invert_rigid(object_pose_prev)


def rotation_to_quaternion(rotation):
    """(3, 3) rotation -> unit quaternion (x, y, z, w), the geometry_msgs order (Shepperd's method)."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def quaternion_to_rotation(x, y, z, w):
    """Quaternion (x, y, z, w) -> (3, 3) rotation; a non-finite or zero quaternion is an error, not identity."""
    q = np.array([x, y, z, w], dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f'invalid orientation quaternion {q.tolist()}')
    x, y, z, w = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def umeyama(source, target, scale=None):
    """Similarity (s, R, t) minimising sum |s R source + t - target|^2 (Umeyama 1991); numpy only.

    source, target: (N, 3). `scale` given: only R and t are estimated (the Kabsch problem with a fixed s)."""
    source_mean, target_mean = source.mean(0), target.mean(0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)  # (3, 3)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflection[2, 2] = -1.0
    rotation = u @ reflection @ vt
    if scale is None:
        variance = (source_centred**2).sum() / len(source)
        scale = float(np.trace(np.diag(singular) @ reflection) / max(variance, 1e-12))
    translation = target_mean - scale * rotation @ source_mean
    return scale, rotation, translation


def robust_umeyama(source, target, scale=None, iterations=3, min_inlier_distance=0.005):
    """Umeyama with iterative outlier rejection: points whose residual exceeds max(3 x median residual,
    `min_inlier_distance` metres) are dropped and the fit repeated. Depth edges and mixed pixels at mask
    borders are the outliers (the NOCS/object-deformnet aligners use RANSAC for the same reason; this is
    deterministic)."""
    keep = np.ones(len(source), bool)
    for _ in range(iterations):
        fit = umeyama(source[keep], target[keep], scale)
        residual = np.linalg.norm(fit[0] * source @ fit[1].T + fit[2] - target, axis=1)
        new_keep = residual <= max(3.0 * float(np.median(residual[keep])), min_inlier_distance)
        if new_keep.sum() < 4 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return fit
