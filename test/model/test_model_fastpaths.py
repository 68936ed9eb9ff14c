"""The CPU inference fast paths (issue 8) give the same numbers as the plain paths they replace."""

import torch

from seqpose_core.config import load_config
from seqpose_core.model import build_model
from seqpose_core.model.dpt import conv1x1
from seqpose_core.model.fusion import FeatureFusion, FusedLevels
from seqpose_core.model.geometry_attention import project_to_image, sample_levels

IMAGE_HW = (56, 70)
K = torch.tensor([[[60.0, 0.0, 34.5], [0.0, 60.0, 27.5], [0.0, 0.0, 1.0]]])


def test_conv1x1_equals_the_convolution():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 5, 1)
    x = torch.randn(2, 6, 7, 9)
    assert torch.allclose(conv1x1(conv, x), conv(x), atol=1e-6)
    assert torch.allclose(conv1x1(conv, x.contiguous(memory_format=torch.channels_last)), conv(x), atol=1e-6)


def test_table_sampling_equals_grid_sample_including_borders_and_masked_points():
    torch.manual_seed(0)
    fusion = FeatureFusion(features=4, hidden_dim=8).eval()
    semantic = [torch.randn(2, 4, 28, 35), torch.randn(2, 4, 14, 18), torch.randn(2, 4, 7, 9), torch.randn(2, 4, 4, 5)]
    geometry = [torch.randn(2, 4, 28, 35), torch.randn(2, 4, 14, 18), torch.randn(2, 4, 7, 9), torch.randn(2, 4, 4, 5)]
    with torch.no_grad():
        fused = fusion(semantic, geometry)
    assert isinstance(fused, FusedLevels) and fused.table is not None
    plain = [level.contiguous() for level in fused]  # a plain list: the grid_sample path
    with torch.enable_grad():
        reference = fusion(semantic, geometry)
    for a, b in zip(plain, reference):
        assert torch.allclose(a, b, atol=1e-5)
    # points all over the image, past its borders (partial corners), behind the camera and at z = 0
    xy = torch.rand(2, 50, 6, 2) * 1.6 - 0.8
    z = torch.rand(2, 50, 6, 1) * 2.0 + 0.2
    points = torch.cat([xy * z, z], dim=-1)
    points[0, 0, 0] = torch.tensor([0.0, 0.0, -1.0])
    points[0, 0, 1] = torch.tensor([0.1, 0.0, 0.0])
    with torch.no_grad():
        projection = project_to_image(points, K.expand(2, 3, 3), IMAGE_HW)
        fast, fast_valid = sample_levels(fused, *projection)
        slow, slow_valid = sample_levels(plain, *projection)
    assert torch.equal(fast_valid, slow_valid) and 0 < int(slow_valid.sum()) < slow_valid.numel()
    assert torch.allclose(fast, slow, atol=1e-5)


def test_inference_outputs_match_the_training_paths():
    """The model under no_grad (table, channels-last, hoisted LN modulation) against the same model with
    autograd on (plain lists, grid_sample) on a 3-frame video."""
    cfg = load_config('tiny').model
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    images = torch.randn(3, 1, 3, *IMAGE_HW)
    motion = torch.eye(4)[None].clone()
    motion[0, 0, 3] = 0.01
    results = []
    for grad in (False, True):
        memory, outputs = None, []
        with torch.set_grad_enabled(grad):
            for t in range(3):
                out, memory = model(images[t], K, memory=memory, camera_motion=motion if memory else None, dense=False)
                outputs.append({k: out[k].detach() for k in ('pred_logits', 'pred_translation', 'pred_size')})
        results.append(outputs)
    for fast, slow in zip(*results):
        for key in fast:
            assert torch.allclose(fast[key], slow[key], atol=1e-4, rtol=1e-4), key
