"""The object's azimuth about its up axis, seen from the camera: classified into bins plus a residual.

A 6D rotation regressed with an L1 loss averages the hypotheses it cannot tell apart: a camera seen from behind
(a plain box) is its own 180-degree turn, a mug's handle half hidden reads left or right. The mean of two
opposite x columns is near zero, and Gram-Schmidt turns that into an arbitrary azimuth, so those classes never
learn one (weights/README.md, "Where the rotation fails": camera azimuth as good as random). Multi-bin
orientation (Mousavian et al., 3D Bounding Box Estimation, CVPR 2017) classifies the angle instead: the bins
hold every hypothesis with its probability and the best one is kept whole.

The angle is measured where the image determines it: about the object's up axis y, from the viewing ray
projected onto the plane perpendicular to y (an allocentric azimuth). The same appearance at two places in the
image then has the same label, while the egocentric x column differs by the angle between the two rays.

    basis(y, ray):  e1 = the ray's component perpendicular to y, normalised; e2 = y x e1
    x column      = cos(a) e1 + sin(a) e2,   a = centre of the best bin + its residual
Where the ray runs along y (looking straight down the up axis) the camera's x axis replaces it.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

_DEGENERATE = 1e-4


def bin_width(num_bins):
    return 2 * math.pi / num_bins


def bin_centres(num_bins, device=None, dtype=torch.float32):
    """(num_bins,) radians, the bins tiling (-pi, pi]."""
    return -math.pi + (torch.arange(num_bins, device=device, dtype=dtype) + 0.5) * bin_width(num_bins)


def azimuth_basis(up, ray):
    """up (..., 3) the object's y axis, ray (..., 3) camera-to-object direction (any lengths) -> e1, e2
    (..., 3): an orthonormal basis of the plane perpendicular to y, e1 along the ray's part in it."""
    up = F.normalize(up, dim=-1)
    ray = F.normalize(ray, dim=-1)
    in_plane = ray - (ray * up).sum(-1, keepdim=True) * up
    camera_x = torch.zeros_like(ray)
    camera_x[..., 0] = 1.0
    fallback = camera_x - (camera_x * up).sum(-1, keepdim=True) * up
    in_plane = torch.where(in_plane.norm(dim=-1, keepdim=True) > _DEGENERATE, in_plane, fallback)
    e1 = F.normalize(in_plane, dim=-1)
    return e1, torch.cross(up, e1, dim=-1)


def azimuth_of(x_column, up, ray):
    """The azimuth (...,) radians in (-pi, pi] of an object x column (..., 3) in azimuth_basis(up, ray)."""
    e1, e2 = azimuth_basis(up, ray)
    return torch.atan2((x_column * e2).sum(-1), (x_column * e1).sum(-1))


def x_column_of(azimuth, up, ray):
    """Inverse of azimuth_of: (...,) radians -> the unit x column (..., 3), perpendicular to up."""
    e1, e2 = azimuth_basis(up, ray)
    return torch.cos(azimuth)[..., None] * e1 + torch.sin(azimuth)[..., None] * e2


def azimuth_targets(azimuth, num_bins):
    """(...,) radians -> the bin (...,) long and the residual from its centre in half-bin units (...,) in [-1, 1]."""
    width = bin_width(num_bins)
    index = torch.floor((azimuth + math.pi) / width).long().clamp(0, num_bins - 1)
    residual = (azimuth - bin_centres(num_bins, azimuth.device, azimuth.dtype)[index]) / (width / 2)
    return index, residual.clamp(-1.0, 1.0)


def azimuth_bin_terms(logits, residual, azimuth):
    """The two terms that train the bins, summed over the n rows: cross-entropy of the bin holding `azimuth`
    (n,) radians under `logits` (n, bins), and L1 of that bin's `residual` (n, bins) against the target residual."""
    index, residual_target = azimuth_targets(azimuth, logits.shape[-1])
    classification = F.cross_entropy(logits, index, reduction='sum')
    offset = (residual.gather(-1, index[:, None])[:, 0] - residual_target).abs().sum()
    return classification, offset


class AzimuthBins(nn.Module):
    """(B, Q, C) queries -> bin logits (B, Q, n) and residuals (B, Q, n) in half-bin units (tanh: within the bin)."""

    def __init__(self, hidden_dim, num_bins):
        super().__init__()
        if num_bins < 2:
            raise ValueError(f'azimuth bins: expected at least 2, got {num_bins}')
        self.num_bins = num_bins
        self.linear = nn.Linear(hidden_dim, 2 * num_bins)
        nn.init.normal_(self.linear.weight, std=1e-3)
        nn.init.zeros_(self.linear.bias)

    def forward(self, queries):
        logits, residual = self.linear(queries).split(self.num_bins, dim=-1)
        return logits, torch.tanh(residual)

    def azimuth(self, logits, residual):
        """The best bin's centre plus its residual, (B, Q) radians."""
        best = logits.argmax(-1, keepdim=True)  # (B, Q, 1)
        centre = bin_centres(self.num_bins, logits.device, logits.dtype)[best[..., 0]]
        return centre + residual.gather(-1, best)[..., 0] * (bin_width(self.num_bins) / 2)
