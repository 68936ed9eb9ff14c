"""Geometry-aware deformable cross-attention (eq. 8 of the paper): each query's learned 3D sampling points are
projected onto every fused level with the camera intrinsics and sampled bilinearly; with depth guidance
(`model.depth_guidance`) each point is also compared with the predicted depth at the pixel it lands on.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqpose_core.geometry import project_points

MIN_DEPTH = 1e-3  # metres: sampling points closer than this (or behind the camera) are masked


def fibonacci_sphere(num_points, radius):
    """(P, 3) points evenly spread on a sphere (P = 1: the centre): the initial 3D sampling pattern."""
    if num_points == 1:
        return torch.zeros(1, 3)
    index = torch.arange(num_points, dtype=torch.float32) + 0.5
    polar = torch.acos(1 - 2 * index / num_points)
    azimuth = math.pi * (1 + 5**0.5) * index
    return radius * torch.stack([polar.sin() * azimuth.cos(), polar.sin() * azimuth.sin(), polar.cos()], dim=-1)


def project_to_image(points, K, image_hw):
    """points (B, Q, P, 3) metres -> where they land in the image, once for every level and the depth map:
    grid (B, Q, P, 2) in grid_sample's normalised coordinates (align_corners=False: -1 and 1 are the image's
    outer edges) and validity (B, Q, P): in front of the camera and inside the image.

    Every level covers the whole image with its pixel centres at (i + 0.5) * W / w (geometry.scale_intrinsics),
    so the normalised position of a point is the same on every level: one projection serves them all."""
    height, width = image_hw
    uv = project_points(points.flatten(1, 2), K).view_as(points[..., :2])  # (B, Q, P, 2) input pixels
    grid = torch.stack([(uv[..., 0] + 0.5) / width, (uv[..., 1] + 0.5) / height], dim=-1) * 2 - 1
    valid = (points[..., 2] > MIN_DEPTH) & (grid.abs() <= 1).all(-1)
    return grid, valid


def level_pixels(grid, level_hw):
    """Normalised positions (..., 2) -> pixels (..., 2) of a level of level_hw (centres at integers)."""
    height, width = level_hw
    return torch.stack([(grid[..., 0] + 1) / 2 * width, (grid[..., 1] + 1) / 2 * height], dim=-1) - 0.5


def sample_levels(levels, grid, valid):
    """Bilinear samples of every level at the projected sampling points.

    levels: L x (B, C, h_l, w_l); grid (B, Q, P, 2) and valid (B, Q, P) from project_to_image. Returns samples
    (B, Q, L*P, C) (level-major) and validity (B, Q, L*P). One grid_sample per level, all queries and points at
    once (levels differ in size, so they cannot share one call). Channels-last levels (what the model produces)
    sample several times faster on CPU. At inference, levels from FeatureFusion carry one flat table of all
    levels and are sampled by `sample_level_table` instead (one gather for all levels; same values within float
    rounding)."""
    if getattr(levels, 'table', None) is not None and not torch.is_grad_enabled():
        return sample_level_table(levels, grid, valid)
    num_levels = len(levels)
    grid = grid.clamp(-2.0, 2.0).masked_fill(~valid[..., None], -2.0)  # invalid: sample zero padding
    samples = [
        F.grid_sample(level, grid, mode='bilinear', padding_mode='zeros', align_corners=False).permute(0, 2, 3, 1)
        for level in levels
    ]  # L x (B, Q, P, C)
    return torch.cat(samples, dim=2), valid.repeat(1, 1, num_levels)


def sample_level_table(levels, grid, valid):
    """sample_levels for levels that share one channels-last table (B, sum h_l w_l, C) (`levels.table`, as
    FeatureFusion returns at inference): bilinear sampling with zero padding written out (4 corner rows and
    weights per sample, out-of-image corners weigh 0, exactly grid_sample's align_corners=False rule) and one
    weighted gather (embedding_bag) over all levels, queries and points. Inference only (no autograd)."""
    table = levels.table
    batch, total, channels = table.shape
    _, queries, num_points = valid.shape
    sizes = [tuple(level.shape[-2:]) for level in levels]
    num_levels = len(sizes)
    grid = grid.masked_fill(~valid[..., None], 0.0)
    uv = torch.stack([level_pixels(grid, hw) for hw in sizes], dim=2)  # (B, Q, L, P, 2)
    valid = valid[:, :, None].expand(batch, queries, num_levels, num_points)  # (B, Q, L, P)
    wh = uv.new_tensor([[w, h] for h, w in sizes]).view(1, 1, num_levels, 1, 2)
    offsets = torch.tensor([0] + [h * w for h, w in sizes[:-1]], device=table.device).cumsum(0)
    base = offsets.view(1, 1, num_levels, 1) + total * torch.arange(batch, device=table.device).view(
        batch, 1, 1, 1
    )  # (B, 1, L, 1)
    corner0 = uv.floor()
    frac = uv - corner0
    corner0 = corner0.long()
    index, weight = [], []
    width, height = wh[..., 0].long(), wh[..., 1].long()
    for dy in (0, 1):
        for dx in (0, 1):
            x = corner0[..., 0] + dx
            y = corner0[..., 1] + dy
            w = (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height) & valid
            index.append(torch.where(inside, base + y * width + x, base))
            weight.append(w * inside)
    index = torch.stack(index, dim=-1).view(-1, 4)  # (B*Q*L*P, 4)
    weight = torch.stack(weight, dim=-1).view(-1, 4).to(table.dtype)
    samples = F.embedding_bag(index, table.reshape(batch * total, channels), per_sample_weights=weight, mode='sum')
    samples = samples.view(batch, queries, num_levels * num_points, channels)
    return samples, valid.reshape(batch, queries, num_levels * num_points)


def depth_residual(points, depth_map, grid, valid):
    """How far each 3D sampling point lies from the predicted surface, along its viewing ray.

    points (B, Q, P, 3) metres; depth_map (B, 1, h, w) metres (the dense depth head at its own grid); grid and
    valid from project_to_image. Returns log(z_point / depth at the point's pixel) (B, Q, P): 0 on the surface,
    > 0 behind it, < 0 in front of it; 0 for points behind the camera or outside the image (they are masked
    anyway)."""
    batch, queries, num_points, _ = points.shape
    grid = grid.clamp(-1.0, 1.0).reshape(batch, queries * num_points, 1, 2)
    surface = F.grid_sample(
        depth_map, grid.to(depth_map.dtype), mode='bilinear', padding_mode='border', align_corners=False
    ).view(batch, queries, num_points)  # (B, Q, P) metres
    residual = torch.log(points[..., 2].clamp_min(MIN_DEPTH)) - torch.log(surface.clamp_min(MIN_DEPTH))
    return residual * valid.to(residual.dtype)


class GeometryDeformableCrossAttention(nn.Module):
    """Eq. (8): per query, P learned 3D points around its reference point, projected onto every fused level,
    sampled bilinearly, weighted per head (softmax over levels x points, masked points count zero).

    Depth guidance (`depth_guidance`, the paper's "guided by the estimated depth"): every sampling point is
    compared with the predicted depth at the pixel it projects to (`depth_residual`). A point off the surface
    along its ray keeps exp(-a_h |log(z / D)|) of its attention weight (a_h > 0 learnt per head), and the
    residuals themselves enter the query (a linear map, zero at the start). Two queries on the same viewing ray
    sample the same pixels, so without this they see the same features; with it, the one at the object's depth
    sees it clearly and learns a high score, the one in front or behind sees it faintly and learns to step back.
    """

    def __init__(
        self, hidden_dim, num_heads, num_levels, num_points, sampling_radius=0.05, max_offset=0.3, depth_guidance=False
    ):
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f'hidden_dim {hidden_dim} is not divisible by decoder_heads {num_heads}')
        if not 0 < sampling_radius < max_offset:
            raise ValueError(f'sampling_radius {sampling_radius} must be in (0, max_sampling_offset {max_offset})')
        self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
        self.max_offset = max_offset
        self.sampling_offsets = nn.Linear(hidden_dim, num_points * 3)  # metres (before the bound), camera frame
        self.attention_weights = nn.Linear(hidden_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(hidden_dim, hidden_dim)
        self.output_proj = nn.Linear(hidden_dim, hidden_dim)
        nn.init.zeros_(self.sampling_offsets.weight)
        with torch.no_grad():
            initial = fibonacci_sphere(num_points, sampling_radius).flatten()
            self.sampling_offsets.bias.copy_(max_offset * torch.atanh(initial / max_offset))
        nn.init.zeros_(self.attention_weights.weight)  # uniform weights at the start
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)
        self.depth_guidance = depth_guidance
        if depth_guidance:
            # softplus(2.95) ~ 3: a point 20 % off the surface starts with ~55 % of its weight
            self.depth_sharpness = nn.Parameter(torch.full((num_heads,), 2.95))
            self.depth_residual_proj = nn.Linear(num_points, hidden_dim)
            nn.init.zeros_(self.depth_residual_proj.weight)
            nn.init.zeros_(self.depth_residual_proj.bias)

    def sampling_points(self, query, reference_points):
        """(B, Q, C), (B, Q, 3) metres -> (B, Q, P, 3) metres.

        Offsets are bounded (max_offset * tanh(raw / max_offset), ~raw near the start): unbounded, they grew to
        1-2 m in training, so most points projected outside the image, sampled zero padding and got no gradient
        back — the queries stopped seeing the image."""
        batch, queries, _ = query.shape
        raw = self.sampling_offsets(query).view(batch, queries, self.num_points, 3)
        offsets = self.max_offset * torch.tanh(raw / self.max_offset)
        return reference_points[:, :, None] + offsets

    def forward(self, query, reference_points, levels, K, image_hw, depth_map=None):
        batch, queries, dim = query.shape
        heads = self.num_heads
        points = self.sampling_points(query, reference_points)  # (B, Q, P, 3)
        grid, point_valid = project_to_image(points, K, image_hw)  # (B, Q, P, 2), (B, Q, P)
        samples, valid = sample_levels(levels, grid, point_valid)  # (B, Q, L*P, C), (B, Q, L*P)
        weights = self.attention_weights(query).view(batch, queries, heads, -1).softmax(-1)
        weights = weights * valid[:, :, None].to(weights.dtype)  # (B, Q, heads, L*P)
        depth_term = 0.0
        if self.depth_guidance:
            if depth_map is None:
                raise ValueError('depth-guided cross-attention needs the predicted depth map (depth_map)')
            residual = depth_residual(points, depth_map, grid, point_valid)  # (B, Q, P)
            sharpness = F.softplus(self.depth_sharpness).view(1, 1, heads, 1)
            gate = torch.exp(-sharpness * residual.abs()[:, :, None])  # (B, Q, heads, P)
            weights = weights * gate.repeat(1, 1, 1, self.num_levels)  # samples are level-major (L*P)
            depth_term = self.depth_residual_proj(residual.clamp(-1.0, 1.0))  # (B, Q, C)
        # The value projection is linear, so projecting the weighted sum per head equals summing projected
        # samples -- but costs Q*C*C instead of Q*L*P*C*C (or a projection of every pixel of every level).
        aggregated = torch.einsum('bqhn,bqnc->bqhc', weights, samples)  # (B, Q, heads, C)
        weight_v = self.value_proj.weight.view(heads, dim // heads, dim)
        values = torch.einsum('bqhc,hdc->bqhd', aggregated, weight_v)
        values = values + weights.sum(-1, keepdim=True) * self.value_proj.bias.view(heads, dim // heads)
        return self.output_proj(values.reshape(batch, queries, dim)) + depth_term  # (B, Q, C)
