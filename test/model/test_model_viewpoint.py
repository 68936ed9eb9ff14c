"""The azimuth-bin rotation (model.viewpoint): the angle round-trips, is measured from the viewing ray, the pose
head composes a proper rotation whose up axis is the regressed one, the loss learns the bin of an ambiguous
object as a classifier does (where L1 on the 6D averages), and a 6D checkpoint warm-starts a model with bins."""

import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from seqpose_core.config import load_config
from seqpose_core.geometry import matrix_to_rotation_6d, rotation_6d_to_matrix
from seqpose_core.model import build_model
from seqpose_core.model.checkpoint import load_state_growing
from seqpose_core.model.pose_head import PoseHead, PositionRange
from seqpose_core.model.viewpoint import AzimuthBins, azimuth_of, azimuth_targets, bin_centres, x_column_of
from seqpose_core.train.config import TrainConfig
from seqpose_core.train.losses import SetCriterion
from seqpose_core.train.matcher import HungarianMatcher

BINS = 12


def random_poses(count, seed=0):
    rotations = torch.as_tensor(Rotation.random(count, random_state=seed).as_matrix(), dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    translations = torch.rand(count, 3, generator=generator) * torch.tensor([1.0, 0.8, 1.0]) + torch.tensor(
        [-0.5, -0.4, 0.5]
    )
    return rotations, translations


def test_azimuth_round_trips_and_rebuilds_the_rotation():
    rotations, translations = random_poses(200)
    x, y = rotations[..., 0], rotations[..., 1]
    azimuth = azimuth_of(x, y, translations)
    assert torch.allclose(x_column_of(azimuth, y, translations), x, atol=1e-5)
    index, residual = azimuth_targets(azimuth, BINS)
    width = 2 * math.pi / BINS
    rebuilt = bin_centres(BINS)[index] + residual * width / 2
    assert torch.allclose(rebuilt, azimuth, atol=1e-5)
    assert residual.abs().max() <= 1.0 and 0 <= index.min() and index.max() < BINS


def test_azimuth_is_the_same_for_the_same_view_anywhere_in_the_image():
    """An object turned with its viewing ray (the same appearance, elsewhere in the image) keeps its azimuth."""
    rotation, _ = random_poses(1, seed=3)
    centre = torch.tensor([0.0, 0.0, 0.8])
    elsewhere = torch.tensor([0.3, -0.2, 0.8])
    turn = torch.as_tensor(
        Rotation.align_vectors([elsewhere.numpy()], [centre.numpy()])[0].as_matrix(), dtype=torch.float32
    )
    moved = turn @ rotation[0]
    before = azimuth_of(rotation[0, :, 0], rotation[0, :, 1], centre)
    after = azimuth_of(moved[:, 0], moved[:, 1], elsewhere)
    assert abs(float(before - after)) < 1e-4
    # ... while the camera-frame (egocentric) x column did change
    assert (moved[:, 0] - rotation[0, :, 0]).abs().max() > 0.05


def test_looking_down_the_up_axis_still_gives_a_unit_x_column():
    up = torch.tensor([0.0, 0.0, -1.0])
    x = x_column_of(torch.tensor(0.7), up, torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(x.norm(), torch.tensor(1.0)) and abs(float(x @ up)) < 1e-6


def test_pose_head_composes_a_rotation_around_the_regressed_up_axis():
    torch.manual_seed(0)
    head = PoseHead(16, azimuth_bins=BINS)
    queries = torch.randn(2, 5, 16)
    reference = torch.rand(2, 5, 3) * 0.5 + 0.25
    with torch.no_grad():
        head.regressor[-1].weight.normal_(std=0.5)
        head.azimuth_bins.linear.weight.normal_(std=0.5)
        outputs = head(queries, reference, PositionRange((-1.5, -1.5, 0.05, 1.5, 1.5, 3.0)))
    rotation = rotation_6d_to_matrix(outputs['pred_rotation6d'])
    eye = torch.eye(3).expand_as(rotation)
    assert torch.allclose(rotation.transpose(-1, -2) @ rotation, eye, atol=1e-5)
    assert torch.allclose(torch.det(rotation), torch.ones(2, 5), atol=1e-5)
    up = torch.nn.functional.normalize(outputs['pred_rotation6d'][..., 3:6], dim=-1)
    assert torch.allclose(rotation[..., 1], up, atol=1e-5)
    # the x column is the best bin's angle about that axis, from the ray to the predicted centre
    expected = head.azimuth_bins.azimuth(outputs['pred_azimuth_logits'], outputs['pred_azimuth_residual'])
    measured = azimuth_of(rotation[..., 0], rotation[..., 1], outputs['pred_translation'])
    assert torch.allclose(
        torch.remainder(measured - expected + math.pi, 2 * math.pi) - math.pi, torch.zeros(2, 5), atol=1e-4
    )


def one_object_batch(rotation, symmetric=False):
    return [
        {
            'labels': torch.tensor([2]),
            'translation': torch.tensor([[0.1, 0.0, 0.8]]),
            'rotation6d': matrix_to_rotation_6d(rotation[None]).reshape(1, 6),
            'size': torch.tensor([[0.1] * 3]),
            'symmetric': torch.tensor([symmetric]),
        }
    ]


def fit_rotation(azimuth_bins, ambiguous_rotations, steps=150):
    """One query fitted to an object that shows each of `ambiguous_rotations` equally often (a camera seen
    from behind: the same image for two azimuths). Returns the fitted rotation's angle to the nearest one."""
    torch.manual_seed(0)
    head = PoseHead(8, azimuth_bins=azimuth_bins)
    criterion = SetCriterion(HungarianMatcher(), TrainConfig(aux_loss=False), 1, azimuth_bins)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-2)
    queries, position_range = torch.ones(1, 1, 8), PositionRange((-1.5, -1.5, 0.05, 1.5, 1.5, 3.0))
    reference = position_range.normalize(torch.tensor([[[0.1, 0.0, 0.8]]]))
    for step in range(steps):
        rotation = ambiguous_rotations[step % len(ambiguous_rotations)]
        losses = criterion(head(queries, reference, position_range), one_object_batch(rotation))
        optimizer.zero_grad()
        (losses['loss_rotation'] + losses.get('loss_azimuth', 0.0)).backward()
        optimizer.step()
    with torch.no_grad():
        fitted = rotation_6d_to_matrix(head(queries, reference, position_range)['pred_rotation6d'])[0, 0]
    angles = [
        Rotation.from_matrix((fitted.T @ rotation).double().numpy()).magnitude() for rotation in ambiguous_rotations
    ]
    return math.degrees(min(angles))


def test_bins_keep_one_of_two_ambiguous_azimuths_where_6d_regression_averages_them():
    base = torch.as_tensor(Rotation.from_euler('y', 40, degrees=True).as_matrix(), dtype=torch.float32)
    flipped = torch.as_tensor(Rotation.from_euler('y', 220, degrees=True).as_matrix(), dtype=torch.float32)
    assert fit_rotation(BINS, [base, flipped]) < 5.0
    assert fit_rotation(0, [base, flipped]) > 30.0


def test_azimuth_loss_skips_symmetric_objects_and_is_small_when_right():
    rotation = torch.as_tensor(Rotation.from_euler('xy', [10, 75], degrees=True).as_matrix(), dtype=torch.float32)
    criterion = SetCriterion(HungarianMatcher(), TrainConfig(aux_loss=False), 1, BINS)
    translation = torch.tensor([[[0.1, 0.0, 0.8]]])
    azimuth = azimuth_of(rotation[:, 0], rotation[:, 1], translation[0, 0])
    index, residual = azimuth_targets(azimuth[None], BINS)
    logits = torch.full((1, 1, BINS), -20.0)
    logits[0, 0, index] = 20.0
    residuals = torch.zeros(1, 1, BINS)
    residuals[0, 0, index] = residual
    outputs = {
        'pred_logits': torch.full((1, 1, 6), -5.0),
        'pred_translation': translation,
        'pred_rotation6d': matrix_to_rotation_6d(rotation)[None, None],
        'pred_size': torch.full((1, 1, 3), 0.1),
        'pred_azimuth_logits': logits,
        'pred_azimuth_residual': residuals,
    }
    assert criterion(outputs, one_object_batch(rotation))['loss_azimuth'] < 1e-4
    wrong = dict(outputs, pred_azimuth_logits=logits.roll(3, dims=-1))
    assert criterion(wrong, one_object_batch(rotation))['loss_azimuth'] > 10.0
    assert criterion(wrong, one_object_batch(rotation, symmetric=True))['loss_azimuth'] == 0.0
    assert 'loss_azimuth' not in SetCriterion(HungarianMatcher(), TrainConfig(), 1).weight_dict


def test_a_6d_checkpoint_warm_starts_a_model_with_azimuth_bins():
    cfg = load_config('tiny').model
    plain = build_model(cfg)
    cfg.azimuth_bins = BINS
    with_bins = build_model(cfg)
    new = load_state_growing(with_bins, plain.state_dict(), 'plain.pt', 'model with azimuth bins')
    assert new and all('azimuth_bins' in name for name in new)
    assert torch.equal(
        with_bins.decoder.pose_heads[0].regressor[-1].weight, plain.decoder.pose_heads[0].regressor[-1].weight
    )
    assert isinstance(with_bins.decoder.pose_heads[0].azimuth_bins, AzimuthBins)


@pytest.mark.parametrize('bins', [0, 1])
def test_fewer_than_two_bins_is_no_classifier(bins):
    if bins == 0:
        assert PoseHead(8, azimuth_bins=0).azimuth_bins is None
    else:
        with pytest.raises(ValueError, match='at least 2'):
            PoseHead(8, azimuth_bins=bins)
