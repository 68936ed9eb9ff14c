"""Weights: official DINOv2 / Depth-Anything-V2 layouts (files the test writes itself from the published key
names and shapes), our own checkpoints, their error messages, and `seqpose info`."""

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from seqpose_core import cli
from seqpose_core.config import load_config
from seqpose_core.model import build_model
from seqpose_core.model.checkpoint import (
    WeightsError,
    average_checkpoints,
    load_checkpoint,
    load_depth_anything_weights,
    load_dinov2_weights,
    save_checkpoint,
)
from seqpose_core.model.config import ModelConfig
from seqpose_core.model.seqpose import load_model_from_checkpoint
from seqpose_core.runner import load_model_and_config


# --- the official layouts, written out independently of our modules --------------------------------------------
def official_dinov2_shapes(dim, depth):
    """Keys and shapes of dinov2_vit*14_pretrain.pth (no registers, 37 x 37 pretrain grid, MLP ratio 4)."""
    shapes = {
        'cls_token': (1, 1, dim),
        'pos_embed': (1, 37 * 37 + 1, dim),
        'mask_token': (1, dim),
        'patch_embed.proj.weight': (dim, 3, 14, 14),
        'patch_embed.proj.bias': (dim,),
        'norm.weight': (dim,),
        'norm.bias': (dim,),
    }
    for i in range(depth):
        block = f'blocks.{i}.'
        for name, shape in (
            ('norm1.weight', (dim,)),
            ('norm1.bias', (dim,)),
            ('attn.qkv.weight', (3 * dim, dim)),
            ('attn.qkv.bias', (3 * dim,)),
            ('attn.proj.weight', (dim, dim)),
            ('attn.proj.bias', (dim,)),
            ('ls1.gamma', (dim,)),
            ('norm2.weight', (dim,)),
            ('norm2.bias', (dim,)),
            ('mlp.fc1.weight', (4 * dim, dim)),
            ('mlp.fc1.bias', (4 * dim,)),
            ('mlp.fc2.weight', (dim, 4 * dim)),
            ('mlp.fc2.bias', (dim,)),
            ('ls2.gamma', (dim,)),
        ):
            shapes[block + name] = shape
    return shapes


