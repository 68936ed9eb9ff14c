"""The refiner's crop scorer: its labels and ranking figure, the runner's fused score, and train-crop-scorer."""

import csv
import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers.generated_scenes import generate_scenes
from helpers.tiny_runner import tiny_refiner_checkpoint
from seqpose_core import CLASS_NAMES
from seqpose_core.cli import main as seqpose
from seqpose_core.config import load_config
from seqpose_core.model import build_model, save_checkpoint
from seqpose_core.model.checkpoint import load_checkpoint
from seqpose_core.model.pose_refiner import PoseRefiner, object_crops
from seqpose_core.runner import Frame, StreamRunner, load_model_and_config
from seqpose_core.stages.config import with_settings
from seqpose_core.train.crop_scorer import _labels, first_scenes, ranking_auc


def test_ranking_auc():
    assert ranking_auc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert ranking_auc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert ranking_auc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5
    assert ranking_auc([0.9, 0.3, 0.5], [True, False, True]) == 1.0
    assert ranking_auc([0.9, 0.6, 0.5], [True, False, True]) == 0.5
    assert math.isnan(ranking_auc([0.9, 0.3], [True, True]))


def test_labels_are_the_class_of_the_object_within_reach():
    annotation = SimpleNamespace(translations=np.array([[0.0, 0.0, 1.0], [0.3, 0.0, 1.0]]), class_ids=np.array([6, 3]))
    centres = np.array([[0.05, 0.0, 1.0], [0.3, 0.0, 1.12], [0.15, 0.0, 1.0], [0.29, 0.01, 1.0]])
    assert list(_labels(centres, annotation, 0.1)) == [6, 0, 0, 3]
    empty = SimpleNamespace(translations=np.zeros((0, 3)), class_ids=np.zeros(0, dtype=int))
    assert list(_labels(centres, empty, 0.1)) == [0, 0, 0, 0]


def test_a_model_without_a_scorer_says_so():
    from seqpose_core.model.crop_scorer import build_crop_scorer
    from seqpose_core.train.crop_scorer import ScorerSettings, train_scorer
    from seqpose_core.train.errors import TrainingError

    config = load_config('tiny')
    assert build_crop_scorer(dataclasses.replace(config.model, refiner_width=4)) is None
    with pytest.raises(TrainingError, match='refiner_scoring'):
        train_scorer(None, {'labels': torch.zeros(8)}, ScorerSettings())


def test_an_old_checkpoint_whose_refiner_carried_the_scorer_loads(tmp_path):
    """Checkpoints from before the crop scorer was its own module name its tensors pose_refiner.scorer.*"""
    from seqpose_core.model.checkpoint import load_checkpoint, save_checkpoint_content

    config = scored_config()
    torch.manual_seed(2)
    model = build_model(config.model)
    path = save_checkpoint(tmp_path / 'new.pt', model, config)
    content = load_checkpoint(path)
    content['model'] = {
        name.replace('crop_scorer.head.', 'pose_refiner.scorer.'): tensor for name, tensor in content['model'].items()
    }
    save_checkpoint_content(tmp_path / 'old.pt', content)
    old, _ = load_model_and_config(tmp_path / 'old.pt')
    for name, tensor in model.crop_scorer.state_dict().items():
        assert torch.equal(old.crop_scorer.state_dict()[name], tensor), name


def scored_config(threshold=0.0):
    config = load_config('tiny')
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, refiner_width=4, refiner_scoring=True),
        inference=dataclasses.replace(config.inference, score_threshold=threshold, max_detections=50),
    )


