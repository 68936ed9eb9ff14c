"""Object-centre proposals (model.proposals): targets and decoding invert each other, selection spreads over
objects, the model's query set grows by the proposals, and their loss terms train the head."""

import numpy as np
import pytest
import torch

from helpers.generated_scenes import generate_scenes
from seqpose_core.config import load_config
from seqpose_core.data.labels import instance_index_map
from seqpose_core.geometry import scale_intrinsics
from seqpose_core.model import build_model
from seqpose_core.model.proposals import centre_points, select_cells
from seqpose_core.train.losses import SetCriterion
from seqpose_core.train.matcher import HungarianMatcher
from seqpose_core.train.targets import proposal_targets

IMAGE_HW = (56, 70)
LEVEL_HW = (8, 10)
K = torch.tensor([[60.0, 0.0, 34.5], [0.0, 60.0, 27.5], [0.0, 0.0, 1.0]])


def two_object_frame():
    """An instance-index map with two boxes (objects 0 and 1) and their centres, at the input size."""
    index = torch.full(IMAGE_HW, 255, dtype=torch.int64)
    index[5:25, 5:30] = 0
    index[30:50, 40:65] = 1
    labels = torch.tensor([2, 5])
    translations = torch.tensor([[-0.10, -0.05, 0.8], [0.15, 0.10, 1.1]])
    return index, labels, translations


def test_instance_index_map_follows_the_gt_order():
    mask = np.array([[255, 7, 3], [3, 9, 255]], np.uint8)  # 9: an instance without a pose label
    index = instance_index_map(mask, np.array([3, 7]))
    assert index.tolist() == [[255, 1, 0], [0, 255, 255]]


def test_targets_decode_back_to_the_object_centres():
    index, labels, translations = two_object_frame()
    K_level = scale_intrinsics(K, IMAGE_HW, LEVEL_HW)
    cell_class, centre = proposal_targets(index, labels, translations, K_level, LEVEL_HW)
    assert cell_class.shape == (LEVEL_HW[0] * LEVEL_HW[1],)
    assert set(cell_class.unique().tolist()) == {-1, 2, 5}
    assert (centre[cell_class == -1] == 0).all()
    decoded = centre_points(centre[None], K_level[None], LEVEL_HW)[0]  # (h*w, 3)
    for obj, label in enumerate(labels.tolist()):
        cells = cell_class == label
        assert cells.sum() >= 2
        torch.testing.assert_close(decoded[cells], translations[obj].expand(int(cells.sum()), 3), atol=1e-5, rtol=1e-5)
    # the offsets point at the projected centre from each cell, so they differ between cells of one object
    assert centre[cell_class == 2, 0].std() > 0.1


def test_selection_gives_every_object_a_proposal_before_a_second():
    scores = torch.zeros(1, *LEVEL_HW)
    scores[0, 1:4, 1:4] = torch.tensor([[0.8, 0.9, 0.8], [0.85, 0.95, 0.85], [0.8, 0.9, 0.8]])  # strong object
    scores[0, 6, 8] = 0.3  # weak object
    cells = select_cells(scores.view(1, -1), LEVEL_HW, 2)[0].tolist()
    assert sorted(cells) == sorted([2 * LEVEL_HW[1] + 2, 6 * LEVEL_HW[1] + 8])
    more = select_cells(scores.view(1, -1), LEVEL_HW, 4)[0].tolist()
    assert len(set(more)) == 4 and set(cells) <= set(more)


def proposal_model(count=6):
    cfg = load_config('tiny')
    cfg.model.proposal_queries = count
    torch.manual_seed(0)
    return build_model(cfg.model), cfg


def test_model_prepends_proposals_to_the_anchors():
    model, cfg = proposal_model(6)
    images = torch.randn(2, 3, *IMAGE_HW)
    Ks = K.expand(2, 3, 3).clone()
    outputs, memory = model(images, Ks)
    assert outputs['pred_logits'].shape == (2, 6 + cfg.model.num_queries, 6)
    assert outputs['proposal_logits'].shape[:2] == outputs['proposal_centre'].shape[:2]
    h, w = outputs['proposal_level_hw']
    assert outputs['proposal_logits'].shape[1] == h * w
    outputs, _ = model(images, Ks, memory=memory)
    assert outputs['pred_logits'].shape[1] == cfg.model.memory_top_k + 6 + cfg.model.num_queries


def test_proposal_losses_train_the_head():
    model, cfg = proposal_model(6)
    index, labels, translations = two_object_frame()
    batch = {'image': torch.randn(1, 3, *IMAGE_HW), 'K': K[None].clone(), 'instance_index': index[None]}
    targets = [
        {
            'labels': labels,
            'translation': translations,
            'rotation6d': torch.tensor([[1.0, 0, 0, 0, 1, 0]]).repeat(2, 1),
            'size': torch.full((2, 3), 0.1),
            'symmetric': torch.tensor([False, False]),
        }
    ]
    criterion = SetCriterion(HungarianMatcher.from_config(cfg.train), cfg.train, cfg.model.decoder_layers)
    optimizer = torch.optim.Adam(model.decoder.proposals.parameters(), lr=1e-2)
    history = []
    for _ in range(40):
        outputs, _ = model(batch['image'], batch['K'], dense=False)
        losses = {name: value for name, value in criterion(outputs, targets, batch).items() if 'proposal' in name}
        history.append({key: float(value.detach()) for key, value in losses.items()})
        optimizer.zero_grad()
        (losses['loss_proposal_class'] + losses['loss_proposal_centre']).backward()
        optimizer.step()
    assert history[-1]['loss_proposal_class'] < 0.5 * history[0]['loss_proposal_class']
    assert history[-1]['loss_proposal_centre'] < 0.5 * history[0]['loss_proposal_centre']
    # every query term and both proposal terms come out of the full criterion
    outputs, _ = model(batch['image'], batch['K'])
    losses = criterion(outputs, targets, batch)
    assert {'loss_proposal_class', 'loss_proposal_centre', 'loss_class', 'loss_translation'} <= set(losses)


