"""Spatial-temporal sparse query network (section 3.3): 3D query anchors, pose-aware layer norm, temporal
cross-attention (eq. 7), geometry-aware deformable cross-attention (eq. 8) and the refining decoder stack.

Queries live in the camera frame: each has a content vector (C) and a 3D reference point. Reference points are
kept normalised to the model's position_range box ([0, 1]^3, refined in inverse-sigmoid space as DETR3D);
metric points are used for the projection.

Eq. 6 / StreamPETR: when the memory holds a previous frame, its top-K queries are prepended to the current
anchors, so the decoder then runs on Q_total = K + num_queries queries (propagated first); older memory frames
are extra keys/values of the temporal attention. With an empty memory (single frame) Q_total = num_queries and
the temporal attention reduces to self-attention over the current queries, as the paper states for SF.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from seqpose_core.geometry import project_points, scale_intrinsics
from seqpose_core.model.pose_head import PoseHead, PositionRange
from seqpose_core.model.proposals import ProposalQueries

MOTION_DIM = 13      # pose-aware LN input: rotation (9) + translation (3) of T_current_from_origin, age (1)
MIN_DEPTH = 1e-3     # metres: sampling points closer than this (or behind the camera) are masked


# --- embeddings ------------------------------------------------------------------------------------------------
def sine_embedding(values, num_feats, temperature=10000.0):
    """(..., D) -> (..., D * num_feats) sin/cos features (DETR/PETR positional encoding; inputs ~[0, 1])."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=values.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode='floor') / num_feats)
    angles = values[..., None].float() * (2 * math.pi) / dim_t                     # (..., D, F)
    embedding = torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1).flatten(-2)
    return embedding.flatten(-2).to(values.dtype)


def mlp(in_dim, hidden_dim, out_dim):
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


def motion_vector(motion, ages):
    """(B, n, 4, 4) T_current_from_origin and (B, n) ages -> (B, n, 13) pose-aware LN inputs."""
    return torch.cat([motion[..., :3, :3].flatten(-2), motion[..., :3, 3], ages[..., None]], dim=-1)


def identity_motion_vector(batch, count, device, dtype):
    eye = torch.eye(4, device=device, dtype=dtype).expand(batch, count, 4, 4)
    return motion_vector(eye, torch.zeros(batch, count, device=device, dtype=dtype))


def fibonacci_sphere(num_points, radius):
    """(P, 3) points evenly spread on a sphere (P = 1: the centre): the initial 3D sampling pattern."""
    if num_points == 1:
        return torch.zeros(1, 3)
    index = torch.arange(num_points, dtype=torch.float32) + 0.5
    polar = torch.acos(1 - 2 * index / num_points)
    azimuth = math.pi * (1 + 5 ** 0.5) * index
    return radius * torch.stack([polar.sin() * azimuth.cos(), polar.sin() * azimuth.sin(), polar.cos()], dim=-1)


class QueryAnchors(nn.Module):
    """Learnable 3D query anchors: content embeddings (Q, C) + normalised reference points (Q, 3).

    Initial anchors fill the camera frustum rather than a box: a query can only move towards an object it
    sees, and it sees what its sampling points project onto. Anchors spread evenly over the image's viewing
    directions (tan of the half field of view, `anchor_fov`) and over depth (`anchor_range` z bounds) give
    every object in view several nearby anchors from the first step; a box in metres would put many anchors
    outside the image (near the camera) and leave gaps far away.
    """

    def __init__(self, num_queries, hidden_dim, anchor_range, position_range: PositionRange, anchor_fov=None):
        super().__init__()
        self.content = nn.Embedding(num_queries, hidden_dim)
        bounds = torch.as_tensor(anchor_range, dtype=torch.float32).reshape(2, 3)
        if anchor_fov:
            tan_half = torch.as_tensor(anchor_fov, dtype=torch.float32)                 # (2,) x, y
            directions = (stratified_unit_square(num_queries) * 2 - 1) * tan_half      # (Q, 2)
            depth = bounds[0, 2] + torch.rand(num_queries) * (bounds[1, 2] - bounds[0, 2])
            metric = torch.cat([directions * depth[:, None], depth[:, None]], dim=-1)  # (Q, 3)
        else:
            metric = bounds[0] + torch.rand(num_queries, 3) * (bounds[1] - bounds[0])
        self.reference_points = nn.Parameter(position_range.normalize(metric).clamp(1e-3, 1 - 1e-3))

    def forward(self, batch):
        content = self.content.weight[None].expand(batch, -1, -1)                # (B, Q, C)
        reference = self.reference_points[None].expand(batch, -1, -1)            # (B, Q, 3) in [0, 1]
        return content, reference


