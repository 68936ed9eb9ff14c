"""Ground truth as the matcher and the losses want it, and the symmetric-object rotation target.

Symmetric objects (bottle, bowl, can, and mugs whose handle is not visible) look the same under any rotation
about their y (up) axis, so their GT rotation is only defined up to such a rotation. We keep the full 6D L1
loss (a well-conditioned target for both predicted columns, which Gram-Schmidt needs: the x column is
normalised first and the y column is orthogonalised against it) but replace the GT x column by the member of
the GT's y-rotation family closest to the prediction: the family's x columns are
cos(a) x + sin(a) z (R @ Ry(-a)), and the one nearest to a predicted column p is p projected on the GT's
x-z plane, normalised. The target therefore never penalises a rotation about y; it falls back to the GT x
column when p is (nearly) parallel to y, where every member is equally far.
"""

import torch
import torch.nn.functional as F

from seqpose_core import CLASS_NAMES, SYMMETRIC_CLASS_NAMES
from seqpose_core.geometry import matrix_to_rotation_6d, project_points
from seqpose_core.model.proposals import cell_grid

SYMMETRIC_CLASS_IDS = tuple(CLASS_NAMES.index(name) + 1 for name in SYMMETRIC_CLASS_NAMES)
MUG_CLASS_ID = CLASS_NAMES.index('mug') + 1
_DEGENERATE = 1e-6


def symmetric_mask(class_ids, handle_visibility=None):
    """(n,) class ids 1..6 (+ (n,) handle visibility) -> (n,) bool: rotation about y is unobservable."""
    symmetric = torch.zeros_like(class_ids, dtype=torch.bool)
    for symmetric_id in SYMMETRIC_CLASS_IDS:
        symmetric |= class_ids == symmetric_id
    if handle_visibility is not None:
        symmetric |= (class_ids == MUG_CLASS_ID) & (handle_visibility.to(class_ids.device) == 0)
    return symmetric


def frame_targets(batch, index, device=None):
    """Targets of sample `index` of a collated frame batch (architecture.md, Data) as a dict of tensors:
    labels (n,) 0..5 (class_id - 1), translation (n, 3), rotation6d (n, 6), size (n, 3), symmetric (n,)."""
    class_ids = batch['gt_class_ids'][index].long()
    rotations = batch['gt_rotations'][index].float()
    handle = batch.get('gt_handle_visibility')
    handle = handle[index] if handle is not None else None
    targets = {
        'labels': class_ids - 1,
        'translation': batch['gt_translations'][index].float(),
        'rotation6d': matrix_to_rotation_6d(rotations).reshape(-1, 6),
        'size': batch['gt_sizes'][index].float(),
        'symmetric': symmetric_mask(class_ids, handle),
    }
    if device is not None:
        targets = {key: value.to(device) for key, value in targets.items()}
    return targets


def batch_targets(batch, device=None):
    """All samples of a collated frame batch -> list of target dicts."""
    return [frame_targets(batch, index, device) for index in range(len(batch['gt_class_ids']))]


def closest_symmetric_rotation6d(pred_rotation6d, gt_rotation6d, symmetric):
    """Rotation-6D targets that ignore rotation about y for symmetric objects.

    pred_rotation6d (..., 6) and gt_rotation6d (..., 6) broadcast together; symmetric (...) bool. Returns
    the GT 6D (broadcast shape) with the x column of symmetric entries replaced by the family member nearest
    to the prediction's x column (see the module docstring). Never carries gradient.
    """
    pred_rotation6d = pred_rotation6d.detach()
    gt_x, gt_y = gt_rotation6d[..., 0:3], gt_rotation6d[..., 3:6]
    gt_z = torch.cross(gt_x, gt_y, dim=-1)
    pred_x = pred_rotation6d[..., 0:3]
    along_x = (pred_x * gt_x).sum(-1, keepdim=True)
    along_z = (pred_x * gt_z).sum(-1, keepdim=True)
    in_plane = along_x * gt_x + along_z * gt_z
    norm = in_plane.norm(dim=-1, keepdim=True)
    nearest_x = torch.where(norm > _DEGENERATE, in_plane / norm.clamp_min(_DEGENERATE), gt_x.expand_as(in_plane))
    symmetric_target = torch.cat([nearest_x, gt_y.expand_as(nearest_x)], dim=-1)
    gt_full = gt_rotation6d.expand_as(symmetric_target)
    return torch.where(symmetric[..., None], symmetric_target, gt_full)


def resize_labels_nearest(target, size):
    """Bring a dense target (B, C, H, W) or (B, H, W) to the prediction's (h, w) without mixing labels: each
    output cell takes the value of the input pixel under its centre (pixel centres at integers, as in
    `geometry.scale_intrinsics`). mode='nearest' would take the cell's top-left pixel instead, half a cell
    up and left of where the cell's (u, v) says it is."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    squeeze = target.dim() == 3
    resized = F.interpolate((target[:, None] if squeeze else target).float(), size=size, mode='nearest-exact')
    resized = resized[:, 0] if squeeze else resized
    return resized.to(target.dtype)


def proposal_targets(instance_index, labels, translations, K_level, level_hw):
    """Per-cell targets of one frame for the object-centre proposal head (model.proposals).

    instance_index (H, W) long: the index into the frame's GT list of the object each input pixel shows
    (anything >= n: none); labels (n,) 0..5; translations (n, 3) metres; K_level (3, 3) of the proposal level
    (h, w). Each cell takes the object under its centre pixel (nearest resize, labels never mix). Returns
    class (h*w,) long (-1: background) and centre (h*w, 3) targets (du, dv, log z); background rows are 0."""
    cells = resize_labels_nearest(instance_index[None], tuple(level_hw))[0].flatten()  # (h*w,)
    foreground = cells < len(labels)
    target_class = torch.full_like(cells, -1)
    centre = torch.zeros(cells.shape[0], 3, device=translations.device, dtype=translations.dtype)
    if not foreground.any():
        return target_class, centre
    index = cells[foreground]
    target_class[foreground] = labels[index]
    t = translations[index]  # (m, 3)
    uv = project_points(t[None], K_level)[0]  # (m, 2)
    grid = cell_grid(level_hw, t.device, t.dtype)[foreground]
    centre[foreground] = torch.cat([uv - grid, t[:, 2:3].clamp_min(1e-3).log()], dim=-1)
    return target_class, centre
