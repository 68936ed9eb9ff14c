"""The SeqPose network with the tiny config: stage shapes, single vs multi frame, the memory queue, gradients."""

import pytest
import torch

from seqpose_core.config import load_config
from seqpose_core.model import MemoryQueue, build_model
from seqpose_core.model.dinov2 import PRETRAIN_GRID, evenly_spaced_layers

H, W = 56, 70  # tiny input: a 4 x 5 patch grid


@pytest.fixture(scope='module')
def config():
    return load_config('tiny')


@pytest.fixture()
def model(config):
    torch.manual_seed(0)
    return build_model(config.model).eval()


def inputs(batch=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, H, W, generator=generator)
    K = torch.tensor([[60.0, 0.0, 34.5], [0.0, 60.0, 27.5], [0.0, 0.0, 1.0]]).expand(batch, 3, 3).clone()
    return images, K


def test_stage_shapes(model, config):
    cfg = config.model
    images, K = inputs()
    levels = model.encode(images)
    assert [tuple(x.shape) for x in levels] == [(2, cfg.embed_dim, 4, 5)] * 4
    semantic, geometry, depth = model.decode_geometry(levels, (H, W))
    features = cfg.dpt_features
    assert [tuple(s.shape) for s in semantic] == [
        (2, features, 16, 20),
        (2, features, 8, 10),
        (2, features, 4, 5),
        (2, features, 2, 3),
    ]
    assert [tuple(g.shape) for g in geometry] == [
        (2, features, 32, 40),
        (2, features, 16, 20),
        (2, features, 8, 10),
        (2, features, 4, 5),
    ]
    assert tuple(depth.shape) == (2, 1, H, W) and bool((depth >= 0).all())
    fused = model.fuse(semantic, geometry)
    assert [tuple(z.shape) for z in fused] == [(2, cfg.hidden_dim) + tuple(g.shape[-2:]) for g in geometry]
    dense = model.predict_dense(fused, geometry, (H, W))
    assert tuple(dense['depth'].shape) == (2, 1, H, W) and bool((dense['depth'] > 0).all())
    assert tuple(dense['normal'].shape) == (2, 3, H, W)
    assert torch.allclose(dense['normal'].norm(dim=1), torch.ones(2, H, W), atol=1e-4)
    assert tuple(dense['seg_logits'].shape) == (2, 7, H, W)

    outputs, memory = model(images, K, dense=True)
    q = cfg.num_queries
    assert tuple(outputs['pred_logits'].shape) == (2, q, 6)
    assert tuple(outputs['pred_translation'].shape) == (2, q, 3)
    assert tuple(outputs['pred_rotation6d'].shape) == (2, q, 6)
    assert tuple(outputs['pred_size'].shape) == (2, q, 3) and bool((outputs['pred_size'] > 0).all())
    assert len(outputs['aux_outputs']) == cfg.decoder_layers - 1
    for aux in outputs['aux_outputs']:
        assert {k: tuple(v.shape) for k, v in aux.items()} == {
            'pred_logits': (2, q, 6),
            'pred_translation': (2, q, 3),
            'pred_rotation6d': (2, q, 6),
            'pred_size': (2, q, 3),
        }
    assert tuple(outputs['depth'].shape) == (2, 1, H, W)
    # Inference skips the dense heads.
    outputs, _ = model(images, K, dense=False)
    assert not {'depth', 'normal', 'seg_logits'} & set(outputs)


def test_encoder_levels_are_normed_block_outputs(model):
    images, _ = inputs(1)
    encoder = model.encoder
    x = encoder.prepare_tokens(images)
    expected = []
    for index, block in enumerate(encoder.blocks):
        x = block(x)
        if index in encoder.layer_indices:
            expected.append(encoder.norm(x)[:, 1:].transpose(1, 2).reshape(1, -1, 4, 5))
    for (patches, cls_token), want in zip(encoder.get_intermediate_layers(images), expected):
        assert torch.allclose(patches, want, atol=1e-6)
        assert cls_token.shape == (1, encoder.embed_dim)


def test_position_embedding_interpolation(model):
    encoder = model.encoder
    assert encoder.interpolate_pos_encoding(PRETRAIN_GRID, PRETRAIN_GRID) is encoder.pos_embed
    pos = encoder.interpolate_pos_encoding(17, 23)  # the paper's 238 x 322 input
    assert pos.shape == (1, 1 + 17 * 23, encoder.embed_dim)
    assert torch.equal(pos[:, 0], encoder.pos_embed[:, 0])  # the cls position is not resized


def test_official_intermediate_layer_choice():
    assert evenly_spaced_layers(12) == (2, 5, 8, 11)
    assert evenly_spaced_layers(4) == (0, 1, 2, 3)


def test_single_frame_equals_multi_frame_with_empty_memory(model):
    images, K = inputs()
    single, _ = model(images, K, memory=None)
    multi, _ = model(images, K, memory=model.init_memory(2), camera_motion=torch.eye(4).expand(2, 4, 4))
    for key in ('pred_logits', 'pred_translation', 'pred_rotation6d', 'pred_size'):
        assert torch.equal(single[key], multi[key]), key


