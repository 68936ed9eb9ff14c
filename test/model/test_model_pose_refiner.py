"""The pose refiner: its geometry (ray rotation, crops), its network and losses, the runner applying it,
its training on crops of generated frames and `seqpose train-refiner`."""

import dataclasses
import functools

import numpy as np
import pytest
import torch

from helpers.evaluation import eval_results
from helpers.generated_scenes import generate_scenes
from seqpose_core import CLASS_NAMES
from seqpose_core.cli import main as seqpose
from seqpose_core.config import load_config
from seqpose_core.data.layout import enumerate_scenes
from seqpose_core.data.reader import NocsFrameReader
from seqpose_core.geometry import rotation_error_deg
from seqpose_core.model import build_model, save_checkpoint
from seqpose_core.model.checkpoint import load_checkpoint, save_checkpoint_content
from seqpose_core.model.pose_refiner import (
    PoseRefiner,
    box_targets,
    decode_boxes,
    object_crops,
    ray_rotation,
    refine_poses,
)
from seqpose_core.model.viewpoint import azimuth_of, azimuth_targets
from seqpose_core.runner import Frame, StreamRunner, load_model_and_config
from seqpose_core.stages.config import with_settings
from seqpose_core.train.errors import TrainingError
from seqpose_core.train.pose_refiner import RefinerTrainingSettings, collect_crops, refiner_losses, train_refiner


def random_rotations(count, seed=0):
    q = torch.nn.functional.normalize(torch.randn(count, 4, generator=torch.Generator().manual_seed(seed)), dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - z * w),
            2 * (x * z + y * w),
            2 * (x * y + z * w),
            1 - 2 * (x * x + z * z),
            2 * (y * z - x * w),
            2 * (x * z - y * w),
            2 * (y * z + x * w),
            1 - 2 * (x * x + y * y),
        ],
        -1,
    ).view(-1, 3, 3)


# --- geometry -------------------------------------------------------------------------------------------------
def test_ray_rotation_turns_the_optical_axis_onto_the_ray():
    centres = torch.tensor([[0.3, -0.2, 0.8], [0.0, 0.0, 2.0], [-1.0, 0.5, 0.3]])
    rotations = ray_rotation(centres)
    torch.testing.assert_close(
        rotations @ torch.tensor([0.0, 0.0, 1.0]), torch.nn.functional.normalize(centres, dim=-1)
    )
    torch.testing.assert_close(rotations[1], torch.eye(3))
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6, rtol=0)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(3))


def test_crops_are_centred_on_the_projected_object_and_follow_shift_and_zoom():
    K = torch.tensor([[100.0, 0.0, 80.0], [0.0, 100.0, 60.0], [0.0, 0.0, 1.0]])
    image = torch.zeros(3, 120, 160)
    image[:, 50:60, 100:110] = 255.0  # a bright square centred at pixel (104.5, 54.5)
    centre = torch.tensor([[(104.5 - 80.0) / 100.0, (54.5 - 60.0) / 100.0, 1.0]])
    size = torch.tensor([[0.1, 0.0, 0.0]]) / 1.0  # side = margin x 100 px x 0.1 m / 1 m = 20 px
    crop = object_crops(image, K, centre, size, crop_size=20, margin=2.0)[0, 0]
    assert crop[8:12, 8:12].min() > 250 and crop[:3].max() < 1 and crop[:, -3:].max() < 1
    moved = object_crops(image, K, centre, size, 20, 2.0, shift=torch.tensor([[0.25, 0.0]]))[0, 0]
    assert moved[8:12, 3:7].min() > 250 and moved[8:12, 13:17].max() < 1  # object 5 px left in the crop
    zoomed = object_crops(image, K, centre, size, 20, 2.0, zoom=torch.tensor([0.5]))[0, 0]
    assert zoomed.mean() > 200  # half the side: mostly the square


