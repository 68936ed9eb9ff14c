"""Depth-guided cross-attention (the paper's 3.3 c): the decoder compares its 3D sampling points with the
predicted depth, so two queries on the same viewing ray no longer see the same thing."""

import math

import pytest
import torch

from seqpose_core.config import load_config
from seqpose_core.model import build_model
from seqpose_core.model.geometry_attention import GeometryDeformableCrossAttention, depth_residual, project_to_image

IMAGE_HW = (56, 70)
K = torch.tensor([[[60.0, 0.0, 34.5], [0.0, 60.0, 27.5], [0.0, 0.0, 1.0]]])


def test_residual_is_the_log_depth_ratio_at_the_projected_pixel():
    depth_map = torch.full((1, 1, 28, 35), 0.8)
    depth_map[0, 0, 14:, :] = 1.6  # lower half of the image twice as far
    points = torch.tensor(
        [[[[0.0, -0.2, 0.8], [0.0, -0.2, 1.6], [0.0, 0.3, 1.6], [0.0, 0.1, 0.4], [0.0, 0.0, -1.0]]]]
    )  # (B=1, Q=1, P=5, 3); the last is behind the camera
    residual = depth_residual(points, depth_map, *project_to_image(points, K, IMAGE_HW))[0, 0]
    expected = torch.tensor([0.0, math.log(2.0), 0.0, math.log(0.25), 0.0])
    assert torch.allclose(residual, expected, atol=1e-5)


def test_queries_on_one_ray_differ_only_with_guidance():
    torch.manual_seed(0)
    levels = [torch.randn(1, 32, 28, 35), torch.randn(1, 32, 14, 18)]
    depth_map = torch.full((1, 1, 28, 35), 1.0)
    # the same content at two depths of one ray: with zero offsets both sample the same pixels
    query = torch.randn(1, 1, 32).expand(1, 2, 32)
    references = torch.tensor([[[0.05, 0.02, 1.0], [0.10, 0.04, 2.0]]])
    plain = GeometryDeformableCrossAttention(32, 4, 2, 4, depth_guidance=False)
    guided = GeometryDeformableCrossAttention(32, 4, 2, 4, depth_guidance=True)
    guided.load_state_dict(plain.state_dict(), strict=False)
    for module in (plain, guided):
        torch.nn.init.zeros_(module.sampling_offsets.bias)  # all points at the reference
    with torch.no_grad():
        out_plain = plain(query, references, levels, K, IMAGE_HW)
        out_guided = guided(query, references, levels, K, IMAGE_HW, depth_map)
    assert torch.allclose(out_plain[0, 0], out_plain[0, 1], atol=1e-5)
    assert not torch.allclose(out_guided[0, 0], out_guided[0, 1], atol=1e-3)
    # the query on the surface keeps its full attention (gate 1): it sees what the unguided one sees
    assert torch.allclose(out_guided[0, 0], out_plain[0, 0], atol=1e-5)
    with pytest.raises(ValueError, match='depth map'):
        guided(query, references, levels, K, IMAGE_HW)


def test_model_with_guidance_runs_both_ways_and_trains_the_gate():
    config = load_config('tiny')
    assert config.model.depth_guidance
    torch.manual_seed(0)
    model = build_model(config.model)
    images, Ks = torch.randn(1, 3, *IMAGE_HW), K.clone()
    outputs, memory = model(images, Ks, dense=False)
    outputs_dense, _ = model(images, Ks, dense=True)
    assert torch.allclose(outputs['pred_translation'], outputs_dense['pred_translation'], atol=1e-5)
    outputs, _ = model(images, Ks, memory=memory, dense=True)
    loss = outputs['pred_logits'].sum() + outputs['pred_translation'].sum()
    loss.backward()
    layer = model.decoder.layers[0].geometry_attention
    assert layer.depth_sharpness.grad is not None and layer.depth_residual_proj.weight.grad.abs().sum() > 0
    # the guidance reads the depth head but does not train it (detached): only the depth loss does
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.dense_heads.depth.parameters())


def test_memory_ranks_queries_by_the_published_score_and_clamps_moved_references():
    """The memory keeps the top-K by the score the runner publishes (proposal-fused when so configured), and a
    camera motion that carries a remembered point outside the position range cannot push it out of [0, 1]."""
    import dataclasses

    config = load_config('tiny')
    model_cfg = dataclasses.replace(config.model, proposal_queries=4, proposal_level=2)
    torch.manual_seed(0)
    model = build_model(model_cfg).eval()
    images, Ks = torch.randn(1, 3, *IMAGE_HW), K.clone()
    with torch.no_grad():
        outputs, by_query = model(images, Ks, dense=False)
        _, by_fused = model(images, Ks, dense=False, score_fusion='proposal')
        fused = model.detection_probabilities(outputs, Ks, IMAGE_HW, 'proposal').amax(-1)
    top = fused.topk(model_cfg.memory_top_k, dim=1).values
    assert torch.allclose(by_fused.latest().scores.sort(descending=True).values, top)
    assert not torch.equal(by_query.latest().scores, by_fused.latest().scores)
    far = torch.eye(4)[None].clone()
    far[0, 0, 3] = 50.0  # 50 m sideways: far outside position_range
    with torch.no_grad():
        moved, memory = model(images, Ks, memory=by_fused, camera_motion=far, dense=False)
    assert torch.isfinite(moved['pred_translation']).all()
    _, references, *_ = model.decoder.gather_queries(1, by_fused.advanced(far))
    assert references.min() >= 1e-3 and references.max() <= 1 - 1e-3
    assert len(memory.older()) == len(memory) - memory.latest().scores.shape[1]