def test_memory_holds_n_times_k_and_forgets_the_oldest(model, config):
    n, k, q = config.model.memory_frames, config.model.memory_top_k, config.model.num_queries
    memory = model.init_memory(2)
    assert len(memory) == 0 and memory.is_empty()
    first_features = None
    for frame in range(n + 2):
        images, K = inputs(seed=10 + frame)
        outputs, memory = model(images, K, memory=memory)
        # eq. 6: from the second frame on the previous top-K are prepended to the anchors
        assert outputs['pred_logits'].shape[1] == (q if frame == 0 else q + k)
        assert len(memory) == min(frame + 1, n) * k
        if frame == 0:
            first_features = memory.frames[0].features.clone()
        assert [f.age for f in memory.frames] == list(range(min(frame + 1, n)))
    assert len(memory) == n * k and len(memory.frames) == n
    assert not any(torch.equal(f.features, first_features) for f in memory.frames)  # oldest forgotten
    assert memory.cleared().is_empty() and len(memory.cleared()) == 0


def test_memory_keeps_the_top_scoring_queries_and_follows_camera_motion():
    memory = MemoryQueue(num_frames=2, top_k=2)
    features = torch.arange(4.0).view(1, 4, 1).expand(1, 4, 3)
    points = torch.tensor([[[0.0, 0.0, 1.0], [0.1, 0.0, 1.0], [0.2, 0.0, 1.0], [0.3, 0.0, 1.0]]])
    memory = memory.pushed(features, points, torch.tensor([[0.1, 0.9, 0.5, 0.2]]))
    assert memory.frames[0].features[0, :, 0].tolist() == [1.0, 2.0]
    motion = torch.eye(4)[None].clone()
    motion[0, :3, 3] = torch.tensor([0.0, 0.0, 0.5])  # the camera moved 0.5 m backwards
    moved = memory.advanced(motion)
    assert torch.allclose(moved.reference_points, torch.tensor([[[0.1, 0.0, 1.5], [0.2, 0.0, 1.5]]]))
    assert torch.allclose(moved.motions[0, 0], motion[0]) and moved.frames[0].age == 1
    assert torch.equal(memory.advanced(None).reference_points, memory.reference_points)  # unknown: as is


def test_reset_clears_the_memory(model):
    images, K = inputs()
    _, memory = model(images, K)
    assert len(memory) > 0
    fresh = model.init_memory(2)
    first, _ = model(images, K, memory=fresh)
    again, _ = model(images, K, memory=None)
    assert torch.equal(first['pred_logits'], again['pred_logits'])


def test_gradients_reach_every_learned_parameter_and_not_the_memory(config):
    torch.manual_seed(0)
    model = build_model(config.model).train()
    # Two zero-gradient spots of a fresh model, by design: the pose-aware LNs start as identity (zero weights
    # from the motion code), so their `reduce` layer gets gradient only after one step; and the official
    # depth output ends in a ReLU that random weights may leave all-zero. Nudge both so the test sees paths.
    with torch.no_grad():
        for norm in (model.decoder.content_alignment, model.decoder.position_alignment):
            norm.gamma.weight.normal_(std=0.01)
            norm.beta.weight.normal_(std=0.01)
        model.depth_head.scratch.output_conv2[2].bias.fill_(1.0)
    memory = model.init_memory(2)
    total = 0.0
    for frame in range(3):  # frame 2 sees propagated queries and older memory keys
        images, K = inputs(seed=frame)
        outputs, memory = model(images, K, memory=memory, camera_motion=torch.eye(4).expand(2, 4, 4))
        for key in ('depth', 'normal', 'seg_logits', 'relative_depth'):
            total = total + outputs[key].square().mean()
        for prediction in [outputs] + outputs['aux_outputs']:
            for key in ('pred_logits', 'pred_translation', 'pred_rotation6d', 'pred_size'):
                total = total + prediction[key].square().mean()
        for tensor in (memory.features, memory.reference_points, memory.scores):
            assert not tensor.requires_grad and tensor.grad_fn is None
    total.backward()
    # In the official layouts but unused in the forward pass (kept so the checkpoints load strictly):
    # DINOv2's mask token and the skip unit of the coarsest fusion block, which has no skip input.
    unused = {'encoder.mask_token'} | {
        f'depth_head.scratch.refinenet4.resConfUnit1.{conv}.{kind}'
        for conv in ('conv1', 'conv2')
        for kind in ('weight', 'bias')
    }
    missing = [
        name
        for name, p in model.named_parameters()
        if name not in unused and (p.grad is None or not torch.any(p.grad != 0))
    ]
    assert missing == []
    assert all(model.get_parameter(name).grad is None for name in unused)


def test_bad_inputs_are_named(model):
    images, K = inputs()
    with pytest.raises(ValueError, match='not a multiple of 14'):
        model(images[..., :50], K)
    with pytest.raises(ValueError, match='K: expected'):
        model(images, K[:1])
    with pytest.raises(ValueError, match='camera_motion'):
        model(images, K, memory=model.init_memory(2), camera_motion=torch.eye(3))
    _, memory = model(images, K)
    with pytest.raises(ValueError, match='batch size'):
        model(images[:1], K[:1], memory=memory)


def test_convolutional_stem_keeps_the_patch_grid_and_is_custom_only(config):
    import dataclasses

    torch.manual_seed(0)
    stem_cfg = dataclasses.replace(config.model, patch_stem='conv')
    model = build_model(stem_cfg).eval()
    images, K = inputs()
    with torch.no_grad():
        levels = model.encode(images)
        linear_levels = build_model(config.model).eval().encode(images)
    assert [level.shape for level in levels] == [level.shape for level in linear_levels]
    assert any(
        isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3)
        for module in model.encoder.patch_embed.modules()
    )
    with pytest.raises(ValueError, match="patch_stem 'conv' is for encoder 'custom' only"):
        build_model(dataclasses.replace(load_config('seqpose_vits').model, patch_stem='conv'), load_pretrained=False)
    with pytest.raises(ValueError, match='patch_stem'):
        build_model(dataclasses.replace(config.model, patch_stem='resnet'))