def official_dpt_shapes(dim, features, channels):
    """Keys and shapes of the `depth_head.` part of depth_anything_v2_vit*.pth (use_bn=False, no cls readout)."""
    shapes = {}
    for i, c in enumerate(channels):
        shapes[f'projects.{i}.weight'] = (c, dim, 1, 1)
        shapes[f'projects.{i}.bias'] = (c,)
        shapes[f'scratch.layer{i + 1}_rn.weight'] = (features, c, 3, 3)
    for index, kernel in ((0, 4), (1, 2), (3, 3)):  # ConvTranspose weights are (in, out, k, k)
        shapes[f'resize_layers.{index}.weight'] = (channels[index], channels[index], kernel, kernel)
        shapes[f'resize_layers.{index}.bias'] = (channels[index],)
    for i in range(1, 5):
        prefix = f'scratch.refinenet{i}.'
        shapes[prefix + 'out_conv.weight'] = (features, features, 1, 1)
        shapes[prefix + 'out_conv.bias'] = (features,)
        for unit in ('resConfUnit1', 'resConfUnit2'):
            for conv in ('conv1', 'conv2'):
                shapes[f'{prefix}{unit}.{conv}.weight'] = (features, features, 3, 3)
                shapes[f'{prefix}{unit}.{conv}.bias'] = (features,)
    shapes.update(
        {
            'scratch.output_conv1.weight': (features // 2, features, 3, 3),
            'scratch.output_conv1.bias': (features // 2,),
            'scratch.output_conv2.0.weight': (32, features // 2, 3, 3),
            'scratch.output_conv2.0.bias': (32,),
            'scratch.output_conv2.2.weight': (1, 32, 1, 1),
            'scratch.output_conv2.2.bias': (1,),
        }
    )
    return shapes


def random_state(shapes, prefix='', seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {prefix + k: torch.randn(shape, generator=generator) * 0.02 for k, shape in shapes.items()}


TINY = dict(dim=48, depth=4, features=16, channels=(12, 24, 48, 48))  # configs/tiny.yaml


def tiny_depth_anything_state():
    state = random_state(official_dinov2_shapes(TINY['dim'], TINY['depth']), 'pretrained.', seed=1)
    state.update(
        random_state(official_dpt_shapes(TINY['dim'], TINY['features'], TINY['channels']), 'depth_head.', seed=2)
    )
    return state


@pytest.fixture()
def tiny_model():
    return build_model(load_config('tiny').model)


# --- official layouts -------------------------------------------------------------------------------------------
def test_official_dinov2_layout_loads_strictly(tiny_model, tmp_path):
    state = random_state(official_dinov2_shapes(TINY['dim'], TINY['depth']))
    path = tmp_path / 'dinov2_tiny14_pretrain.pth'
    torch.save(state, path)
    load_dinov2_weights(tiny_model, path)
    assert torch.equal(tiny_model.encoder.pos_embed, state['pos_embed'])
    assert torch.equal(tiny_model.encoder.blocks[3].ls2.gamma, state['blocks.3.ls2.gamma'])


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_official_depth_anything_layout_loads_strictly(tiny_model, tmp_path, suffix):
    state = tiny_depth_anything_state()
    path = tmp_path / f'depth_anything_v2_tiny{suffix}'
    save_file(state, str(path)) if suffix == '.safetensors' else torch.save(state, path)
    load_depth_anything_weights(tiny_model, path)
    assert torch.equal(tiny_model.encoder.blocks[0].attn.qkv.weight, state['pretrained.blocks.0.attn.qkv.weight'])
    assert torch.equal(
        tiny_model.depth_head.scratch.refinenet2.resConfUnit1.conv2.weight,
        state['depth_head.scratch.refinenet2.resConfUnit1.conv2.weight'],
    )
    assert torch.equal(tiny_model.depth_head.resize_layers[0].weight, state['depth_head.resize_layers.0.weight'])


def test_full_size_vits_depth_anything_layout_loads_strictly(tmp_path):
    """Depth-Anything-V2-Small: ViT-S/14 (384 wide, 12 blocks) + DPT head (64 features, 48/96/192/384)."""
    state = random_state(official_dinov2_shapes(384, 12), 'pretrained.')
    state.update(random_state(official_dpt_shapes(384, 64, (48, 96, 192, 384)), 'depth_head.'))
    assert 24.7e6 < sum(t.numel() for t in state.values()) < 24.9e6  # the published 24.8M parameters
    path = tmp_path / 'depth_anything_v2_vits.pth'
    torch.save(state, path)
    model = build_model(ModelConfig())  # the default = the paper's S config
    load_depth_anything_weights(model, path)
    assert torch.equal(
        model.depth_head.scratch.output_conv2[2].weight, state['depth_head.scratch.output_conv2.2.weight']
    )


def test_layout_errors_list_missing_unexpected_and_mis_shaped_keys(tiny_model, tmp_path):
    state = tiny_depth_anything_state()
    del state['pretrained.blocks.1.ls1.gamma']
    state['depth_head.scratch.refinenet1.extra.weight'] = torch.zeros(1)
    state['pretrained.pos_embed'] = torch.zeros(1, 10, TINY['dim'])
    path = tmp_path / 'broken_depth_anything.pth'
    torch.save(state, path)
    with pytest.raises(WeightsError) as error:
        load_depth_anything_weights(tiny_model, path)
    message = str(error.value)
    assert str(path) in message
    assert 'missing (1): pretrained.blocks.1.ls1.gamma' in message
    assert 'unexpected (1): depth_head.scratch.refinenet1.extra.weight' in message
    assert 'mis-shaped (1): pretrained.pos_embed (file (1, 10, 48), model (1, 1370, 48))' in message


def test_wrong_size_encoder_is_refused_naming_the_file(tiny_model, tmp_path):
    path = tmp_path / 'dinov2_vits14_pretrain.pth'
    torch.save(random_state(official_dinov2_shapes(64, 4)), path)
    with pytest.raises(WeightsError, match=r'dinov2_vits14_pretrain\.pth.*\n.*mis-shaped .*cls_token'):
        load_dinov2_weights(tiny_model, path)
    with pytest.raises(WeightsError, match='no such weight file'):
        load_dinov2_weights(tiny_model, tmp_path / 'absent.pth')


def test_depth_anything_file_given_as_dinov2_is_explained(tiny_model, tmp_path):
    path = tmp_path / 'depth_anything_v2_vits.pth'
    torch.save(tiny_depth_anything_state(), path)
    with pytest.raises(WeightsError, match='Depth-Anything-V2 checkpoint'):
        load_dinov2_weights(tiny_model, path)


def test_build_model_loads_the_weights_named_in_the_config(tmp_path):
    path = tmp_path / 'depth_anything_v2_tiny.pth'
    state = tiny_depth_anything_state()
    torch.save(state, path)
    cfg = dataclasses.replace(load_config('tiny').model, depth_anything_weights=str(path))
    model = build_model(cfg)
    assert torch.equal(model.encoder.cls_token, state['pretrained.cls_token'])


# --- our checkpoints ------------------------------------------------------------------------------------------
@pytest.mark.parametrize('suffix', ['.pt', '.safetensors'])
def test_checkpoint_carries_its_config_and_reproduces_outputs(tmp_path, suffix):
    config = load_config('tiny')
    torch.manual_seed(3)
    model = build_model(config.model).eval()
    path = save_checkpoint(tmp_path / f'run/best{suffix}', model, config, epoch=7)
    assert sorted(p.name for p in path.parent.iterdir()) == [f'best{suffix}']  # no temp file left behind
    restored, restored_config = load_model_and_config(path, 'cpu')
    assert restored_config == config and load_checkpoint(path)['epoch'] == 7
    images, K = torch.randn(1, 3, 56, 70), torch.tensor([[[60.0, 0, 35], [0, 60, 28], [0, 0, 1]]])
    with torch.no_grad():
        want, _ = model(images, K, dense=False)
        got, _ = restored.eval()(images, K, dense=False)
    assert torch.equal(want['pred_translation'], got['pred_translation'])


def test_checkpoint_not_matching_its_config_names_file_and_keys(tmp_path):
    config = load_config('tiny')
    model = build_model(config.model)
    path = save_checkpoint(tmp_path / 'bad.pt', model, config)
    content = torch.load(path, weights_only=True)
    content['model']['decoder.anchors.reference_points'] = torch.zeros(3, 3)
    torch.save(content, path)
    with pytest.raises(WeightsError, match=r'bad\.pt.*\n.*mis-shaped .*decoder\.anchors\.reference_points'):
        load_model_from_checkpoint(path)


def test_official_file_is_not_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / 'dinov2.pth'
    torch.save(random_state(official_dinov2_shapes(TINY['dim'], TINY['depth'])), path)
    with pytest.raises(WeightsError, match='not a SeqPose checkpoint'):
        load_checkpoint(path)


# --- checkpoint averaging -------------------------------------------------------------------------------------
def two_tiny_checkpoints(tmp_path, suffix='.pt'):
    config = load_config('tiny')
    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        paths.append(save_checkpoint(tmp_path / f'run{seed}{suffix}', build_model(config.model), config, step=seed))
    return config, paths


@pytest.mark.parametrize('suffix', ['.pt', '.safetensors'])
def test_average_is_the_weighted_mean_of_the_weights(tmp_path, suffix):
    config, (first, second) = two_tiny_checkpoints(tmp_path, suffix)
    averaged = average_checkpoints([first, second], [3.0, 1.0])
    a, b = load_checkpoint(first)['model'], load_checkpoint(second)['model']
    floating = [k for k in a if a[k].is_floating_point()]
    assert floating and any(not torch.equal(a[k], b[k]) for k in floating)
    for key in floating:
        torch.testing.assert_close(averaged['model'][key], 0.75 * a[key] + 0.25 * b[key])
        assert averaged['model'][key].dtype == a[key].dtype
    for key in set(a) - set(floating):
        assert torch.equal(averaged['model'][key], a[key])
    assert averaged['step'] == 1 and [s['weight'] for s in averaged['averaged_from']] == [0.75, 0.25]
    assert (
        cli.main(['average', '--out', str(tmp_path / f'soup{suffix}'), str(first), str(second), '--weights', '3', '1'])
        == 0
    )
    model, restored_config = load_model_and_config(tmp_path / f'soup{suffix}', 'cpu')
    assert restored_config == config
    for key, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, averaged['model'][key])


def test_average_of_a_checkpoint_with_itself_gives_the_same_outputs(tmp_path):
    _, (first, _) = two_tiny_checkpoints(tmp_path)
    assert cli.main(['average', '--out', str(tmp_path / 'self.pt'), str(first), str(first)]) == 0
    images, K = torch.randn(1, 3, 56, 70), torch.tensor([[[60.0, 0, 35], [0, 60, 28], [0, 0, 1]]])
    outputs = []
    for path in (first, tmp_path / 'self.pt'):
        model, _ = load_model_and_config(path, 'cpu')
        with torch.no_grad():
            outputs.append(model.eval()(images, K, dense=False)[0]['pred_translation'])
    torch.testing.assert_close(outputs[0], outputs[1])


def test_average_refuses_checkpoints_of_different_models_naming_the_file(tmp_path):
    config, (first, _) = two_tiny_checkpoints(tmp_path)
    other = dataclasses.replace(
        config, model=dataclasses.replace(config.model, num_queries=config.model.num_queries + 4)
    )
    path = save_checkpoint(tmp_path / 'other.pt', build_model(other.model), other)
    with pytest.raises(WeightsError, match=r'other\.pt: its model config differs from that of .*run1\.pt'):
        average_checkpoints([first, path])
    content = load_checkpoint(first)
    content['model']['decoder.anchors.reference_points'] = torch.zeros(3, 3)
    torch.save(content, tmp_path / 'reshaped.pt')
    with pytest.raises(WeightsError, match=r'reshaped\.pt: its tensors differ .*\n.*mis-shaped .*reference_points'):
        average_checkpoints([first, tmp_path / 'reshaped.pt'])


def test_average_refuses_bad_weights_and_keeps_existing_files(tmp_path, capsys):
    _, (first, second) = two_tiny_checkpoints(tmp_path)
    with pytest.raises(WeightsError, match='1 weights for 2 checkpoints'):
        average_checkpoints([first, second], [1.0])
    with pytest.raises(WeightsError, match='weights must be >= 0'):
        average_checkpoints([first, second], [1.0, -0.5])
    before = first.read_bytes()
    assert cli.main(['average', '--out', str(first), str(first), str(second), '--force']) == 2
    assert cli.main(['average', '--out', str(second), str(first)]) == 2
    err = capsys.readouterr().err
    assert 'is one of the inputs' in err and 'exists; pass --force' in err
    assert first.read_bytes() == before
    assert cli.main(['average', '--out', str(tmp_path / 'x.pt'), str(first), str(tmp_path / 'missing.pt')]) == 1
    assert 'missing.pt: no such weight file' in capsys.readouterr().err and not (tmp_path / 'x.pt').exists()


# --- seqpose info ---------------------------------------------------------------------------------------------
def test_info_prints_parts_and_gflops(capsys, tmp_path):
    path = tmp_path / 'depth_anything_v2_tiny.pth'
    torch.save(tiny_depth_anything_state(), path)
    assert cli.main(['info', '--config', 'tiny', '--depth-anything-weights', str(path)]) == 0
    out = capsys.readouterr().out
    assert 'encoder (DINOv2)' in out and 'GFLOPs per frame' in out and str(path) in out


def test_info_fails_on_a_weight_file_that_does_not_fit(capsys, tmp_path):
    path = tmp_path / 'dinov2_vitb14_pretrain.pth'
    torch.save(random_state(official_dinov2_shapes(64, 4)), path)
    assert cli.main(['info', '--config', 'tiny', '--dinov2-weights', str(path)]) == 1
    assert 'mis-shaped' in capsys.readouterr().err