def test_runner_publishes_the_fused_score_above_the_threshold():
    config = scored_config()
    torch.manual_seed(5)
    model = build_model(config.model).eval()
    size = (config.data.input_height, config.data.input_width)
    image = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    K = np.array([[150.0, 0, 80], [0, 150.0, 60], [0, 0, 1]])
    plain = (
        StreamRunner(model, with_settings(config.inference, {'crop_scoring.enabled': False}), size)
        .step(Frame(image, K, 0.0, 'camera'))
        .detections
    )
    scored = StreamRunner(model, config.inference, size).step(Frame(image, K, 0.0, 'camera')).detections
    assert plain and len(scored) == len(plain)  # threshold 0: nobody goes
    with torch.no_grad():
        crops = object_crops(
            torch.as_tensor(image).permute(2, 0, 1).float(),
            torch.as_tensor(K).float(),
            torch.tensor(np.stack([d.translation for d in scored])).float(),
            torch.tensor(np.stack([d.size for d in scored])).float(),
            config.model.refiner_crop_size,
            config.model.refiner_crop_margin,
        )
        probabilities = torch.softmax(model.crop_scorer(model.pose_refiner.crop_features(crops)), dim=-1).numpy()
    before = {d.extras['query']: d.score for d in plain}
    for detection, row in zip(scored, probabilities):
        assert detection.extras['decoder_score'] == pytest.approx(before[detection.extras['query']])
        weight = config.inference.crop_scoring.weight
        assert detection.score == pytest.approx(
            detection.extras['decoder_score'] ** (1 - weight) * row[detection.class_id] ** weight
        )
    assert [d.score for d in scored] == sorted((d.score for d in scored), reverse=True)
    # the threshold holds the decoder's score (before the refiner looks) and the fused one (published)
    lower = [min(d.score, d.extras['decoder_score']) for d in scored]
    middle = float(np.median(lower))
    kept = (
        StreamRunner(model, dataclasses.replace(config.inference, score_threshold=middle), size)
        .step(Frame(image, K, 0.0, 'camera'))
        .detections
    )
    expected = [d.extras['query'] for d, low in zip(scored, lower) if low >= middle]
    assert expected and [d.extras['query'] for d in kept] == expected and len(expected) < len(scored)


def test_scoring_before_the_refiner_refines_only_what_stays(monkeypatch):
    """crop_scoring.before_refiner: the crop scorer reads every decoder box, the threshold drops some, and the
    refiner's CNN reads only the rest; their first pass is the scorer's crop (reused, not recomputed), so each
    refined pose is what refine_poses gives from the decoder's box."""
    from seqpose_core.model.pose_refiner import refine_poses

    config = scored_config()
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, refiner_box=True, refiner_scoring=True)
    )
    torch.manual_seed(5)
    model = build_model(config.model).eval()
    with torch.no_grad():  # the random scorer leans to background: its probabilities then straddle the decoder's
        model.crop_scorer.head[-1].bias[0] += 3.5
    size = (config.data.input_height, config.data.input_width)
    image = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    K = np.array([[150.0, 0, 80], [0, 150.0, 60], [0, 0, 1]])
    settings = {
        'crop_scoring.before_refiner': True,
        'crop_scoring.weight': 1.0,  # the published score is the crop's: it can fall below the decoder's
        'refiner.passes': 2,
        'refiner.box': True,
        'refiner.classes': CLASS_NAMES,
        'refiner.box_classes': CLASS_NAMES,
        'suppression.method': 'none',
    }
    everything = StreamRunner(model, with_settings(config.inference, settings), size)
    assert [stage.name for stage in everything.stages][:2] == ['crop_scoring', 'refiner']
    # a detection stays when its decoder score (threshold 1) and its fused score (after scoring) both reach it
    every = everything.step(Frame(image, K, 0.0, 'camera')).detections
    scores = sorted(min(d.score, d.extras['decoder_score']) for d in every)

    def kept(threshold):
        return sum(d.extras['decoder_score'] >= threshold for d in every), sum(score >= threshold for score in scores)

    # a threshold some boxes pass to the scorer and fewer pass after it
    threshold = next(t for t in scores if kept(t)[0] > kept(t)[1] > 0)
    decoder_kept = kept(threshold)[0]
    batches = []
    second_stage = model.second_stage

    def counting(crops, class_ids):
        batches.append(len(crops))
        return second_stage(crops, class_ids)

    counting.box, counting.num_bins, counting.scores = second_stage.box, second_stage.num_bins, True
    counting.rotations = second_stage.rotations
    runner = StreamRunner(model, with_settings(config.inference, {**settings, 'score_threshold': threshold}), size)
    for stage in runner.stages[:2]:
        stage.second_stage = stage.refiner = counting
    detections = runner.step(Frame(image, K, 0.0, 'camera')).detections
    assert 0 < len(detections) < len(scores)
    # the scorer read every box the decoder kept; the refiner's second pass only those the fused score kept
    assert batches == [decoder_kept, len(detections)] and len(detections) < decoder_kept
    with torch.no_grad():
        for detection in detections:
            assert 'refiner_first_look' not in detection.extras
            rotation, translation, box_size = refine_poses(
                model.pose_refiner,
                torch.as_tensor(image).permute(2, 0, 1).float(),
                torch.as_tensor(K).float(),
                torch.tensor([detection.class_id]),
                torch.tensor(detection.extras['decoder_translation'][None]),
                torch.tensor(detection.extras['decoder_size'][None]),
                config.model.refiner_crop_size,
                config.model.refiner_crop_margin,
                boxes=torch.tensor([True]),
                depth_weight=config.inference.refiner.depth_weight,
                passes=2,
            )
            assert np.allclose(detection.rotation, rotation[0].numpy(), atol=1e-5)
            assert np.allclose(detection.translation, translation[0].numpy(), atol=1e-5)
            assert detection.score >= threshold


