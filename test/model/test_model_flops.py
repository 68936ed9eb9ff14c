"""The analytic FLOP counter against torch's own counter on the tiny model, stage by stage."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from seqpose_core.config import load_config
from seqpose_core.model import build_model
from seqpose_core.model.dinov2 import encoder_dimensions
from seqpose_core.model.flops import count_flops

H, W = 56, 70


def measured(fn):
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return counter.get_total_flops(), result


@pytest.mark.parametrize('proposal_queries, patch_stem, azimuth_bins', [(0, 'linear', 0), (6, 'conv', 12)])
def test_analytic_flops_match_torch_flop_counter(proposal_queries, patch_stem, azimuth_bins):
    cfg = load_config('tiny').model
    cfg.proposal_queries = proposal_queries
    cfg.patch_stem = patch_stem
    cfg.azimuth_bins = azimuth_bins
    model = build_model(cfg).eval()
    images = torch.randn(1, 3, H, W)
    K = torch.tensor([[[60.0, 0.0, 34.5], [0.0, 60.0, 27.5], [0.0, 0.0, 1.0]]])
    analytic = count_flops(cfg, (H, W), dense=True)

    encoder, levels = measured(lambda: model.encode(images))
    decoder, (semantic, geometry, _) = measured(lambda: model.decode_geometry(levels, (H, W)))
    fusion, fused = measured(lambda: model.fuse(semantic, geometry))
    dense, dense_outputs = measured(lambda: model.predict_dense(fused, geometry, (H, W)))
    guidance, depth_map = measured(lambda: model.dense_heads.coarse_depth(fused[0], geometry[0]))
    # the dense maps carry the guidance's depth map: the depth head runs once per frame, not twice
    assert torch.equal(dense_outputs['coarse_depth'], depth_map)
    queries, _ = measured(lambda: model.decode_queries(fused, K, (H, W), depth_map=depth_map))

    # torch's counter does not see scaled_dot_product_attention on CPU nor grid_sample: add them by hand.
    dim, _, _, layers = encoder_dimensions(cfg)
    tokens = (H // 14) * (W // 14) + 1
    attention = (max(layers) + 1) * 4 * tokens * tokens * dim
    assert analytic['encoder'] == encoder + attention
    assert analytic['depth_head'] == decoder
    assert analytic['fusion'] == fusion
    assert cfg.depth_guidance and analytic['dense'] == dense
    assert count_flops(cfg, (H, W), dense=False)['dense'] == guidance > 0
    q, c = cfg.num_queries + proposal_queries, cfg.hidden_dim
    unseen = cfg.decoder_layers * (4 * q * q * c + 8 * q * 4 * cfg.decoder_points * c)
    assert analytic['stsq'] + analytic['pose_head'] == queries + unseen
    assert analytic['total'] == sum(v for k, v in analytic.items() if k != 'total')


def test_analytic_flops_with_a_full_memory():
    cfg = load_config('tiny').model
    model = build_model(cfg).eval()
    images = torch.randn(1, 3, H, W)
    K = torch.tensor([[[60.0, 0.0, 34.5], [0.0, 60.0, 27.5], [0.0, 0.0, 1.0]]])
    memory = model.init_memory(1)
    with torch.no_grad():
        for _ in range(cfg.memory_frames):
            _, memory = model(images, K, memory=memory, dense=False)
        levels = model.encode(images)
        semantic, geometry, _ = model.decode_geometry(levels)
        fused = model.fuse(semantic, geometry)
        depth_map = model.dense_heads.coarse_depth(fused[0], geometry[0])
    memory = memory.advanced(None)
    queries, _ = measured(lambda: model.decode_queries(fused, K, (H, W), memory, depth_map))
    analytic = count_flops(cfg, (H, W), dense=False, memory_full=True)
    q = cfg.num_queries + cfg.memory_top_k
    keys = q + (cfg.memory_frames - 1) * cfg.memory_top_k
    c = cfg.hidden_dim
    unseen = cfg.decoder_layers * (4 * q * keys * c + 8 * q * 4 * cfg.decoder_points * c)
    assert analytic['stsq'] + analytic['pose_head'] == queries + unseen