# --- network and losses ---------------------------------------------------------------------------------------
def test_rotations_are_proper_and_losses_vanish_at_the_target():
    torch.manual_seed(0)
    refiner = PoseRefiner(width=4, num_bins=12).eval()
    crops, classes = torch.rand(5, 3, 32, 32) * 255, torch.tensor([3, 5, 6, 3, 5])
    outputs = refiner(crops, classes)
    rotations = refiner.rotations(outputs)
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(5), atol=1e-5)
    # the targets the prediction decodes to: zero up loss, and the azimuth's residual term zero
    symmetric = torch.tensor([False, False, True, False, False])
    losses = refiner_losses(outputs, rotations, symmetric)
    assert losses['loss_up'] < 1e-6 and set(losses) == {'loss_up', 'loss_azimuth'}
    other = random_rotations(5)
    assert refiner_losses(outputs, other, symmetric)['loss_up'] > 0.1


def test_decoding_inverts_the_azimuth_target():
    """A confident bin and residual decode to the rotation they were made from (up to the bin's precision)."""
    refiner = PoseRefiner(width=4, num_bins=12)
    allocentric = random_rotations(8, seed=3)
    up = allocentric[:, :, 1]
    azimuth = azimuth_of(allocentric[:, :, 0], up, torch.tensor([0.0, 0.0, 1.0]).expand_as(up))
    index, residual_target = azimuth_targets(azimuth, 12)
    logits = torch.nn.functional.one_hot(index, 12).float() * 10
    residual = residual_target[:, None].expand(-1, 12)
    decoded = refiner.rotations({'up': up, 'logits': logits, 'residual': residual})
    assert rotation_error_deg(decoded, allocentric).max() < 0.1  # float32 acos near 0


