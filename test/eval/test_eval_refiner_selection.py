"""Choosing per class what the refiner serves (seqpose_core.eval.refiner_selection, `seqpose
select-refiner-classes`): the choice rule, and the command end to end on a tiny model and generated scenes."""

import csv
import dataclasses

import pytest
import torch

from helpers.generated_scenes import generate_scenes
from seqpose_core import CLASS_NAMES
from seqpose_core.cli import main as seqpose
from seqpose_core.config import load_config
from seqpose_core.eval.refiner_selection import ARMS, choose_arms, classes_for, current_arms
from seqpose_core.model import build_model, save_checkpoint
from seqpose_core.model.checkpoint import load_checkpoint, save_checkpoint_content
from seqpose_core.runner import load_model_and_config
from seqpose_core.stages.config import RefinerSettings, with_settings


def test_each_class_gets_its_best_arm_ties_to_the_simpler_and_unseen_classes_keep_theirs():
    scores = {
        'decoder': {'bowl': 250.0, 'can': 100.0, 'mug': 80.0, 'laptop': None},
        'rotation': {'bowl': 240.0, 'can': 100.0, 'mug': 90.0, 'laptop': None},
        'box': {'bowl': 200.0, 'can': 100.0, 'mug': 120.0, 'laptop': None},
    }
    chosen = choose_arms(scores, {'bowl': 'box', 'can': 'box', 'mug': 'rotation', 'laptop': 'box'})
    assert chosen == {'bowl': 'decoder', 'can': 'decoder', 'mug': 'box', 'laptop': 'box'}
    assert classes_for(chosen) == (('laptop', 'mug'), ('laptop', 'mug'))
    assert classes_for({'mug': 'rotation', 'bottle': 'box', 'can': 'decoder'}) == (('bottle', 'mug'), ('bottle',))


def test_current_arms_read_the_refiner_settings():
    refiner = RefinerSettings(classes=('camera', 'mug'), box_classes=('mug',))
    assert current_arms(refiner) == {'camera': 'rotation', 'mug': 'box'}


@pytest.fixture(scope='module')
def selection_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp('selection')
    return [
        generate_scenes(root / name, scenes=1, frames=3, size='160x120', split='test', seed=seed, objects='3-4')
        for name, seed in (('a', 31), ('b', 32))
    ]


def test_select_refiner_classes_writes_the_chosen_classes_and_its_table(selection_sets, tmp_path, capsys):
    config = load_config('tiny')
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, refiner_width=4, refiner_box=True),
        inference=with_settings(config.inference, {'refiner.classes': CLASS_NAMES, 'refiner.box_classes': CLASS_NAMES}),
    )
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / 'boxed.pt', build_model(config.model), config)
    out = tmp_path / 'selected.pt'
    args = [
        'select-refiner-classes',
        '--checkpoint',
        str(checkpoint),
        '--data',
        *map(str, selection_sets),
        '--out',
        str(out),
        '--no-progress',
    ]
    assert seqpose(args) == 0
    rows = list(csv.DictReader(open(tmp_path / 'selected.pt.selection.csv', encoding='utf-8')))
    assert [row['class'] for row in rows] == list(CLASS_NAMES)
    for row in rows:
        scored = [(float(row[arm]), -position, arm) for position, arm in enumerate(ARMS) if row[arm] != '']
        assert row['chosen'] == (max(scored)[2] if scored else 'box')
    chosen = {row['class']: row['chosen'] for row in rows}
    _, selected = load_model_and_config(out)
    assert selected.inference.refiner.classes == tuple(name for name, arm in chosen.items() if arm != 'decoder')
    assert selected.inference.refiner.box_classes == tuple(name for name, arm in chosen.items() if arm == 'box')
    assert sum(row['decoder'] != '' for row in rows) >= 2  # the sets have objects of several classes
    original, written = load_checkpoint(checkpoint)['model'], load_checkpoint(out)['model']
    assert original.keys() == written.keys() and all(torch.equal(original[k], written[k]) for k in original)
    assert 'box_classes' in capsys.readouterr().out
    assert seqpose(args) == 2 and 'pass --force' in capsys.readouterr().err


def test_select_refiner_classes_needs_a_refiner(selection_sets, tmp_path, capsys):
    config = load_config('tiny')
    checkpoint = save_checkpoint(tmp_path / 'plain.pt', build_model(config.model), config)
    assert (
        seqpose(
            [
                'select-refiner-classes',
                '--checkpoint',
                str(checkpoint),
                '--data',
                str(selection_sets[0]),
                '--out',
                str(tmp_path / 'out.pt'),
                '--no-progress',
            ]
        )
        == 2
    )
    assert 'no pose refiner' in capsys.readouterr().err
    assert not (tmp_path / 'out.pt').exists()


def test_select_refiner_classes_on_an_old_checkpoint_that_stores_only_its_model_config(selection_sets, tmp_path):
    """Checkpoints from before the inference stage sections kept the refiner's classes in the model section."""
    config = load_config('tiny')
    model_config = dataclasses.replace(config.model, refiner_width=4)
    torch.manual_seed(1)
    checkpoint = save_checkpoint(tmp_path / 'model_only.pt', build_model(model_config), model_config)
    content = load_checkpoint(checkpoint)
    assert content['config_type'] == 'ModelConfig'
    content['config']['refiner_classes'] = ['bowl', 'camera', 'mug']  # as an old file has it
    save_checkpoint_content(checkpoint, content)
    assert (
        seqpose(
            [
                'select-refiner-classes',
                '--checkpoint',
                str(checkpoint),
                '--data',
                str(selection_sets[0]),
                '--out',
                str(tmp_path / 'selected.pt'),
                '--no-progress',
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(tmp_path / 'selected.pt.selection.csv', encoding='utf-8')))
    assert [row['class'] for row in rows] == ['bowl', 'camera', 'mug'] and 'box' not in rows[0]  # no box part
    _, selected = load_model_and_config(tmp_path / 'selected.pt')
    assert selected.inference.refiner.classes == tuple(row['class'] for row in rows if row['chosen'] == 'rotation')
    assert selected.inference.refiner.box_classes == ()
