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
from torch import nn

from seqpose_core.model.geometry_attention import GeometryDeformableCrossAttention
from seqpose_core.model.pose_head import PoseHead, PositionRange
from seqpose_core.model.proposals import ProposalQueries

MOTION_DIM = 13  # pose-aware LN input: rotation (9) + translation (3) of T_current_from_origin, age (1)


# --- embeddings ------------------------------------------------------------------------------------------------
def sine_embedding(values, num_feats, temperature=10000.0):
    """(..., D) -> (..., D * num_feats) sin/cos features (DETR/PETR positional encoding; inputs ~[0, 1])."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=values.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode='floor') / num_feats)
    angles = values[..., None].float() * (2 * math.pi) / dim_t  # (..., D, F)
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
            tan_half = torch.as_tensor(anchor_fov, dtype=torch.float32)  # (2,) x, y
            directions = (stratified_unit_square(num_queries) * 2 - 1) * tan_half  # (Q, 2)
            depth = bounds[0, 2] + torch.rand(num_queries) * (bounds[1, 2] - bounds[0, 2])
            metric = torch.cat([directions * depth[:, None], depth[:, None]], dim=-1)  # (Q, 3)
        else:
            metric = bounds[0] + torch.rand(num_queries, 3) * (bounds[1] - bounds[0])
        self.reference_points = nn.Parameter(position_range.normalize(metric).clamp(1e-3, 1 - 1e-3))

    def forward(self, batch):
        content = self.content.weight[None].expand(batch, -1, -1)  # (B, Q, C)
        reference = self.reference_points[None].expand(batch, -1, -1)  # (B, Q, 3) in [0, 1]
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

    def forward(self, x, motion, modulation=None):  # x (B, n, C), motion (B, n, 13)
        gamma, beta = self.modulation(motion) if modulation is None else modulation
        return torch.addcmul(beta, gamma, self.norm(x))  # gamma * LN(x) + beta


# --- decoder --------------------------------------------------------------------------------------------------
class DecoderLayer(nn.Module):
    """Temporal cross-attention over [current; memory] (eq. 7) -> deformable CA (eq. 8) -> FFN, post-norm."""

    def __init__(
        self,
        hidden_dim,
        num_heads,
        ffn_dim,
        num_levels,
        num_points,
        dropout,
        sampling_radius,
        max_sampling_offset,
        depth_guidance=False,
    ):
        super().__init__()
        self.temporal_attention = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.geometry_attention = GeometryDeformableCrossAttention(
            hidden_dim, num_heads, num_levels, num_points, sampling_radius, max_sampling_offset, depth_guidance
        )
        self.norm2 = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn_dim, hidden_dim)
        )
        self.norm3 = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        query,
        query_pos,
        reference_points,
        levels,
        K,
        image_hw,
        memory=None,
        memory_pos=None,
        depth_map=None,
        key_padding=None,
    ):
        """query/query_pos (B, Q, C); reference_points (B, Q, 3) metres; memory/memory_pos (B, M, C) or None;
        depth_map (B, 1, h, w) metres or None (depth-guided attention only); key_padding (B, Q + M) bool (True:
        an empty memory slot, never attended to) or None."""
        q = query + query_pos
        keys, values = q, query
        if memory is not None:
            keys = torch.cat([q, memory + memory_pos], dim=1)  # (B, Q + M, C)
            values = torch.cat([query, memory], dim=1)
        attended = self.temporal_attention(q, keys, values, key_padding_mask=key_padding, need_weights=False)[0]
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
        self.query_position = mlp(3 * (dim // 2), dim, dim)  # sine(reference point) -> positional embedding
        self.time_embedding = mlp(dim, dim, dim)  # sine(age in frames) -> added to the position
        self.content_alignment = PoseAwareLayerNorm(MOTION_DIM, dim)
        self.position_alignment = PoseAwareLayerNorm(MOTION_DIM, dim)
        self.layers = nn.ModuleList(
            DecoderLayer(
                dim,
                cfg.decoder_heads,
                cfg.decoder_ffn_dim,
                num_levels,
                cfg.decoder_points,
                cfg.dropout,
                cfg.sampling_radius,
                cfg.max_sampling_offset,
                cfg.depth_guidance,
            )
            for _ in range(cfg.decoder_layers)
        )
        self.pose_heads = nn.ModuleList(
            PoseHead(dim, cfg.size_prior, azimuth_bins=cfg.azimuth_bins) for _ in range(cfg.decoder_layers)
        )

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
        (B, Qt, 3) normalised, ages (B, Qt), motion (B, Qt, 13), memory (B, M, C) or None, memory_pos, and the
        attention's key padding (B, Qt + M) bool (True: an empty memory slot) or None when every key is real.
        Order of the queries: [propagated memory (K)] [proposals (content, metric reference)] [anchors].
        `memory`: a MemoryQueue or PaddedMemory (model.memory), or None."""
        content, reference = self.anchors(batch)
        if proposals is not None:
            proposal_content, proposal_reference = proposals
            proposal_reference = self.position_range.normalize(proposal_reference).clamp(1e-3, 1 - 1e-3)
            content = torch.cat([proposal_content, content], dim=1)
            reference = torch.cat([proposal_reference, reference], dim=1)
        device, dtype = content.device, content.dtype
        ages = torch.zeros(batch, content.shape[1], device=device, dtype=dtype)
        motion = identity_motion_vector(batch, content.shape[1], device, dtype)
        memory_content = memory_pos = key_padding = None
        view = memory.decoder_view() if memory is not None else None
        if view is not None:
            previous_motion = motion_vector(view.previous_motions, view.previous_ages)
            content = torch.cat([view.previous_features, content], dim=1)
            # camera motion can carry a remembered point outside the position range: clamp like the anchors
            previous_reference = self.position_range.normalize(view.previous_reference_points).clamp(1e-3, 1 - 1e-3)
            reference = torch.cat([previous_reference, reference], dim=1)
            ages = torch.cat([view.previous_ages.to(dtype), ages], dim=1)
            motion = torch.cat([previous_motion, motion], dim=1)
            if view.rest_features is not None:
                rest_motion = motion_vector(view.rest_motions, view.rest_ages)
                memory_content = self.content_alignment(view.rest_features, rest_motion)
                rest_reference = self.position_range.normalize(view.rest_reference_points).clamp(1e-3, 1 - 1e-3)
                memory_pos = self.embed_positions(rest_reference, self.embed_time(view.rest_ages), rest_motion)
            if view.previous_padding is not None:
                current = torch.zeros(batch, content.shape[1] - view.previous_padding.shape[1], dtype=torch.bool)
                key_padding = torch.cat([view.previous_padding, current.to(device)], dim=1)
                if view.rest_padding is not None:
                    key_padding = torch.cat([key_padding, view.rest_padding], dim=1)
        content = self.content_alignment(content, motion)
        return content, reference, ages, motion, memory_content, memory_pos, key_padding

    def forward(self, levels, K, image_hw, memory=None, timer=None, depth_map=None):
        batch = K.shape[0]
        proposals, proposal_outputs = None, {}
        if self.proposals is not None:
            with _stage(timer, 'stsq'):
                proposal_content, proposal_reference, proposal_outputs = self.proposals(levels, K, image_hw)
            proposals = (proposal_content, proposal_reference)
        content, reference, ages, motion, memory_content, memory_pos, key_padding = self.gather_queries(
            batch, memory, proposals
        )
        with _stage(timer, 'stsq'):
            time_embedding = self.embed_time(ages)
            # the motion (and so the pose-aware LN's scale and shift) is the same in every layer
            position_modulation = self.position_alignment.modulation(motion)
        outputs = []
        for layer, head in zip(self.layers, self.pose_heads):
            with _stage(timer, 'stsq'):
                query_pos = self.embed_positions(reference, time_embedding, motion, position_modulation)
                metric_reference = self.position_range.denormalize(reference)
                content = layer(
                    content,
                    query_pos,
                    metric_reference,
                    levels,
                    K,
                    image_hw,
                    memory_content,
                    memory_pos,
                    depth_map,
                    key_padding,
                )
            with _stage(timer, 'pose_head'):
                prediction = head(content, reference, self.position_range)
            # Each layer refines the reference; gradients stop here as in DETR3D's box refinement.
            reference = prediction.pop('reference_normalized').detach()
            outputs.append(prediction)
        outputs[-1].update(proposal_outputs)  # the proposal head's dense outputs ride with the final layer
        return outputs, content


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _stage(timer, name):
    return timer.stage(name) if timer is not None else _NullContext()