def test_train_crop_scorer_learns_the_head_only(tmp_path):
    root = tmp_path / 'scenes'
    generate_scenes(root, scenes=2, frames=3, size='160x120', split='test', seed=9, objects='3-4')
    start = tiny_refiner_checkpoint(tmp_path / 'refined.pt', refiner_selection={'data': ['selection-set']})
    out = tmp_path / 'run'
    assert (
        seqpose(
            [
                'train-crop-scorer',
                '--checkpoint',
                str(start),
                '--data',
                str(root),
                '--split',
                'real_test',
                '--val-data',
                str(root),
                '--out',
                str(out),
                '--epochs',
                '2',
                '--batch-size',
                '8',
                '--no-progress',
            ]
        )
        == 0
    )
    before, after = load_checkpoint(start)['model'], load_checkpoint(out / 'model.pt')['model']
    scorer = [name for name in after if name.startswith('crop_scorer.')]
    assert scorer and not any(name in before for name in scorer)
    for name, tensor in before.items():  # the rest is copied unchanged
        assert torch.equal(tensor, after[name]), name
    assert load_checkpoint(out / 'model.pt')['refiner_selection'] == {'data': ['selection-set']}
    model, loaded = load_model_and_config(out / 'model.pt')
    assert loaded.model.refiner_scoring and model.crop_scorer is not None
    with open(out / 'scorer_log.csv', encoding='utf-8') as stream:
        rows = list(csv.DictReader(stream))
    assert [row['epoch'] for row in rows] == ['1', '2'] and 0 <= float(rows[-1]['accuracy']) <= 1
    assert float(rows[-1]['loss']) < float('inf')


@pytest.mark.parametrize('weight', [-0.1, 1.5])
def test_bad_crop_score_weights_are_named(weight):
    config = scored_config()
    model = build_model(config.model)
    with pytest.raises(ValueError, match=f'inference.crop_scoring.weight {weight}'):
        StreamRunner(
            model,
            with_settings(config.inference, {'crop_scoring.weight': weight}),
            (config.data.input_height, config.data.input_width),
        )


def test_train_crop_scorer_needs_a_refiner(tmp_path, capsys):
    config = load_config('tiny')
    torch.manual_seed(7)
    base = save_checkpoint(tmp_path / 'base.pt', build_model(config.model), config)
    assert (
        seqpose(
            [
                'train-crop-scorer',
                '--checkpoint',
                str(base),
                '--data',
                str(tmp_path),
                '--out',
                str(tmp_path / 'run'),
                '--no-progress',
            ]
        )
        == 1
    )
    assert 'no pose refiner' in capsys.readouterr().err