def stratified_unit_square(count):
    """(count, 2) points in [0, 1]^2, one jittered sample per cell of a near-square grid (even coverage)."""
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    cells = torch.randperm(rows * columns)[:count]
    jitter = torch.rand(count, 2)
    return torch.stack([(cells % columns + jitter[:, 0]) / columns, (cells // columns + jitter[:, 1]) / rows], dim=-1)


class PoseAwareLayerNorm(nn.Module):
    """StreamPETR's motion-aware LN: LN without affine, scale/shift predicted from the motion (+age) input.

    Initialised so that gamma = 1 and beta = 0 for any input: a plain LN until training learns otherwise."""

    def __init__(self, motion_dim, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.reduce = nn.Sequential(nn.Linear(motion_dim, dim), nn.ReLU())
        self.gamma = nn.Linear(dim, dim)
        self.beta = nn.Linear(dim, dim)
        nn.init.zeros_(self.gamma.weight)
        nn.init.ones_(self.gamma.bias)
        nn.init.zeros_(self.beta.weight)
        nn.init.zeros_(self.beta.bias)

    def modulation(self, motion):
        """(B, n, 13) motion -> (gamma, beta), each (B, n, C): depends on the motion only, so a caller that
        normalises several inputs under the same motion (the decoder layers) computes it once."""
        condition = self.reduce(motion)
        return self.gamma(condition), self.beta(condition)

    def forward(self, x, motion, modulation=None):               # x (B, n, C), motion (B, n, 13)
        gamma, beta = self.modulation(motion) if modulation is None else modulation
        return torch.addcmul(beta, gamma, self.norm(x))          # gamma * LN(x) + beta


# --- geometry-aware deformable cross-attention -----------------------------------------------------------------
def project_to_level(points, K, image_hw, level_hw):
    """points (B, Q, P, 3) metres -> level pixels (B, Q, P, 2) and a validity mask (B, Q, P): in front of the
    camera and inside the level's image."""
    batch, queries, num_points, _ = points.shape
    K_level = scale_intrinsics(K, image_hw, level_hw)
    uv = project_points(points.reshape(batch, -1, 3), K_level).reshape(batch, queries, num_points, 2)
    height, width = level_hw
    valid = ((points[..., 2] > MIN_DEPTH)
             & (uv[..., 0] >= -0.5) & (uv[..., 0] <= width - 0.5)
             & (uv[..., 1] >= -0.5) & (uv[..., 1] <= height - 0.5))
    return uv, valid


def _project_levels(sizes, points, K, image_hw):
    """Projection onto every level at once (stacked level intrinsics, the arithmetic of project_to_level):
    uv (B, L, Q, P, 2) level pixels, valid (B, L, Q, P), wh (1, L, 1, 1, 2) level widths and heights."""
    K_levels = torch.stack([scale_intrinsics(K, image_hw, hw) for hw in sizes], dim=1)     # (B, L, 3, 3)
    K_levels = K_levels[:, :, None, None]                                                     # (B, L, 1, 1, 3, 3)
    z = points[..., 2:3].clamp_min(1e-8)                      # geometry.project_points' clamp (its _EPS)
    xy = (points[..., :2] / z)[:, None]                                                       # (B, 1, Q, P, 2)
    uv = torch.stack([xy[..., 0] * K_levels[..., 0, 0] + K_levels[..., 0, 2],
                      xy[..., 1] * K_levels[..., 1, 1] + K_levels[..., 1, 2]], dim=-1)        # (B, L, Q, P, 2)
    wh = uv.new_tensor([[w, h] for h, w in sizes]).view(1, len(sizes), 1, 1, 2)
    valid = ((points[:, None, ..., 2] > MIN_DEPTH)
             & (uv >= -0.5).all(-1) & (uv <= wh - 0.5).all(-1))                                 # (B, L, Q, P)
    return uv, valid, wh


def sample_levels(levels, points, K, image_hw):
    """Bilinear samples of every level at the projections of the 3D points.

    levels: L x (B, C, h_l, w_l); points (B, Q, P, 3) metres; K (B, 3, 3) for image_hw.
    Returns samples (B, Q, L*P, C) and validity (B, Q, L*P). The projection, masking and grid arithmetic run
    once for all levels; then one grid_sample per level, all queries and points at once (levels differ in
    size, so they cannot share one call). Channels-last levels (what the model produces) sample several times
    faster on CPU. At inference, levels from FeatureFusion carry one flat table of all levels and are sampled
    by `sample_level_table` instead (one gather for all levels; same values within float rounding)."""
    if getattr(levels, 'table', None) is not None and not torch.is_grad_enabled():
        return sample_level_table(levels, points, K, image_hw)
    batch, queries, num_points, _ = points.shape
    num_levels = len(levels)
    uv, valid, wh = _project_levels([tuple(level.shape[-2:]) for level in levels], points, K, image_hw)
    grid = ((uv + 0.5) / wh * 2 - 1).clamp(-2.0, 2.0)                        # align_corners=False convention
    grid = grid.masked_fill(~valid[..., None], -2.0)                          # invalid: sample zero padding
    samples = [F.grid_sample(level, grid[:, index], mode='bilinear', padding_mode='zeros', align_corners=False)
               .permute(0, 2, 3, 1) for index, level in enumerate(levels)]                  # L x (B, Q, P, C)
    return torch.cat(samples, dim=2), valid.permute(0, 2, 1, 3).reshape(batch, queries, num_levels * num_points)


def sample_level_table(levels, points, K, image_hw):
    """sample_levels for levels that share one channels-last table (B, sum h_l w_l, C) (`levels.table`, as
    FeatureFusion returns at inference): bilinear sampling with zero padding written out (4 corner rows and
    weights per sample, out-of-image corners weigh 0, exactly grid_sample's align_corners=False rule) and one
    weighted gather (embedding_bag) over all levels, queries and points. Inference only (no autograd)."""
    table = levels.table
    batch, total, channels = table.shape
    _, queries, num_points, _ = points.shape
    sizes = [tuple(level.shape[-2:]) for level in levels]
    num_levels = len(sizes)
    uv, valid, wh = _project_levels(sizes, points, K, image_hw)
    uv = uv.masked_fill(~valid[..., None], 0.0).permute(0, 2, 1, 3, 4)            # (B, Q, L, P, 2)
    valid = valid.permute(0, 2, 1, 3)                                               # (B, Q, L, P)
    wh = wh.view(1, 1, num_levels, 1, 2)
    offsets = torch.tensor([0] + [h * w for h, w in sizes[:-1]], device=table.device).cumsum(0)
    base = (offsets.view(1, 1, num_levels, 1)
            + total * torch.arange(batch, device=table.device).view(batch, 1, 1, 1))    # (B, 1, L, 1)
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
    index = torch.stack(index, dim=-1).view(-1, 4)                                  # (B*Q*L*P, 4)
    weight = torch.stack(weight, dim=-1).view(-1, 4).to(table.dtype)
    samples = F.embedding_bag(index, table.reshape(batch * total, channels), per_sample_weights=weight, mode='sum')
    samples = samples.view(batch, queries, num_levels * num_points, channels)
    return samples, valid.reshape(batch, queries, num_levels * num_points)


def depth_residual(points, depth_map, K, image_hw):
    """How far each 3D sampling point lies from the predicted surface, along its viewing ray.

    points (B, Q, P, 3) metres; depth_map (B, 1, h, w) metres (the dense depth head at its own grid); K (B, 3, 3)
    for image_hw. Returns log(z_point / depth at the point's pixel) (B, Q, P): 0 on the surface, > 0 behind it,
    < 0 in front of it; 0 for points behind the camera or outside the image (they are masked anyway)."""
    batch, queries, num_points, _ = points.shape
    height, width = depth_map.shape[-2:]
    uv, valid = project_to_level(points, K, image_hw, (height, width))              # (B, Q, P, 2), (B, Q, P)
    grid = torch.stack([(uv[..., 0] + 0.5) / width, (uv[..., 1] + 0.5) / height], dim=-1) * 2 - 1
    grid = grid.clamp(-1.0, 1.0).reshape(batch, queries * num_points, 1, 2)
    surface = F.grid_sample(depth_map, grid.to(depth_map.dtype), mode='bilinear', padding_mode='border',
                            align_corners=False).view(batch, queries, num_points)      # (B, Q, P) metres
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

    def __init__(self, hidden_dim, num_heads, num_levels, num_points, sampling_radius=0.05, max_offset=0.3,
                 depth_guidance=False):
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f'hidden_dim {hidden_dim} is not divisible by decoder_heads {num_heads}')
        if not 0 < sampling_radius < max_offset:
            raise ValueError(f'sampling_radius {sampling_radius} must be in (0, max_sampling_offset {max_offset})')
        self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
        self.max_offset = max_offset
        self.sampling_offsets = nn.Linear(hidden_dim, num_points * 3)     # metres (before the bound), camera frame
        self.attention_weights = nn.Linear(hidden_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(hidden_dim, hidden_dim)
        self.output_proj = nn.Linear(hidden_dim, hidden_dim)
        nn.init.zeros_(self.sampling_offsets.weight)
        with torch.no_grad():
            initial = fibonacci_sphere(num_points, sampling_radius).flatten()
            self.sampling_offsets.bias.copy_(max_offset * torch.atanh(initial / max_offset))
        nn.init.zeros_(self.attention_weights.weight)     # uniform weights at the start
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
        points = self.sampling_points(query, reference_points)                   # (B, Q, P, 3)
        samples, valid = sample_levels(levels, points, K, image_hw)              # (B, Q, L*P, C), (B, Q, L*P)
        weights = self.attention_weights(query).view(batch, queries, heads, -1).softmax(-1)
        weights = weights * valid[:, :, None].to(weights.dtype)                  # (B, Q, heads, L*P)
        depth_term = 0.0
        if self.depth_guidance:
            if depth_map is None:
                raise ValueError('depth-guided cross-attention needs the predicted depth map (depth_map)')
            residual = depth_residual(points, depth_map, K, image_hw)             # (B, Q, P)
            sharpness = F.softplus(self.depth_sharpness).view(1, 1, heads, 1)
            gate = torch.exp(-sharpness * residual.abs()[:, :, None])             # (B, Q, heads, P)
            weights = weights * gate.repeat(1, 1, 1, self.num_levels)            # samples are level-major (L*P)
            depth_term = self.depth_residual_proj(residual.clamp(-1.0, 1.0))      # (B, Q, C)
        # The value projection is linear, so projecting the weighted sum per head equals summing projected
        # samples -- but costs Q*C*C instead of Q*L*P*C*C (or a projection of every pixel of every level).
        aggregated = torch.einsum('bqhn,bqnc->bqhc', weights, samples)           # (B, Q, heads, C)
        weight_v = self.value_proj.weight.view(heads, dim // heads, dim)
        values = torch.einsum('bqhc,hdc->bqhd', aggregated, weight_v)
        values = values + weights.sum(-1, keepdim=True) * self.value_proj.bias.view(heads, dim // heads)
        return self.output_proj(values.reshape(batch, queries, dim)) + depth_term   # (B, Q, C)


# --- decoder --------------------------------------------------------------------------------------------------
class DecoderLayer(nn.Module):
    """Temporal cross-attention over [current; memory] (eq. 7) -> deformable CA (eq. 8) -> FFN, post-norm."""

    def __init__(self, hidden_dim, num_heads, ffn_dim, num_levels, num_points, dropout, sampling_radius,
                 max_sampling_offset, depth_guidance=False):
        super().__init__()
        self.temporal_attention = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.geometry_attention = GeometryDeformableCrossAttention(hidden_dim, num_heads, num_levels, num_points,
                                                                   sampling_radius, max_sampling_offset,
                                                                   depth_guidance)
        self.norm2 = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(nn.Linear(hidden_dim, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, hidden_dim))
        self.norm3 = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query, query_pos, reference_points, levels, K, image_hw, memory=None, memory_pos=None,
                depth_map=None):
        """query/query_pos (B, Q, C); reference_points (B, Q, 3) metres; memory/memory_pos (B, M, C) or None;
        depth_map (B, 1, h, w) metres or None (depth-guided attention only)."""
        q = query + query_pos
        keys, values = q, query
        if memory is not None:
            keys = torch.cat([q, memory + memory_pos], dim=1)                   # (B, Q + M, C)
            values = torch.cat([query, memory], dim=1)
        attended = self.temporal_attention(q, keys, values, need_weights=False)[0]
        query = self.norm1(query + self.dropout(attended))
        sampled = self.geometry_attention(query + query_pos, reference_points, levels, K, image_hw, depth_map)
        query = self.norm2(query + self.dropout(sampled))
        return self.norm3(query + self.dropout(self.ffn(query)))


class SpatialTemporalQueryDecoder(nn.Module):
    """STSQ + per-layer pose heads. Returns per-layer prediction dicts and the final query features."""

    def __init__(self, cfg, num_levels=4):
        super().__init__()
        dim = cfg.hidden_dim
        self.hidden_dim = dim
        self.position_range = PositionRange(cfg.position_range)
        self.anchors = QueryAnchors(cfg.num_queries, dim, cfg.anchor_range, self.position_range, cfg.anchor_fov)
        self.proposals = None
        if cfg.proposal_queries > 0:
            if not 0 <= cfg.proposal_level < num_levels:
                raise ValueError(f'proposal_level {cfg.proposal_level}: expected 0..{num_levels - 1}')
            self.proposals = ProposalQueries(dim, cfg.proposal_queries, cfg.proposal_level)
        self.query_position = mlp(3 * (dim // 2), dim, dim)     # sine(reference point) -> positional embedding
        self.time_embedding = mlp(dim, dim, dim)                # sine(age in frames) -> added to the position
        self.content_alignment = PoseAwareLayerNorm(MOTION_DIM, dim)
        self.position_alignment = PoseAwareLayerNorm(MOTION_DIM, dim)
        self.layers = nn.ModuleList(
            DecoderLayer(dim, cfg.decoder_heads, cfg.decoder_ffn_dim, num_levels, cfg.decoder_points, cfg.dropout,
                         cfg.sampling_radius, cfg.max_sampling_offset, cfg.depth_guidance)
            for _ in range(cfg.decoder_layers))
        self.pose_heads = nn.ModuleList(PoseHead(dim, cfg.size_prior) for _ in range(cfg.decoder_layers))

    def embed_time(self, ages):
        """(B, n) ages in frames -> (B, n, C); constant over the decoder layers, so computed once."""
        return self.time_embedding(sine_embedding(ages[..., None], self.hidden_dim))

    def embed_positions(self, reference_normalized, time_embedding, motion, modulation=None):
        """Positional embedding of (B, n, 3) normalised references + time, aligned by the pose-aware LN
        (`modulation`: its precomputed position_alignment.modulation(motion), the same in every layer)."""
        pos = self.query_position(sine_embedding(reference_normalized, self.hidden_dim // 2)) + time_embedding
        return self.position_alignment(pos, motion, modulation)

    def gather_queries(self, batch, memory, proposals=None):
        """Current query set (eq. 6) and aligned memory keys. Returns content (B, Qt, C), references
        (B, Qt, 3) normalised, ages (B, Qt), motion (B, Qt, 13), memory (B, M, C) or None, memory_pos.
        Order of the queries: [propagated memory (K)] [proposals (content, metric reference)] [anchors]."""
        content, reference = self.anchors(batch)
        if proposals is not None:
            proposal_content, proposal_reference = proposals
            proposal_reference = self.position_range.normalize(proposal_reference).clamp(1e-3, 1 - 1e-3)
            content = torch.cat([proposal_content, content], dim=1)
            reference = torch.cat([proposal_reference, reference], dim=1)
        device, dtype = content.device, content.dtype
        ages = torch.zeros(batch, content.shape[1], device=device, dtype=dtype)
        motion = identity_motion_vector(batch, content.shape[1], device, dtype)
        memory_content = memory_pos = None
        if memory is not None and not memory.is_empty():
            previous, rest = memory.latest(), memory.older()
            count = previous.features.shape[1]
            previous_ages = torch.full((batch, count), float(previous.age), device=device, dtype=dtype)
            previous_motion = motion_vector(previous.motion[:, None].expand(-1, count, -1, -1), previous_ages)
            content = torch.cat([previous.features, content], dim=1)
            # camera motion can carry a remembered point outside the position range: clamp like the anchors
            previous_reference = self.position_range.normalize(previous.reference_points).clamp(1e-3, 1 - 1e-3)
            reference = torch.cat([previous_reference, reference], dim=1)
            ages = torch.cat([previous_ages, ages], dim=1)
            motion = torch.cat([previous_motion, motion], dim=1)
            if not rest.is_empty():
                rest_motion = motion_vector(rest.motions, rest.ages)
                memory_content = self.content_alignment(rest.features, rest_motion)
                rest_reference = self.position_range.normalize(rest.reference_points).clamp(1e-3, 1 - 1e-3)
                memory_pos = self.embed_positions(rest_reference, self.embed_time(rest.ages), rest_motion)
        content = self.content_alignment(content, motion)
        return content, reference, ages, motion, memory_content, memory_pos

    def forward(self, levels, K, image_hw, memory=None, timer=None, depth_map=None):
        batch = K.shape[0]
        proposals, proposal_outputs = None, {}
        if self.proposals is not None:
            with _stage(timer, 'stsq'):
                proposal_content, proposal_reference, proposal_outputs = self.proposals(levels, K, image_hw)
            proposals = (proposal_content, proposal_reference)
        content, reference, ages, motion, memory_content, memory_pos = self.gather_queries(batch, memory, proposals)
        with _stage(timer, 'stsq'):
            time_embedding = self.embed_time(ages)
            # the motion (and so the pose-aware LN's scale and shift) is the same in every layer
            position_modulation = self.position_alignment.modulation(motion)
        outputs = []
        for layer, head in zip(self.layers, self.pose_heads):
            with _stage(timer, 'stsq'):
                query_pos = self.embed_positions(reference, time_embedding, motion, position_modulation)
                metric_reference = self.position_range.denormalize(reference)
                content = layer(content, query_pos, metric_reference, levels, K, image_hw,
                                memory_content, memory_pos, depth_map)
            with _stage(timer, 'pose_head'):
                prediction = head(content, reference, self.position_range)
            # Each layer refines the reference; gradients stop here as in DETR3D's box refinement.
            reference = prediction.pop('reference_normalized').detach()
            outputs.append(prediction)
        outputs[-1].update(proposal_outputs)     # the proposal head's dense outputs ride with the final layer
        return outputs, content


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _stage(timer, name):
    return timer.stage(name) if timer is not None else _NullContext()