def test_box_targets_decode_back_to_the_ground_truth_box():
    """A crop made from a ground-truth box moved by `shift` and scaled by `zoom` (what a predicted box is), read
    perfectly (its box_targets), decodes to the ground-truth translation and size."""
    generator = torch.Generator().manual_seed(4)
    K = torch.tensor([[600.0, 0.0, 320.0], [0.0, 580.0, 240.0], [0.0, 0.0, 1.0]])
    centres = torch.rand(6, 3, generator=generator) * torch.tensor([0.6, 0.4, 1.0]) + torch.tensor([-0.3, -0.2, 0.5])
    sizes = torch.rand(6, 3, generator=generator) * 0.3 + 0.05
    shift = (torch.rand(6, 2, generator=generator) - 0.5) * 0.4
    zoom = torch.rand(6, generator=generator) * 0.8 + 0.65
    margin = 1.3
    # the predicted box whose crop is that jittered crop: its centre projects to the moved pixel (at any depth),
    # and its size / depth give the zoomed side
    side = margin * K[0, 0] * sizes.norm(dim=-1) / centres[:, 2]
    uv = (K @ centres.T).T
    uv = uv[:, :2] / uv[:, 2:] + shift * side[:, None]
    depth = centres[:, 2] * torch.rand(6, generator=generator).add(0.7)
    predicted_centres = torch.cat([(uv - K[:2, 2]) / K.diagonal()[:2], torch.ones(6, 1)], -1) * depth[:, None]
    predicted_sizes = sizes * zoom[:, None] * depth[:, None] / centres[:, 2:]
    image = torch.rand(3, 480, 640, generator=generator) * 255
    torch.testing.assert_close(
        object_crops(image, K, predicted_centres, predicted_sizes, 16, margin),
        object_crops(image, K, centres, sizes, 16, margin, shift, zoom),
        atol=0.05,
        rtol=0,
    )
    translations, decoded_sizes = decode_boxes(
        box_targets(sizes, shift, zoom), K, predicted_centres, predicted_sizes, margin
    )
    torch.testing.assert_close(translations, centres, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decoded_sizes, sizes)
    # weighting the decoder's depth in: the geometric mean along the same ray, the size scaled with the depth
    for weight in (0.0, 0.5):
        moved, moved_sizes = decode_boxes(
            box_targets(sizes, shift, zoom), K, predicted_centres, predicted_sizes, margin, depth_weight=weight
        )
        expected_depth = centres[:, 2] ** weight * predicted_centres[:, 2] ** (1 - weight)
        torch.testing.assert_close(moved[:, 2], expected_depth, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(moved, centres * (expected_depth / centres[:, 2])[:, None], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(moved_sizes, sizes * (expected_depth / centres[:, 2])[:, None])


def test_box_losses_vanish_at_the_targets_and_the_refiner_outputs_a_box():
    torch.manual_seed(0)
    refiner = PoseRefiner(width=4, num_bins=12, box=True).eval()
    outputs = refiner(torch.rand(4, 3, 32, 32) * 255, torch.tensor([1, 2, 3, 6]))
    assert outputs['centre_offset'].shape == (4, 2) and outputs['log_scale'].shape == (4,)
    assert outputs['log_size'].shape == (4, 3)
    symmetric = torch.tensor([True, True, False, False])
    targets = {key: outputs[key].detach().clone() for key in ('centre_offset', 'log_scale', 'log_size')}
    losses = refiner_losses(outputs, refiner.rotations(outputs), symmetric, targets)
    assert losses['loss_centre'] < 1e-6 and losses['loss_scale'] < 1e-6 and losses['loss_size'] < 1e-6
    moved = box_targets(torch.full((4, 3), 0.1), torch.full((4, 2), 0.1), torch.full((4,), 1.2))
    wrong = refiner_losses(outputs, refiner.rotations(outputs), symmetric, moved)
    assert min(float(wrong[key].detach()) for key in ('loss_centre', 'loss_scale', 'loss_size')) > 1e-3


# --- the runner -----------------------------------------------------------------------------------------------
def random_frame(seed):
    """A 160 x 120 noise image with its intrinsics: what the runner tests feed a random tiny model."""
    image = np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    return Frame(image, np.array([[150.0, 0, 80], [0, 150.0, 60], [0, 0, 1]]), 0.0, 'camera')


def save_tiny_base(path):
    """A tiny SeqPose without a refiner, saved at `path` (the checkpoint train-refiner starts from)."""
    config = load_config('tiny')
    torch.manual_seed(1)
    save_checkpoint(path, build_model(config.model), config)
    return path, config


@pytest.fixture(scope='module')
def tiny_with_refiner():
    config = load_config('tiny')
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, refiner_width=4))
    torch.manual_seed(0)
    return config, build_model(config.model).eval()


def test_runner_replaces_the_rotation_of_the_refiner_classes_only(tiny_with_refiner):
    config, model = tiny_with_refiner
    # the refiner's rotations as it gives them (the support plane levels them after it: test_support_plane)
    inference = with_settings(
        config.inference, {'score_threshold': 0.0, 'max_detections': 50, 'support_plane.enabled': False}
    )
    runner = StreamRunner(model, inference, (config.data.input_height, config.data.input_width))
    plain = StreamRunner(
        model,
        with_settings(inference, {'refiner.rotation': False}),
        (config.data.input_height, config.data.input_width),
    )
    frame = random_frame(0)
    image, K = frame.image_rgb, frame.K
    refined = runner.step(frame).detections
    original = plain.step(frame).detections
    assert len(refined) == len(original) and {d.class_name for d in refined} & set(config.inference.refiner.classes)
    chosen = [d for d in refined if d.class_name in config.inference.refiner.classes]
    with torch.no_grad():
        expected, _, _ = refine_poses(
            model.pose_refiner,
            torch.as_tensor(image).permute(2, 0, 1).float(),
            torch.as_tensor(K, dtype=torch.float32),
            torch.tensor([d.class_id for d in chosen]),
            torch.tensor(np.stack([d.translation for d in chosen]), dtype=torch.float32),
            torch.tensor(np.stack([d.size for d in chosen]), dtype=torch.float32),
            config.model.refiner_crop_size,
            config.model.refiner_crop_margin,
        )
    for detection, before, rotation in zip(
        chosen, [d for d in original if d.class_name in config.inference.refiner.classes], expected
    ):
        np.testing.assert_allclose(detection.rotation, rotation.numpy(), atol=1e-5)
        np.testing.assert_allclose(detection.extras['decoder_rotation'], before.rotation)
        assert not np.allclose(detection.rotation, before.rotation, atol=1e-3)
    for detection, before in zip(refined, original):
        if detection.class_name not in config.inference.refiner.classes:
            np.testing.assert_array_equal(detection.rotation, before.rotation)