def test_proposal_model_without_instance_maps_is_refused():
    model, cfg = proposal_model(4)
    criterion = SetCriterion(HungarianMatcher.from_config(cfg.train), cfg.train, cfg.model.decoder_layers)
    outputs, _ = model(torch.randn(1, 3, *IMAGE_HW), K[None].clone(), dense=False)
    targets = [
        {
            'labels': torch.zeros(0, dtype=torch.int64),
            'translation': torch.zeros(0, 3),
            'rotation6d': torch.zeros(0, 6),
            'size': torch.zeros(0, 3),
            'symmetric': torch.zeros(0, dtype=bool),
        }
    ]
    with pytest.raises(KeyError, match='instance_index'):
        criterion(outputs, targets, {'image': torch.zeros(1, 3, *IMAGE_HW), 'K': K[None]})


def test_bad_proposal_level_is_named():
    cfg = load_config('tiny')
    cfg.model.proposal_queries = 4
    cfg.model.proposal_level = 7
    with pytest.raises(ValueError, match='proposal_level 7'):
        build_model(cfg.model)


def test_centre_evidence_reads_the_class_map_under_each_predicted_centre():
    from seqpose_core.model.proposals import centre_evidence

    level_hw = (4, 5)
    logits = torch.full((1, 20, 6), -20.0)  # nothing anywhere ...
    logits[0, 2 * 5 + 3, 4] = 20.0  # ... but a laptop (class 4) in cell (u=3, v=2)
    K_level = torch.tensor([[10.0, 0.0, 2.0], [0.0, 10.0, 1.5], [0.0, 0.0, 1.0]])
    K_input = scale_intrinsics(K_level, level_hw, IMAGE_HW)[None]
    centres = torch.tensor(
        [
            [
                [0.1, 0.05, 1.0],  # projects to cell (3, 2)
                [-0.2, -0.15, 1.0],  # projects to cell (0, 0)
                [0.1, 0.05, -1.0],
            ]
        ]
    )  # behind the camera
    outputs = {'proposal_logits': logits, 'proposal_level_hw': level_hw, 'pred_translation': centres}
    evidence = centre_evidence(outputs, K_input, IMAGE_HW)
    assert evidence.shape == (1, 3, 6)
    assert evidence[0, 0, 4] > 0.99 and evidence[0, 0, :4].max() < 1e-6
    assert evidence[0, 1].max() < 1e-6
    assert evidence[0, 2].max() == 0


def test_runner_fuses_scores_only_for_models_with_proposals():
    import dataclasses

    from seqpose_core.runner import Frame, StreamRunner

    model, cfg = proposal_model(4)
    fused_cfg = dataclasses.replace(cfg.inference, score_fusion='proposal', score_threshold=0.0)
    runner = StreamRunner(model, fused_cfg, IMAGE_HW)
    image = (np.random.default_rng(0).random((*IMAGE_HW, 3)) * 255).astype(np.uint8)
    detections = runner.step(Frame(image, K.numpy(), 0.0)).detections
    assert detections and all(0.0 <= d.score <= 1.0 for d in detections)
    plain, _ = proposal_model(0)
    with pytest.raises(ValueError, match="score_fusion 'proposal' needs a model with proposal queries"):
        StreamRunner(plain, fused_cfg, IMAGE_HW)
    with pytest.raises(ValueError, match='score_fusion'):
        StreamRunner(model, dataclasses.replace(cfg.inference, score_fusion='max'), IMAGE_HW)


def test_eval_score_fusion_switch_on_the_embedded_model(tmp_path, capsys):
    import json

    from seqpose_core.cli import main as seqpose
    from seqpose_core.eval.results_io import load_results_dir

    data = tmp_path / 'data'
    generate_scenes(data, scenes=1, frames=3, size='160x120', split='test', seed=5)
    scores = {}
    for fusion in ('query', 'proposal'):
        out = tmp_path / fusion
        assert (
            seqpose(
                [
                    'eval',
                    '--data',
                    str(data),
                    '--out',
                    str(out),
                    '--overlays',
                    '0',
                    '--set',
                    f'inference.score_fusion={fusion}',
                ]
            )
            == 0
        )
        assert json.loads((out / 'metrics.json').read_text())['mean'].keys()
        scores[fusion] = np.concatenate([r['pred_scores'] for r in load_results_dir(out / 'results')])
    assert len(scores['query']) and len(scores['proposal'])
    assert not np.allclose(np.sort(scores['query'])[-5:], np.sort(scores['proposal'])[-5:])
    # a model without proposals cannot fuse: a clear error, not a crash
    model, cfg = proposal_model(0)
    from seqpose_core.model import save_checkpoint

    save_checkpoint(tmp_path / 'plain.pt', model, cfg)
    capsys.readouterr()
    assert (
        seqpose(
            [
                'eval',
                '--checkpoint',
                str(tmp_path / 'plain.pt'),
                '--data',
                str(data),
                '--out',
                str(tmp_path / 'plain'),
                '--set',
                'inference.score_fusion=proposal',
            ]
        )
        == 1
    )
    assert 'needs a model with proposal queries' in capsys.readouterr().err
