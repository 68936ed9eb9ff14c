"""Analytic FLOP count of one SeqPose forward pass, per stage, from the config and the input size alone.

Convention: FLOPs = 2 x multiply-accumulates of the matrix products and convolutions (what
torch.utils.flop_counter reports), plus 8 per channel per bilinear sample (4 taps). Normalisations,
activations and other element-wise work are left out (a few per cent at most).

    count_flops(model_cfg, (238, 322), dense=False, memory_full=True) -> {'encoder': ..., ..., 'total': ...}
"""

import math

from seqpose_core.model.dinov2 import PATCH_SIZE, encoder_dimensions, stem_widths
from seqpose_core.model.dpt import dpt_dimensions
from seqpose_core.model.stsq import MOTION_DIM

NUM_LEVELS = 4
NUM_CLASSES_WITH_BACKGROUND = 7


def _conv(out_pixels, c_in, c_out, kernel=1):
    return 2 * out_pixels * c_in * c_out * kernel * kernel


def encoder_flops(cfg, input_hw):
    dim, _depth, _heads, layers = encoder_dimensions(cfg)
    grid = (input_hw[0] // PATCH_SIZE) * (input_hw[1] // PATCH_SIZE)
    tokens = grid + 1
    blocks_run = max(layers) + 1  # blocks after the last taken level are not run
    patch_embed = _conv(grid, 3, dim, PATCH_SIZE)
    if cfg.patch_stem == 'conv':  # dinov2.convolutional_stem: 3x3 s2, 3x3, 7x7 s7
        quarter, half = stem_widths(dim)
        half_res = math.ceil(input_hw[0] / 2) * math.ceil(input_hw[1] / 2)
        patch_embed = _conv(half_res, 3, quarter, 3) + _conv(half_res, quarter, half, 3) + _conv(grid, half, dim, 7)
    per_block = 2 * tokens * (3 * dim * dim + dim * dim + 2 * 4 * dim * dim) + 4 * tokens * tokens * dim
    return patch_embed + blocks_run * per_block


def level_sizes(input_hw):
    """(h, w) of s_1..s_4 and g_1..g_4 (finest first) for an input size."""
    h, w = input_hw[0] // PATCH_SIZE, input_hw[1] // PATCH_SIZE
    semantic = [(4 * h, 4 * w), (2 * h, 2 * w), (h, w), (math.ceil(h / 2), math.ceil(w / 2))]
    geometry = [(8 * h, 8 * w), (4 * h, 4 * w), (2 * h, 2 * w), (h, w)]
    return semantic, geometry


def dpt_flops(cfg, input_hw, with_depth):
    dim = encoder_dimensions(cfg)[0]
    features, channels = dpt_dimensions(cfg)
    h, w = input_hw[0] // PATCH_SIZE, input_hw[1] // PATCH_SIZE
    semantic, geometry = level_sizes(input_hw)
    area = [a * b for a, b in semantic]
    flops = sum(_conv(h * w, dim, c) for c in channels)  # projects
    flops += 2 * (h * w) * channels[0] ** 2 * 16  # ConvTranspose k4 s4
    flops += 2 * (h * w) * channels[1] ** 2 * 4  # ConvTranspose k2 s2
    flops += _conv(area[3], channels[3], channels[3], 3)  # Conv k3 s2
    flops += sum(_conv(a, c, features, 3) for a, c in zip(area, channels))  # layerN_rn
    residual_unit = [2 * _conv(a, features, features, 3) for a in area]
    out_area = [a * b for a, b in geometry]
    flops += residual_unit[3] + _conv(out_area[3], features, features)  # refinenet4 (no skip)
    for i in range(3):  # refinenet3..1: skip + unit
        flops += 2 * residual_unit[i] + _conv(out_area[i], features, features)
    if with_depth:
        pixels = input_hw[0] * input_hw[1]
        flops += _conv(out_area[0], features, features // 2, 3)
        flops += _conv(pixels, features // 2, 32, 3) + _conv(pixels, 32, 1)
    return flops


def fusion_flops(cfg, input_hw):
    features, _ = dpt_dimensions(cfg)
    _, geometry = level_sizes(input_hw)
    return sum(_conv(a * b, 2 * features, cfg.hidden_dim) for a, b in geometry)


def dense_flops(cfg, input_hw):
    features, _ = dpt_dimensions(cfg)
    hidden = max(16, features // 2)
    _, geometry = level_sizes(input_hw)
    pixels = geometry[0][0] * geometry[0][1]
    return sum(
        _conv(pixels, cfg.hidden_dim + features, hidden, 3) + _conv(pixels, hidden, out)
        for out in (1, 3, NUM_CLASSES_WITH_BACKGROUND)
    )


def guidance_depth_flops(cfg, input_hw):
    """The depth head at the finest fused level, run for the depth-guided attention (DenseHeads.coarse_depth)."""
    if not cfg.depth_guidance:
        return 0
    features, _ = dpt_dimensions(cfg)
    hidden = max(16, features // 2)
    _, geometry = level_sizes(input_hw)
    pixels = geometry[0][0] * geometry[0][1]
    return _conv(pixels, cfg.hidden_dim + features, hidden, 3) + _conv(pixels, hidden, 1)


def stsq_flops(cfg, queries, memory_keys):
    """Decoder layers without the pose heads. queries: current set (incl. propagated); memory_keys: older."""
    c, heads, points, ffn = cfg.hidden_dim, cfg.decoder_heads, cfg.decoder_points, cfg.decoder_ffn_dim
    keys = queries + memory_keys
    position = 2 * queries * (3 * (c // 2) * c + c * c)  # sine(reference) MLP
    temporal = 2 * queries * c * c * 2 + 2 * keys * c * c * 2 + 4 * queries * keys * c
    samples = NUM_LEVELS * points
    geometry = (
        2 * queries * c * 3 * points
        + 2 * queries * c * heads * samples  # offsets, weights
        + 8 * queries * samples * c  # bilinear sampling
        + 2 * queries * heads * samples * c  # weighted sum per head
        + 2 * queries * c * c * 2
    )  # value + output proj
    if cfg.depth_guidance:
        geometry += 2 * queries * points * c  # residuals into the query
    ffn_flops = 2 * queries * c * ffn * 2
    per_layer = position + temporal + geometry + ffn_flops
    once = 2 * queries * (MOTION_DIM * c + 2 * c * c)  # content alignment
    once += 2 * queries * (MOTION_DIM * c + 2 * c * c)  # position alignment's scale/shift (same every layer)
    once += 2 * queries * 2 * c * c  # time embedding MLP
    if memory_keys:
        # content and position pose-aware LNs, sine(reference) MLP and time MLP of the older memory keys
        once += 2 * memory_keys * (2 * (MOTION_DIM * c + 2 * c * c) + 3 * (c // 2) * c + c * c + 2 * c * c)
    return cfg.decoder_layers * per_layer + once


def proposal_cells(cfg, input_hw):
    """Cells of the proposal level (0 without proposals)."""
    if cfg.proposal_queries <= 0:
        return 0
    _, geometry = level_sizes(input_hw)
    return geometry[cfg.proposal_level][0] * geometry[cfg.proposal_level][1]


def proposal_count(cfg, input_hw):
    """Proposal queries per frame: proposal_queries, at most one per cell (ProposalQueries' top-k)."""
    return min(max(cfg.proposal_queries, 0), proposal_cells(cfg, input_hw))


def proposal_flops(cfg, input_hw):
    """The object-centre head on its level (3x3 tower, class and centre 1x1s) and the proposals' content."""
    cells = proposal_cells(cfg, input_hw)
    if not cells:
        return 0
    c = cfg.hidden_dim
    head = _conv(cells, c, c, 3) + _conv(cells, c, 6) + _conv(cells, c, 3)
    return head + 2 * proposal_count(cfg, input_hw) * c * c


def pose_head_flops(cfg, queries):
    c = cfg.hidden_dim
    per_layer = 2 * queries * (2 * c * c + c * 6) + 2 * queries * (2 * c * c + c * 12)
    per_layer += 2 * queries * c * 2 * cfg.azimuth_bins  # the azimuth classifier (model.viewpoint)
    return cfg.decoder_layers * per_layer


def count_flops(cfg, input_hw, dense=False, memory_full=False):
    """FLOPs per stage for one frame. memory_full: the memory holds N frames (K propagated queries and
    (N-1)K older keys), the steady state of video inference."""
    queries, memory_keys = cfg.num_queries + proposal_count(cfg, input_hw), 0
    if memory_full and cfg.memory_frames > 0:
        queries += cfg.memory_top_k
        memory_keys = (cfg.memory_frames - 1) * cfg.memory_top_k
    stages = {
        'encoder': encoder_flops(cfg, input_hw),
        'depth_head': dpt_flops(cfg, input_hw, with_depth=dense),
        'fusion': fusion_flops(cfg, input_hw),
        # with the dense maps, the guidance reuses their depth logits (DenseHeads.forward's coarse_depth)
        'dense': dense_flops(cfg, input_hw) if dense else guidance_depth_flops(cfg, input_hw),
        'stsq': stsq_flops(cfg, queries, memory_keys) + proposal_flops(cfg, input_hw),
        'pose_head': pose_head_flops(cfg, queries),
    }
    stages = {k: int(v) for k, v in stages.items()}
    stages['total'] = sum(stages.values())
    return stages