def test_runner_replaces_the_box_of_the_box_classes_only():
    config = load_config('tiny')
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, refiner_width=4, refiner_box=True),
        inference=with_settings(
            config.inference, {'refiner.classes': ('bottle', 'laptop', 'mug'), 'refiner.box_classes': ('laptop', 'mug')}
        ),
    )
    torch.manual_seed(2)
    model = build_model(config.model).eval()
    inference = with_settings(
        config.inference, {'score_threshold': 0.0, 'max_detections': 50, 'support_plane.enabled': False}
    )
    size = (config.data.input_height, config.data.input_width)
    frame = random_frame(1)
    image, K = frame.image_rgb, frame.K
    boxed = StreamRunner(model, inference, size).step(frame).detections
    rotation_only = StreamRunner(model, with_settings(inference, {'refiner.box': False}), size).step(frame).detections
    chosen = [d for d in boxed if d.class_name in config.inference.refiner.classes]
    box_mask = [d.class_name in ('laptop', 'mug') for d in chosen]
    assert chosen and any(box_mask) and not all(box_mask) and len(boxed) == len(rotation_only)
    with torch.no_grad():
        rotations, translations, sizes = refine_poses(
            model.pose_refiner,
            torch.as_tensor(image).permute(2, 0, 1).float(),
            torch.as_tensor(K).float(),
            torch.tensor([d.class_id for d in chosen]),
            torch.tensor(
                np.stack([d.extras.get('decoder_translation', d.translation) for d in chosen]), dtype=torch.float32
            ),
            torch.tensor(np.stack([d.extras.get('decoder_size', d.size) for d in chosen]), dtype=torch.float32),
            config.model.refiner_crop_size,
            config.model.refiner_crop_margin,
            boxes=torch.tensor(box_mask),
            depth_weight=inference.refiner.depth_weight,
            passes=inference.refiner.passes,
        )
    for index, detection in enumerate(chosen):
        np.testing.assert_allclose(detection.translation, translations[index].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(detection.size, sizes[index].numpy(), rtol=1e-5)
        np.testing.assert_allclose(detection.rotation, rotations[index].numpy(), atol=1e-5)
        assert ('decoder_translation' in detection.extras) == box_mask[index]
        if box_mask[index]:
            assert not np.allclose(detection.translation, detection.extras['decoder_translation'], atol=1e-4)
    for detection, plain in zip(boxed, rotation_only):
        np.testing.assert_array_equal(
            plain.translation, detection.extras.get('decoder_translation', detection.translation)
        )
        assert 'decoder_translation' not in plain.extras


def test_a_second_pass_reads_the_crop_around_the_first_passes_box():
    torch.manual_seed(4)
    refiner = PoseRefiner(4, 12, box=True).eval()
    frame = random_frame(2)
    image = torch.as_tensor(frame.image_rgb).permute(2, 0, 1).float()
    K = torch.as_tensor(frame.K, dtype=torch.float32)
    centres = torch.tensor([[0.05, -0.02, 0.7], [-0.1, 0.04, 0.9]])
    sizes = torch.tensor([[0.1, 0.15, 0.1], [0.3, 0.2, 0.25]])
    ids, boxes = torch.tensor([6, 5]), torch.tensor([True, False])
    look = functools.partial(
        refine_poses, refiner, image, K, ids, crop_size=32, margin=1.3, boxes=boxes, depth_weight=0.5
    )
    with torch.no_grad():
        _, once_centres, once_sizes = look(centres, sizes)
        again = look(once_centres, once_sizes)
        twice = look(centres, sizes, passes=2)
    for expected, got in zip(again, twice):
        torch.testing.assert_close(got, expected)
    assert not torch.allclose(twice[1][0], once_centres[0])  # the boxed one moved again
    torch.testing.assert_close(twice[1][1], centres[1])  # the other keeps its box
    with pytest.raises(ValueError, match='passes 0'):
        look(centres, sizes, passes=0)


@pytest.mark.parametrize('passes', [0, 1.5, True])
def test_bad_refiner_passes_are_named(tiny_with_refiner, passes):
    config, model = tiny_with_refiner
    with pytest.raises(ValueError, match='inference.refiner.passes'):
        StreamRunner(
            model,
            with_settings(config.inference, {'refiner.passes': passes}),
            (config.data.input_height, config.data.input_width),
        )


def test_boxes_that_coincide_after_refinement_are_suppressed_again(monkeypatch):
    config = load_config('tiny')
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, refiner_width=4, refiner_box=True))
    torch.manual_seed(0)
    model = build_model(config.model).eval()

    def refine_onto_one_spot(refiner, image, K, class_ids, centres, sizes, *args, boxes=None, **kwargs):
        """every box of a class onto one spot, as a refiner may put them"""
        spots = torch.stack([torch.tensor([0.1 * float(class_id), 0.0, 1.0]) for class_id in class_ids])
        return torch.eye(3).expand(len(class_ids), 3, 3), torch.where(boxes[:, None], spots, centres), sizes, {}

    monkeypatch.setattr('seqpose_core.stages.refiner.refine_poses_with_outputs', refine_onto_one_spot)
    counts = {}
    for moved in (False, True):
        inference = with_settings(
            config.inference,
            {
                'score_threshold': 0.0,
                'max_detections': 50,
                'refiner.box': moved,
                'refiner.classes': CLASS_NAMES,
                'refiner.box_classes': CLASS_NAMES,
            },
        )
        runner = StreamRunner(model, inference, (config.data.input_height, config.data.input_width))
        counts[moved] = [d.class_id for d in runner.step(random_frame(0)).detections]
    assert len(counts[False]) > len(set(counts[False]))  # several of a class before
    assert sorted(counts[True]) == sorted(set(counts[False]))  # one per class once the boxes coincide


