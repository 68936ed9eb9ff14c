"""Videos in which one object moves: `seqpose synth --moving-objects P` slides one object of a video 15-30 cm
across the table mid-video (its ground truth follows, the others stay), so the world fusion's static-world
assumption meets a moved object; without the option the videos are static and a seed's images do not change."""

import numpy as np
import pytest

from helpers.generated_scenes import generate_scenes
from seqpose_core.cli import main as seqpose
from seqpose_core.data import NocsFrameReader, iter_scenes


def pair_distances(frame):
    """{(id, id): metres between the two objects' centres}: what a move changes whatever the camera does."""
    annotation = frame.annotation
    ids = [int(i) for i in annotation.instance_ids]
    return {
        (a, b): float(np.linalg.norm(annotation.translations[i] - annotation.translations[j]))
        for i, a in enumerate(ids)
        for j, b in enumerate(ids)
        if a < b
    }


def changes(root):
    """{pair: how much its distance varies over the video} (the pairs seen together in at least two frames)."""
    reader = NocsFrameReader(root, 'test')
    ((_, prefixes),) = list(iter_scenes(root, 'test'))
    seen = {}
    for prefix in prefixes:
        for pair, distance in pair_distances(reader.read(prefix)).items():
            seen.setdefault(pair, []).append(distance)
    return {pair: max(values) - min(values) for pair, values in seen.items() if len(values) > 1}


def test_one_object_slides_and_the_others_stay(tmp_path):
    root = generate_scenes(
        tmp_path / 'moving',
        scenes=1,
        frames=60,
        size='160x120',
        split='test',
        seed=3,
        objects='3-4',
        options=('--moving-objects', '1'),
    )
    varied = changes(root)
    changed = [pair for pair, change in varied.items() if change > 0.05]
    assert changed, varied
    # one object moved: it is in every pair that changed, and the pairs without it did not change
    moved = set.intersection(*(set(pair) for pair in changed))
    assert moved, changed
    assert all(change < 0.002 for pair, change in varied.items() if not set(pair) & moved), varied


def test_without_the_option_videos_are_static_and_the_chance_is_checked(tmp_path, capsys):
    root = generate_scenes(tmp_path / 'static', scenes=1, frames=4, size='160x120', split='test', seed=3)
    assert all(change < 0.002 for change in changes(root).values())
    assert (
        seqpose(['synth', '--out', str(tmp_path / 'bad'), '--scenes', '1', '--frames', '2', '--moving-objects', '1.5'])
        != 0
    )
    assert '--moving-objects 1.5' in capsys.readouterr().err


@pytest.mark.parametrize('chance', [0.0])
def test_a_seed_without_moves_renders_the_same_images(tmp_path, chance):
    a = generate_scenes(tmp_path / 'a', scenes=1, frames=3, size='160x120', split='test', seed=4)
    assert (
        seqpose(
            [
                'synth',
                '--out',
                str(tmp_path / 'b'),
                '--scenes',
                '1',
                '--frames',
                '3',
                '--size',
                '160x120',
                '--split',
                'test',
                '--seed',
                '4',
                '--objects',
                '2-3',
                '--moving-objects',
                str(chance),
            ]
        )
        == 0
    )
    for name in ('0000_color.png', '0002_color.png', '0002_label.pkl'):
        assert (a / 'Real/test/scene_1' / name).read_bytes() == (tmp_path / 'b/Real/test/scene_1' / name).read_bytes()
