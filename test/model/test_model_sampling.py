"""The geometry-aware deformable cross-attention's projection and sampling, checked against hand computation."""

import pytest
import torch

from seqpose_core.geometry import project_points, scale_intrinsics
from seqpose_core.model.geometry_attention import (
    GeometryDeformableCrossAttention,
    level_pixels,
    project_to_image,
    sample_levels,
)

IMAGE_HW = (56, 70)
K = torch.tensor([[[60.0, 0.0, 34.5], [0.0, 60.0, 27.5], [0.0, 0.0, 1.0]]])


def points(*xyz):
    return torch.tensor(xyz, dtype=torch.float32).view(1, 1, -1, 3)  # (B=1, Q=1, P, 3)


def project_to_level(pts, level_hw):
    grid, valid = project_to_image(pts, K, IMAGE_HW)
    return level_pixels(grid, level_hw), valid


def test_point_lands_on_the_hand_computed_pixel_at_every_level():
    # u = fx x / z + cx = 60 * 0.1 / 1 + 34.5 = 40.5, v = 60 * -0.05 + 27.5 = 24.5 in the 56 x 70 input
    uv, valid = project_to_level(points([0.1, -0.05, 1.0]), IMAGE_HW)
    assert torch.allclose(uv[0, 0, 0], torch.tensor([40.5, 24.5])) and bool(valid.all())
    # half resolution, pixel centres at integers: u' = (u + 0.5) / 2 - 0.5 = 20, v' = 12
    uv, _ = project_to_level(points([0.1, -0.05, 1.0]), (28, 35))
    assert torch.allclose(uv[0, 0, 0], torch.tensor([20.0, 12.0]))
    # a 14x coarser level (the patch grid 4 x 5): u' = 41 / 14 - 0.5, v' = 25 / 14 - 0.5
    uv, _ = project_to_level(points([0.1, -0.05, 1.0]), (4, 5))
    assert torch.allclose(uv[0, 0, 0], torch.tensor([41 / 14 - 0.5, 25 / 14 - 0.5]))
    # the same pixels as projecting with each level's own intrinsics (what the levels' geometry means)
    for level_hw in ((28, 35), (4, 5)):
        K_level = scale_intrinsics(K, IMAGE_HW, level_hw)
        direct = project_points(points([0.1, -0.05, 1.0])[0], K_level)
        assert torch.allclose(project_to_level(points([0.1, -0.05, 1.0]), level_hw)[0][0], direct, atol=1e-5)
    K_half = scale_intrinsics(K, IMAGE_HW, (28, 35))
    assert torch.allclose(K_half[0], torch.tensor([[30.0, 0.0, 17.0], [0.0, 30.0, 13.5], [0.0, 0.0, 1.0]]))


def test_sampling_reads_the_feature_at_the_projected_pixel():
    full = torch.zeros(1, 1, 56, 70)
    full[0, 0, 24, 40] = 7.0
    half = torch.zeros(1, 1, 28, 35)
    half[0, 0, 12, 20] = 7.0
    # (0.09166.., -0.05833.., 1) projects to u = 40, v = 24 exactly: the centre of full[24, 40]
    point = points([5.5 / 60, -3.5 / 60, 1.0])
    samples, valid = sample_levels([full, half], *project_to_image(point, K, IMAGE_HW))
    assert samples.shape == (1, 1, 2, 1) and bool(valid.all())
    assert torch.isclose(samples[0, 0, 0, 0], torch.tensor(7.0))
    # on the half level it is at (19.75, 11.75): bilinear weight of pixel (12, 20) = 0.75 * 0.75
    assert torch.isclose(samples[0, 0, 1, 0], torch.tensor(7.0 * 0.75 * 0.75))