def test_box_classes_must_be_refined_classes_of_a_box_refiner(tiny_with_refiner):
    config, model = tiny_with_refiner  # its refiner has no box part
    size = (config.data.input_height, config.data.input_width)
    with pytest.raises(ValueError, match=r"box_classes \['mug'\]: this model's refiner does not re-estimate boxes"):
        StreamRunner(
            model, with_settings(config.inference, {'refiner.classes': ('mug',), 'refiner.box_classes': ('mug',)}), size
        )
    with pytest.raises(ValueError, match=r"\['can'\] not in inference.refiner.classes \['mug'\]"):
        with_settings(config.inference, {'refiner.classes': ('mug',), 'refiner.box_classes': ('mug', 'can')})
    with pytest.raises(ValueError, match=r'refiner.depth_weight 1.5: expected a value in \[0.0, 1.0\]'):
        with_settings(config.inference, {'refiner.depth_weight': 1.5})


# --- training -------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def scene_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    generate_scenes(root, scenes=3, frames=4, size='160x120', split='auto', seed=5, objects='3-4')
    return root


def test_crops_carry_the_allocentric_rotation_of_their_object(scene_root, tiny_with_refiner):
    config, _ = tiny_with_refiner
    wanted = [CLASS_NAMES.index(name) + 1 for name in config.inference.refiner.classes]
    reader = NocsFrameReader(scene_root, 'real_train')
    rotations, centres, every_second = [], [], 0
    for _, prefixes in enumerate_scenes(scene_root, 'real_train'):
        for index, prefix in enumerate(prefixes):
            annotation = reader.read(prefix).annotation
            keep = np.isin(annotation.class_ids, wanted)
            rotations.append(annotation.rotations[keep])
            centres.append(annotation.translations[keep])
            every_second += int(keep.sum()) if index % 2 == 0 else 0
    crops = collect_crops(
        scene_root,
        'real_train',
        config.model,
        config.inference.refiner.classes,
        RefinerTrainingSettings(frame_stride=1),
        jitter=False,
        progress=False,
    )
    assert len(crops['class_ids']) == sum(len(r) for r in rotations) > 0
    assert crops['crops'].dtype == torch.uint8 and crops['crops'].shape[1:] == (3, 64, 64)
    camera_frame = ray_rotation(torch.tensor(np.concatenate(centres), dtype=torch.float32)) @ crops['allocentric']
    torch.testing.assert_close(
        camera_frame, torch.tensor(np.concatenate(rotations), dtype=torch.float32), atol=1e-5, rtol=0
    )
    jittered = collect_crops(
        scene_root,
        'real_train',
        config.model,
        config.inference.refiner.classes,
        RefinerTrainingSettings(frame_stride=2, copies=3),
        progress=False,
    )
    assert len(jittered['class_ids']) == 3 * every_second


