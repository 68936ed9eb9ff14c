"""Hungarian matcher on hand cases; every loss term is ~0 at a perfect prediction and > 0 otherwise."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from seqpose_core.geometry import matrix_to_rotation_6d, rotation_6d_to_matrix, rotation_error_deg
from seqpose_core.train.config import TrainConfig
from seqpose_core.train.losses import LossTargets, SetCriterion
from seqpose_core.train.matcher import HungarianMatcher
from seqpose_core.train.targets import closest_symmetric_rotation6d, symmetric_mask

LAYERS = 2  # decoder layers: the final one + one aux layer, as the test outputs have
BIG_LOGIT = 30.0  # sigmoid(30) = 1 - 1e-13: a confident, correct classification


def make_targets(labels, translations, rotations, sizes, symmetric=None):
    rotations = torch.as_tensor(np.asarray(rotations), dtype=torch.float32)
    return {
        'labels': torch.as_tensor(labels, dtype=torch.int64),
        'translation': torch.as_tensor(translations, dtype=torch.float32),
        'rotation6d': matrix_to_rotation_6d(rotations).reshape(-1, 6),
        'size': torch.as_tensor(sizes, dtype=torch.float32),
        'symmetric': torch.as_tensor(symmetric if symmetric is not None else [False] * len(labels)),
    }


def perfect_outputs(targets, num_queries, assignment):
    """Outputs of one frame whose queries `assignment[g]` predict object g exactly; the rest are confident
    'nothing' (very negative logits) with arbitrary boxes."""
    logits = torch.full((1, num_queries, 6), -BIG_LOGIT)
    translation = torch.zeros(1, num_queries, 3) + torch.tensor([0.0, 0.0, 2.0])
    rotation6d = matrix_to_rotation_6d(torch.eye(3)).repeat(1, num_queries, 1)
    size = torch.full((1, num_queries, 3), 0.5)
    for gt_index, query in enumerate(assignment):
        logits[0, query, targets['labels'][gt_index]] = BIG_LOGIT
        translation[0, query] = targets['translation'][gt_index]
        rotation6d[0, query] = targets['rotation6d'][gt_index]
        size[0, query] = targets['size'][gt_index]
    return {'pred_logits': logits, 'pred_translation': translation, 'pred_rotation6d': rotation6d, 'pred_size': size}


@pytest.fixture
def scene():
    rotations = Rotation.random(3, random_state=7).as_matrix()
    return make_targets(
        labels=[0, 4, 2],  # bottle, laptop, camera (0-based)
        translations=[[0.1, 0.0, 0.8], [-0.2, 0.1, 1.0], [0.0, -0.1, 0.6]],
        rotations=rotations,
        sizes=[[0.08, 0.2, 0.08], [0.3, 0.2, 0.25], [0.1, 0.08, 0.07]],
    )


def test_matcher_finds_the_queries_that_predict_each_object(scene):
    outputs = perfect_outputs(scene, num_queries=10, assignment=[7, 2, 5])
    [(queries, objects)] = HungarianMatcher()(outputs, [scene])
    assert dict(zip(queries.tolist(), objects.tolist())) == {7: 0, 2: 1, 5: 2}


def test_matcher_hand_case_trades_class_against_position():
    """Two objects, three queries. Query 0 sits exactly on object 0 but says the wrong class; query 1 has the
    right class and is 1 cm off; query 2 is right on object 1. The optimum is {1: 0, 2: 1}."""
    targets = make_targets(
        [1, 3], [[0.0, 0.0, 1.0], [0.3, 0.0, 1.0]], [torch.eye(3).numpy()] * 2, [[0.1, 0.1, 0.1]] * 2
    )
    outputs = perfect_outputs(targets, 3, assignment=[0, 2])
    outputs['pred_logits'][0, 0] = -BIG_LOGIT
    outputs['pred_logits'][0, 0, 5] = BIG_LOGIT  # confidently a mug
    outputs['pred_logits'][0, 1, 1] = BIG_LOGIT  # the right class ...
    outputs['pred_translation'][0, 1] = torch.tensor([0.01, 0.0, 1.0])  # ... 1 cm off
    outputs['pred_rotation6d'][0, 1] = targets['rotation6d'][0]
    outputs['pred_size'][0, 1] = targets['size'][0]
    matcher = HungarianMatcher(cost_class=2.0, cost_translation=5.0, cost_rotation=1.0, cost_size=2.0)
    [(queries, objects)] = matcher(outputs, [targets])
    assert dict(zip(queries.tolist(), objects.tolist())) == {1: 0, 2: 1}
    # and the costs are what the formula says: query 1 -> object 0 costs the class term + 5 * 0.01
    cost = matcher.cost_matrix(outputs, 0, targets)
    class_only = HungarianMatcher(cost_class=2.0, cost_translation=0, cost_rotation=0, cost_size=0)
    assert cost[1, 0] - class_only.cost_matrix(outputs, 0, targets)[1, 0] == pytest.approx(0.05, abs=1e-5)


def test_matcher_handles_frames_without_objects(scene):
    empty = make_targets([], torch.zeros(0, 3), torch.zeros(0, 3, 3), torch.zeros(0, 3))
    outputs = perfect_outputs(scene, 6, [0, 1, 2])
    outputs = {key: value.repeat(2, 1, 1) for key, value in outputs.items()}
    matches = HungarianMatcher()(outputs, [empty, scene])
    assert len(matches[0][0]) == 0 and sorted(matches[1][0].tolist()) == [0, 1, 2]


def test_symmetric_target_ignores_rotation_about_y():
    gt = torch.as_tensor(Rotation.random(random_state=1).as_matrix(), dtype=torch.float32)
    spun = gt @ torch.as_tensor(Rotation.from_euler('y', 73, degrees=True).as_matrix(), dtype=torch.float32)
    pred6d, gt6d = matrix_to_rotation_6d(spun), matrix_to_rotation_6d(gt)
    target = closest_symmetric_rotation6d(pred6d, gt6d, torch.tensor(True))
    torch.testing.assert_close(target, pred6d, atol=1e-5, rtol=0)  # no penalty for the spin ...
    unchanged = closest_symmetric_rotation6d(pred6d, gt6d, torch.tensor(False))
    torch.testing.assert_close(unchanged, gt6d)  # ... unless not symmetric
    tilted = gt @ torch.as_tensor(Rotation.from_euler('x', 20, degrees=True).as_matrix(), dtype=torch.float32)
    target = closest_symmetric_rotation6d(matrix_to_rotation_6d(tilted), gt6d, torch.tensor(True))
    # a tilt of the y axis is still penalised: the target keeps the GT y axis
    assert float(rotation_error_deg(rotation_6d_to_matrix(target), gt, symmetric=True)) < 1e-3
    assert (target - matrix_to_rotation_6d(tilted)).abs().sum() > 0.1


def test_symmetric_mask_covers_bottle_bowl_can_and_handleless_mugs():
    class_ids = torch.tensor([1, 2, 3, 4, 5, 6, 6])
    handle = torch.tensor([1, 1, 1, 1, 1, 1, 0])
    assert symmetric_mask(class_ids, handle).tolist() == [True, True, False, True, False, False, True]


def dense_batch(height=8, width=10):
    generator = torch.Generator().manual_seed(0)
    depth = torch.rand(1, 1, height, width, generator=generator) + 0.5
    depth[..., :2, :] = 0.0  # invalid rows
    normal = torch.nn.functional.normalize(torch.randn(1, 3, height, width, generator=generator), dim=1)
    normal[..., -1, :] = 0.0
    semantic = torch.randint(0, 7, (1, height, width), generator=generator)
    semantic[..., 0] = 255
    return {'depth': depth, 'normal': normal, 'semantic': semantic}


def perfect_dense(batch):
    seg_logits = torch.full((1, 7) + batch['semantic'].shape[-2:], -BIG_LOGIT)
    labels = batch['semantic'].clone()
    labels[labels == 255] = 0
    seg_logits.scatter_(1, labels[:, None], BIG_LOGIT)
    return {'depth': batch['depth'].clone(), 'normal': batch['normal'].clone(), 'seg_logits': seg_logits}


ALL_TERMS = (
    'loss_class',
    'loss_translation',
    'loss_rotation',
    'loss_size',
    'loss_depth',
    'loss_normal',
    'loss_segmentation',
)


def test_every_term_is_zero_at_a_perfect_prediction(scene):
    batch = dense_batch()
    outputs = perfect_outputs(scene, 12, [3, 9, 0])
    outputs.update(perfect_dense(batch))
    outputs['aux_outputs'] = [perfect_outputs(scene, 12, [1, 2, 4])]
    criterion = SetCriterion(HungarianMatcher(), TrainConfig(), LAYERS)
    losses = criterion(outputs, [scene], batch)
    assert set(ALL_TERMS) <= set(losses)
    assert {f'{term}_aux0' for term in ('loss_class', 'loss_translation', 'loss_rotation', 'loss_size')} <= set(losses)
    for name, value in losses.items():
        assert float(value) < 1e-6, name


def perturb(outputs, term):
    """The smallest change that must make exactly the named term positive."""
    changed = {key: (value.clone() if torch.is_tensor(value) else value) for key, value in outputs.items()}
    if term == 'loss_class':
        changed['pred_logits'][0, 3, 0] = 0.0  # unsure about a real bottle
    elif term == 'loss_translation':
        changed['pred_translation'][0, 3, 2] += 0.02
    elif term == 'loss_rotation':
        changed['pred_rotation6d'][0, 9, 0] += 0.1
    elif term == 'loss_size':
        changed['pred_size'][0, 9, 1] += 0.01
    elif term == 'loss_depth':
        changed['depth'][..., 5, 5] += 0.05
    elif term == 'loss_normal':
        changed['normal'][..., 4, 4] *= -1
    elif term == 'loss_segmentation':
        changed['seg_logits'][..., 3, 3] = 0.0
    return changed


@pytest.mark.parametrize('term', ALL_TERMS)
def test_each_term_is_positive_when_its_prediction_is_wrong(scene, term):
    batch = dense_batch()
    outputs = perfect_outputs(scene, 12, [3, 9, 0])
    outputs.update(perfect_dense(batch))
    losses = SetCriterion(HungarianMatcher(), TrainConfig(), LAYERS)(perturb(outputs, term), [scene], batch)
    assert float(losses[term]) > 1e-4, term
    for other in ALL_TERMS:
        if other != term:
            assert float(losses[other]) < 1e-6, (term, other)


def test_symmetric_object_spun_about_y_costs_nothing(scene):
    scene['symmetric'][:] = torch.tensor([True, False, False])  # the bottle
    outputs = perfect_outputs(scene, 12, [3, 9, 0])
    spin = torch.as_tensor(Rotation.from_euler('y', 120, degrees=True).as_matrix(), dtype=torch.float32)
    bottle = rotation_6d_to_matrix(scene['rotation6d'][0])
    outputs['pred_rotation6d'][0, 3] = matrix_to_rotation_6d(bottle @ spin)
    losses = SetCriterion(HungarianMatcher(), TrainConfig(), LAYERS)(outputs, [scene])
    assert float(losses['loss_rotation']) < 1e-5
    scene['symmetric'][:] = False
    losses = SetCriterion(HungarianMatcher(), TrainConfig(), LAYERS)(outputs, [scene])
    assert float(losses['loss_rotation']) > 0.5


def test_weights_follow_the_config_and_lambda_rot_is_10(scene):
    criterion = SetCriterion(HungarianMatcher(), TrainConfig(), LAYERS)
    assert criterion.weight_dict['loss_rotation'] == 10.0
    assert criterion.weight_dict['loss_rotation_aux0'] == 10.0
    assert all(criterion.weight_dict[name] == 1.0 for name in ALL_TERMS if name != 'loss_rotation')
    losses = {'loss_rotation': torch.tensor(0.5), 'loss_size_aux0': torch.tensor(2.0)}
    assert math.isclose(float(criterion.weighted_total(losses)), 7.0)


def test_weight_dict_names_every_term_the_criterion_returns(scene):
    """Built once for the model's decoder layers: aux copies of every earlier layer, one-to-many copies of every
    layer (weighted by weight_one_to_many); a name it does not know is an error, not a silent weight."""
    cfg = TrainConfig(one_to_many=2, weight_one_to_many=0.5)
    criterion = SetCriterion(HungarianMatcher.from_config(cfg), cfg, 3)
    batch = dense_batch()
    outputs = perfect_outputs(scene, 12, [3, 9, 0])
    outputs.update(perfect_dense(batch))
    outputs['aux_outputs'] = [perfect_outputs(scene, 12, [1, 2, 4]), perfect_outputs(scene, 12, [5, 6, 7])]
    losses = criterion(outputs, [scene], batch)
    assert {'loss_size_aux1', 'loss_size_o2m2', 'loss_depth'} <= set(losses) <= set(criterion.weight_dict)
    assert criterion.weight_dict['loss_rotation_aux1'] == cfg.weight_rotation
    assert criterion.weight_dict['loss_rotation_o2m2'] == pytest.approx(cfg.weight_rotation * 0.5)
    assert 'loss_size_aux2' not in criterion.weight_dict  # the final layer has no aux copy
    with pytest.raises(KeyError):
        criterion.weighted_total({'loss_size_aux7': torch.tensor(1.0)})


def test_losses_backpropagate_to_every_prediction(scene):
    batch = dense_batch()
    outputs = perfect_outputs(scene, 12, [3, 9, 0])
    outputs.update(perfect_dense(batch))
    outputs = {key: value + 0.1 * torch.randn_like(value) for key, value in outputs.items()}
    outputs['pred_logits'] = torch.randn(1, 12, 6)  # unsaturated: a saturated sigmoid has no gradient
    outputs['seg_logits'] = torch.randn_like(outputs['seg_logits'])
    leaves = {key: value.requires_grad_() for key, value in outputs.items()}
    criterion = SetCriterion(HungarianMatcher(), TrainConfig(), LAYERS)
    criterion.weighted_total(criterion(leaves, [scene], batch)).backward()
    for key, value in leaves.items():
        assert value.grad is not None and value.grad.abs().sum() > 0, key


def test_one_to_many_rewards_every_copy_and_weights_by_config(scene):
    """With one_to_many = 2 each object is matched twice: two exact copies per object cost nothing in the
    `_o2m` terms, while one copy per object leaves the second match of each object wrong."""
    cfg = TrainConfig(one_to_many=2, weight_one_to_many=0.5, aux_loss=False)
    criterion = SetCriterion(HungarianMatcher.from_config(cfg), cfg, LAYERS)
    doubled = perfect_outputs(scene, num_queries=10, assignment=[7, 2, 5])
    single_copy = perfect_outputs(scene, num_queries=10, assignment=[7, 2, 5])
    for gt_index, query in enumerate([1, 3, 8]):  # a second exact copy of every object
        for key in ('pred_translation', 'pred_rotation6d', 'pred_size'):
            doubled[key][0, query] = doubled[key][0, 7 if gt_index == 0 else (2 if gt_index == 1 else 5)]
        doubled['pred_logits'][0, query, scene['labels'][gt_index]] = BIG_LOGIT
    good = criterion(doubled, [scene])
    bad = criterion(single_copy, [scene])
    for term in ('translation', 'size', 'class'):
        assert good[f'loss_{term}_o2m0'] < 1e-6
        assert bad[f'loss_{term}_o2m0'] > 1e-3
    assert criterion.weight_dict['loss_class_o2m0'] == pytest.approx(cfg.weight_class * 0.5)
    assert criterion.weight_dict['loss_rotation_o2m0'] == pytest.approx(cfg.weight_rotation * 0.5)
    assert not any('_o2m' in name for name in SetCriterion(HungarianMatcher(), TrainConfig(), LAYERS)(doubled, [scene]))


def test_background_weight_shifts_the_segmentation_loss_to_objects():
    logits = torch.zeros(1, 7, 4, 4)
    logits[:, 0] = 5.0  # everything called background
    goal = torch.zeros(1, 4, 4, dtype=torch.long)
    goal[0, :2, :2] = 3  # a quarter of the pixels show a camera
    values = {}
    for weight in (1.0, 0.1):
        criterion = SetCriterion(HungarianMatcher(), TrainConfig(segmentation_background_weight=weight), LAYERS)
        values[weight] = float(
            criterion.loss_segmentation(
                {'seg_logits': logits}, LossTargets([], torch.tensor(1.0), {'semantic': goal}), None
            )
        )
    per_object_pixel = float(torch.nn.functional.cross_entropy(logits[:, :, 0, 0], torch.tensor([3])))
    per_background_pixel = float(torch.nn.functional.cross_entropy(logits[:, :, 3, 3], torch.tensor([0])))
    assert values[1.0] == pytest.approx(0.25 * per_object_pixel + 0.75 * per_background_pixel, rel=1e-5)
    assert values[0.1] == pytest.approx((4 * per_object_pixel + 1.2 * per_background_pixel) / 5.2, rel=1e-5)
    assert values[0.1] > values[1.0]
    with pytest.raises(ValueError, match='segmentation_background_weight'):
        SetCriterion(HungarianMatcher(), TrainConfig(segmentation_background_weight=0.0), LAYERS)