def test_points_behind_the_camera_or_outside_the_image_are_masked():
    level = torch.ones(1, 4, 28, 35)
    pts = points([0.0, 0.0, -1.0], [0.0, 0.0, 0.0], [5.0, 0.0, 1.0], [0.0, 0.0, 1.0])
    samples, valid = sample_levels([level], *project_to_image(pts, K, IMAGE_HW))
    assert valid[0, 0].tolist() == [False, False, False, True]
    assert samples[0, 0, :3].abs().sum() == 0 and torch.allclose(samples[0, 0, 3], torch.ones(4))


def test_masked_points_contribute_nothing_to_the_attention():
    torch.manual_seed(0)
    attention = GeometryDeformableCrossAttention(hidden_dim=8, num_heads=2, num_levels=2, num_points=3)
    query = torch.randn(1, 5, 8)
    levels = [torch.randn(1, 8, 28, 35), torch.randn(1, 8, 14, 18)]
    behind = torch.tensor([0.0, 0.0, -2.0]).expand(1, 5, 3)
    out = attention(query, behind, levels, K, IMAGE_HW)
    assert torch.allclose(out, attention.output_proj.bias.expand(1, 5, 8))
    visible = torch.tensor([0.0, 0.0, 1.0]).expand(1, 5, 3)
    assert not torch.allclose(attention(query, visible, levels, K, IMAGE_HW), out)


def test_value_projection_after_aggregation_equals_projecting_every_sample():
    """The attention projects the per-head weighted sums; that must equal weighting projected samples."""
    torch.manual_seed(0)
    attention = GeometryDeformableCrossAttention(hidden_dim=8, num_heads=2, num_levels=1, num_points=4)
    torch.nn.init.normal_(attention.attention_weights.weight)
    torch.nn.init.normal_(attention.value_proj.bias)
    query = torch.randn(1, 3, 8)
    reference = torch.tensor([[0.0, 0.0, 1.0], [0.1, 0.1, 0.8], [3.0, 0.0, 1.0]])[None]
    level = torch.randn(1, 8, 28, 35)
    got = attention(query, reference, [level], K, IMAGE_HW)

    pts = attention.sampling_points(query, reference)
    samples, valid = sample_levels([level], *project_to_image(pts, K, IMAGE_HW))  # (1, 3, 4, 8)
    projected = attention.value_proj(samples).view(1, 3, 4, 2, 4)  # (.., points, heads, d)
    weights = attention.attention_weights(query).view(1, 3, 2, 4).softmax(-1) * valid[:, :, None]
    per_head = torch.einsum('bqhn,bqnhd->bqhd', weights, projected).reshape(1, 3, 8)
    assert torch.allclose(got, attention.output_proj(per_head), atol=1e-5)


def test_sampling_offsets_stay_within_their_bound():
    torch.manual_seed(0)
    attention = GeometryDeformableCrossAttention(
        hidden_dim=8, num_heads=2, num_levels=2, num_points=6, sampling_radius=0.05, max_offset=0.3
    )
    reference = torch.tensor([0.1, -0.1, 0.9]).expand(1, 4, 3)
    # at the start: the points lie on the sphere of sampling_radius around the reference
    start = attention.sampling_points(torch.zeros(1, 4, 8), reference)
    torch.testing.assert_close((start - reference[:, :, None]).norm(dim=-1), torch.full((1, 4, 6), 0.05))
    # however large the raw offsets grow, no point goes farther than max_offset on any axis
    with torch.no_grad():
        attention.sampling_offsets.weight.fill_(50.0)
    far = attention.sampling_points(torch.randn(1, 4, 8) * 10, reference)
    assert (far - reference[:, :, None]).abs().max() <= 0.3 + 1e-6
    assert (far - reference[:, :, None]).abs().max() > 0.29


def test_sampling_radius_must_be_inside_the_bound():
    with pytest.raises(ValueError, match='sampling_radius'):
        GeometryDeformableCrossAttention(
            hidden_dim=8, num_heads=2, num_levels=2, num_points=3, sampling_radius=0.5, max_offset=0.3
        )