def test_training_fits_a_small_set_of_crops(scene_root, tiny_with_refiner):
    config, _ = tiny_with_refiner
    crops = collect_crops(
        scene_root,
        'real_train',
        config.model,
        config.inference.refiner.classes,
        RefinerTrainingSettings(frame_stride=1),
        jitter=False,
        progress=False,
    )
    torch.manual_seed(0)
    refiner = PoseRefiner(width=8, num_bins=12)
    settings = RefinerTrainingSettings(epochs=40, batch_size=8, lr=3e-3)
    rows = train_refiner(refiner, crops, settings, val_crops=crops, progress=False)
    assert rows[-1]['loss_up'] < 0.5 * rows[0]['loss_up']
    assert rows[-1]['loss_azimuth'] < 0.5 * rows[0]['loss_azimuth']
    fitted = [
        rows[-1][f'{name}_median_deg'] for name in ('camera', 'laptop', 'mug') if f'{name}_median_deg' in rows[-1]
    ]
    assert fitted and np.mean(fitted) < np.mean(
        [rows[0][f'{name}_median_deg'] for name in ('camera', 'laptop', 'mug') if f'{name}_median_deg' in rows[0]]
    )


def test_train_refiner_command_writes_a_checkpoint_the_runner_uses(scene_root, tmp_path, capsys):
    base, config = save_tiny_base(tmp_path / 'base.pt')
    run = tmp_path / 'run'
    args = [
        'train-refiner',
        '--checkpoint',
        str(base),
        '--data',
        str(scene_root),
        '--val-data',
        str(scene_root),
        '--out',
        str(run),
        '--epochs',
        '1',
        '--batch-size',
        '4',
        '--width',
        '4',
        '--frame-stride',
        '2',
        '--no-progress',
    ]
    assert seqpose(args) == 0
    model, restored = load_model_and_config(run / 'model.pt')
    assert restored.model.refiner_width == 4 and model.pose_refiner is not None
    for name, tensor in load_checkpoint(base)['model'].items():  # the rest of the model is the base's
        assert torch.equal(model.state_dict()[name], tensor), name
    rows = (run / 'refiner_log.csv').read_text().splitlines()
    assert len(rows) == 2 and any(f'{name}_within_10deg' in rows[0] for name in config.inference.refiner.classes)
    assert seqpose(args) == 2 and 'pass --force' in capsys.readouterr().err
    assert seqpose(args[:-1] + ['--epochs', '0']) == 2