def test_kept_detections_train_the_same_head_without_running_the_model(tmp_path, capsys):
    root = tmp_path / 'scenes'
    generate_scenes(root, scenes=2, frames=3, size='160x120', split='test', seed=9, objects='3-4')
    start = tiny_refiner_checkpoint(tmp_path / 'refined.pt')
    common = ['--checkpoint', str(start), '--epochs', '2', '--batch-size', '8', '--no-progress']
    collected = tmp_path / 'collected'
    assert (
        seqpose(
            [
                'train-crop-scorer',
                *common,
                '--data',
                str(root),
                '--split',
                'real_test',
                '--val-data',
                str(root),
                '--keep-detections',
                '--out',
                str(collected),
            ]
        )
        == 0
    )
    kept = torch.load(collected / 'detections.pt', weights_only=True)
    assert set(kept['scene_index'].tolist()) == {0, 1} and len(kept['labels']) == len(kept['features'])
    again = tmp_path / 'again'
    assert (
        seqpose(
            [
                'train-crop-scorer',
                *common,
                '--detections',
                str(collected / 'detections.pt'),
                '--val-detections',
                str(collected / 'val_detections.pt'),
                '--out',
                str(again),
            ]
        )
        == 0
    )
    first, second = load_checkpoint(collected / 'model.pt')['model'], load_checkpoint(again / 'model.pt')['model']
    scorer = [name for name in first if name.startswith('crop_scorer.')]
    assert scorer and all(torch.equal(first[name], second[name]) for name in scorer)
    assert (collected / 'scorer_log.csv').read_text().splitlines()[1].split(',')[2:] == (
        again / 'scorer_log.csv'
    ).read_text().splitlines()[1].split(',')[2:]  # the same loss and figures
    one_scene = first_scenes(kept, 1)
    assert 0 < len(one_scene['labels']) < len(kept['labels']) and set(one_scene['scene_index'].tolist()) == {0}

    # another refiner's features are refused by name
    other = tiny_refiner_checkpoint(tmp_path / 'other.pt', seed=7)
    capsys.readouterr()
    assert (
        seqpose(
            [
                'train-crop-scorer',
                '--checkpoint',
                str(other),
                '--detections',
                str(collected / 'detections.pt'),
                '--out',
                str(tmp_path / 'refused'),
                '--no-progress',
            ]
        )
        == 1
    )
    assert 'detections.pt: holds the crop features of another refiner' in capsys.readouterr().err
    assert not (tmp_path / 'refused' / 'model.pt').exists()
    assert (
        seqpose(
            [
                'train-crop-scorer',
                '--data',
                str(root),
                '--detections',
                str(collected / 'detections.pt'),
                '--out',
                str(tmp_path / 'both'),
            ]
        )
        == 2
    )
    assert '--data and --detections: give one of them' in capsys.readouterr().err
    assert seqpose(['train-crop-scorer', '--out', str(tmp_path / 'neither')]) == 2
    assert '--data or --detections' in capsys.readouterr().err


def test_several_training_roots_number_their_scenes_in_order(tmp_path):
    roots = [tmp_path / 'first', tmp_path / 'second']
    for seed, root in enumerate(roots):
        generate_scenes(root, scenes=2, frames=2, size='160x120', split='test', seed=20 + seed, objects='3-4')
    start = tiny_refiner_checkpoint(tmp_path / 'refined.pt')
    kept = {}
    for max_scenes in (0, 3):
        out = tmp_path / f'run{max_scenes}'
        assert (
            seqpose(
                [
                    'train-crop-scorer',
                    '--checkpoint',
                    str(start),
                    '--data',
                    *map(str, roots),
                    '--split',
                    'real_test',
                    '--max-scenes',
                    str(max_scenes),
                    '--keep-detections',
                    '--epochs',
                    '1',
                    '--batch-size',
                    '8',
                    '--out',
                    str(out),
                    '--no-progress',
                ]
            )
            == 0
        )
        kept[max_scenes] = torch.load(out / 'detections.pt', weights_only=True)
    assert sorted(set(kept[0]['scene_index'].tolist())) == [0, 1, 2, 3]
    assert sorted(set(kept[3]['scene_index'].tolist())) == [0, 1, 2]
    # the first three scenes are the same detections either way
    assert torch.equal(first_scenes(kept[0], 3)['features'], kept[3]['features'])


def test_a_file_that_is_not_kept_detections_is_refused_by_name(tmp_path):
    from seqpose_core.train.crop_scorer import load_detections
    from seqpose_core.train.errors import TrainingError

    refiner = PoseRefiner(4, 12, box=True)
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'not a torch file')
    with pytest.raises(TrainingError, match='garbage.pt: not a detections file'):
        load_detections(garbage, refiner)
    checkpoint_like = tmp_path / 'checkpoint.pt'
    torch.save({'format': 'seqpose-checkpoint'}, checkpoint_like)
    with pytest.raises(TrainingError, match='checkpoint.pt: not a detections file'):
        load_detections(checkpoint_like, refiner)
    with pytest.raises(TrainingError, match='missing.pt: no such detections file'):
        load_detections(tmp_path / 'missing.pt', refiner)