def test_train_refiner_command_takes_its_classes_and_jitter(scene_root, tmp_path, capsys):
    base, config = save_tiny_base(tmp_path / 'base.pt')
    common = [
        'train-refiner',
        '--checkpoint',
        str(base),
        '--data',
        str(scene_root),
        '--epochs',
        '1',
        '--batch-size',
        '4',
        '--width',
        '4',
        '--no-progress',
    ]
    assert (
        seqpose(
            common
            + [
                '--out',
                str(tmp_path / 'run'),
                '--classes',
                'bowl, mug',
                '--shift',
                '0.25',
                '--zoom',
                '0.8',
                '1.3',
                '--box',
                '--val-data',
                str(scene_root),
            ]
        )
        == 0
    )
    assert 'training crops of bowl, mug' in capsys.readouterr().out
    _, restored = load_model_and_config(tmp_path / 'run' / 'model.pt')
    assert restored.inference.refiner.classes == ('bowl', 'mug') and restored.model.refiner_box
    assert restored.inference.refiner.box_classes == ('bowl', 'mug')
    header = (tmp_path / 'run' / 'refiner_log.csv').read_text().splitlines()[0].split(',')
    assert {'loss_centre', 'loss_scale', 'loss_size'} <= set(header)
    assert any(name in header for name in ('bowl_depth_error', 'mug_depth_error'))
    for bad, message in ((['--shift', '1.5'], '--shift 1.5'), (['--zoom', '1.2', '0.9'], '--zoom 1.2 0.9')):
        assert seqpose(common + ['--out', str(tmp_path / 'bad')] + bad) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / 'bad').exists()


def test_continuing_a_model_with_a_refiner_keeps_the_refiner(scene_root, tiny_with_refiner, tmp_path, capsys):
    config, model = tiny_with_refiner
    init = save_checkpoint(tmp_path / 'refined.pt', model, config)
    run = tmp_path / 'continued'
    assert (
        seqpose(
            [
                'train',
                '--config',
                'tiny',
                '--data',
                str(scene_root),
                '--out',
                str(run),
                '--no-progress',
                '--set',
                'train.mode=single',
                '--set',
                'train.single_split=real_train',
                '--set',
                'train.batch_size=2',
                '--set',
                'train.max_steps=2',
                '--set',
                'train.num_threads=1',
                '--set',
                f'train.init_weights={init}',
            ]
        )
        == 0
    )
    assert 'has a pose refiner' in capsys.readouterr().out
    continued, continued_config = load_model_and_config(run / 'model.pt')
    assert continued_config.model.refiner_width == config.model.refiner_width
    for name, tensor in model.pose_refiner.state_dict().items():
        assert torch.equal(continued.pose_refiner.state_dict()[name], tensor), name
    moved = [
        name
        for name, tensor in model.decoder.state_dict().items()
        if not torch.equal(continued.decoder.state_dict()[name], tensor)
    ]
    assert moved  # the model itself trained


def test_checkpoints_of_the_rotation_refiner_load_under_the_new_names(tiny_with_refiner, tmp_path):
    """Refiners saved before 2026-12-06 carry `rotation_refiner.*` tensors; they load as `pose_refiner.*`."""
    config, model = tiny_with_refiner
    path = save_checkpoint(tmp_path / 'old.pt', model, config)
    content = load_checkpoint(path)
    content['model'] = {
        name.replace('pose_refiner.', 'rotation_refiner.', 1): tensor for name, tensor in content['model'].items()
    }
    content['training'] = {'weight_average': {'state': dict(content['model'])}}
    assert any(name.startswith('rotation_refiner.') for name in content['model'])
    save_checkpoint_content(tmp_path / 'legacy.pt', content)
    loaded = load_checkpoint(tmp_path / 'legacy.pt')
    assert set(loaded['model']) == set(model.state_dict()) == set(loaded['training']['weight_average']['state'])
    restored, _ = load_model_and_config(tmp_path / 'legacy.pt')
    for name, tensor in model.pose_refiner.state_dict().items():
        assert torch.equal(restored.pose_refiner.state_dict()[name], tensor), name


def test_eval_without_refinement_gives_the_base_models_rotations(scene_root, tiny_with_refiner, tmp_path):

    config, model = tiny_with_refiner
    refined = save_checkpoint(tmp_path / 'refined.pt', model, config)
    base_config = dataclasses.replace(config, model=dataclasses.replace(config.model, refiner_width=0))
    base_model = build_model(base_config.model)
    base_model.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith('pose_refiner.')})
    base = save_checkpoint(tmp_path / 'base.pt', base_model, base_config)
    outputs = {}
    for name, checkpoint, extra in (
        ('base', base, []),
        ('off', refined, ['--set', 'inference.refiner.rotation=false']),
        ('on', refined, []),
    ):
        outputs[name] = eval_results(
            checkpoint, scene_root, tmp_path / name, 'mf', '--set', 'inference.support_plane.enabled=false', *extra
        )
    assert outputs['base'] and len(outputs['base']) == len(outputs['off']) == len(outputs['on'])
    refined_ids = [CLASS_NAMES.index(name) + 1 for name in config.inference.refiner.classes]
    changed = 0
    for base_frame, off_frame, on_frame in zip(outputs['base'], outputs['off'], outputs['on']):
        np.testing.assert_array_equal(base_frame['pred_RTs'], off_frame['pred_RTs'])
        np.testing.assert_array_equal(base_frame['pred_class_ids'], on_frame['pred_class_ids'])
        chosen = np.isin(on_frame['pred_class_ids'], refined_ids)
        np.testing.assert_array_equal(base_frame['pred_RTs'][~chosen], on_frame['pred_RTs'][~chosen])
        changed += int(
            (np.abs(base_frame['pred_RTs'][chosen] - on_frame['pred_RTs'][chosen]) > 1e-4).any(axis=(1, 2)).sum()
        )
    assert changed > 0


def test_eval_without_box_refinement_keeps_the_decoders_boxes(scene_root, tmp_path):

    config = load_config('tiny')
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, refiner_width=4, refiner_box=True),
        inference=with_settings(config.inference, {'refiner.box_classes': config.inference.refiner.classes}),
    )
    torch.manual_seed(3)
    checkpoint = save_checkpoint(tmp_path / 'boxed.pt', build_model(config.model).eval(), config)
    outputs = {}
    for name, extra in (
        ('decoder', ['--set', 'inference.refiner.rotation=false']),
        ('rotation', ['--set', 'inference.refiner.box=false']),
        ('box', []),
    ):
        outputs[name] = eval_results(
            checkpoint, scene_root, tmp_path / name, 'sf', '--set', 'inference.support_plane.enabled=false', *extra
        )
    refined_ids = [CLASS_NAMES.index(name) + 1 for name in config.inference.refiner.classes]
    moved = 0
    for decoder, rotation, box in zip(outputs['decoder'], outputs['rotation'], outputs['box']):
        np.testing.assert_array_equal(decoder['pred_RTs'][:, :3, 3], rotation['pred_RTs'][:, :3, 3])
        chosen = np.isin(box['pred_class_ids'], refined_ids)
        np.testing.assert_array_equal(decoder['pred_RTs'][~chosen], box['pred_RTs'][~chosen])
        moved += int((np.abs(decoder['pred_RTs'][chosen, :3, 3] - box['pred_RTs'][chosen, :3, 3]) > 1e-4).any(-1).sum())
    assert outputs['box'] and moved > 0


def test_train_refiner_reports_bad_data_and_classes(scene_root, tmp_path, capsys):
    empty = tmp_path / 'empty'
    (empty / 'Real' / 'train').mkdir(parents=True)
    assert seqpose(['train-refiner', '--data', str(empty), '--out', str(tmp_path / 'a'), '--no-progress']) != 0
    assert str(empty) in capsys.readouterr().err
    config = dataclasses.replace(load_config('tiny').model, refiner_width=4)
    with pytest.raises(TrainingError, match=r"refiner classes \['camera', 'kettle'\]: expected one or more of"):
        collect_crops(scene_root, 'real_train', config, ('camera', 'kettle'), RefinerTrainingSettings(), progress=False)
