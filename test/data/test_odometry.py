"""Simulated odometry: the generator writes per video scene what a robot's odometry reports (drift, jitter; never
the true trajectory), the reader loads it, and `seqpose eval --camera-motion odometry` feeds it to the runner."""

import json

import numpy as np
import pytest

from helpers.generated_scenes import generate_scenes
from seqpose_core.cli import main as seqpose
from seqpose_core.data import NocsFormatError, NocsFrameReader, iter_scenes
from seqpose_core.data.files import read_odometry_file
from seqpose_core.eval.run import scene_odometry
from seqpose_core.synth.odometry import OdometryNoise, simulate_odometry
from seqpose_core.synth.scene import FPS, video_trajectory


def travelled(world_from_camera):
    return float(np.linalg.norm(np.diff(world_from_camera[:, :3, 3], axis=0), axis=1).sum())


def test_odometry_drifts_with_the_distance_and_is_never_the_true_trajectory():
    camera_from_world = video_trajectory(np.random.default_rng(3), 300)
    world_from_camera = np.linalg.inv(camera_from_world)
    readings = simulate_odometry(np.random.default_rng(4), camera_from_world, FPS)
    # the true trajectory in the odometry's frame (it starts at the first camera)
    truth = np.linalg.inv(world_from_camera[0]) @ world_from_camera
    errors = np.linalg.norm(readings[:, :3, 3] - truth[:, :3, 3], axis=1)
    distance = travelled(world_from_camera)
    assert distance > 0.4  # 10 s of a hand-held orbit
    assert 0.0005 < errors[1] < 0.01 and errors[-1] < 0.06 * distance + 0.005
    steps = np.linalg.inv(readings[:-1]) @ readings[1:]  # what the runner gets, inverted
    true_steps = np.linalg.inv(truth[:-1]) @ truth[1:]
    assert not np.allclose(steps, true_steps, atol=1e-4)
    np.testing.assert_allclose(steps[:, :3, 3], true_steps[:, :3, 3], atol=0.006)
    perfect = simulate_odometry(np.random.default_rng(4), camera_from_world, FPS, OdometryNoise(0, 0, 0, 0, 0, 0))
    np.testing.assert_allclose(perfect, truth, atol=1e-9)  # without noise it would be the trajectory itself


@pytest.fixture(scope='module')
def video_root(tmp_path_factory):
    return generate_scenes(
        tmp_path_factory.mktemp('odometry'), scenes=2, frames=4, size='160x120', split='test', seed=12
    )


def test_the_generator_writes_odometry_and_the_reader_loads_it(video_root):
    reader = NocsFrameReader(video_root, 'test')
    for _, prefixes in iter_scenes(video_root, 'test'):
        readings = scene_odometry(reader, prefixes)
        assert readings.shape == (4, 4, 4)
        np.testing.assert_allclose(
            readings[:, :3, :3] @ readings[:, :3, :3].transpose(0, 2, 1),
            np.broadcast_to(np.eye(3), (4, 3, 3)),
            atol=1e-6,
        )
        header = (prefixes[0].parent / 'odometry.txt').read_text().splitlines()[0]
        assert 'NOT the true trajectory' in header and 'translation_drift' in header


def test_bad_odometry_files_are_refused_by_name(tmp_path):
    path = tmp_path / 'odometry.txt'
    path.write_text('0 1 0 0 0 0 1 0 0 0 0 1 0\n')
    with pytest.raises(NocsFormatError, match='odometry.txt: expected lines of a frame number and 16'):
        read_odometry_file(path)
    path.write_text('0 2 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1\n')
    with pytest.raises(NocsFormatError, match='odometry.txt: a pose is not rigid'):
        read_odometry_file(path)


def test_eval_with_odometry_and_a_dataset_without_it(video_root, tmp_path, capsys):
    from helpers.tiny_runner import tiny_model
    from seqpose_core.model import save_checkpoint

    config, model = tiny_model()
    checkpoint = save_checkpoint(tmp_path / 'tiny.pt', model, config)
    common = [
        'eval',
        '--checkpoint',
        str(checkpoint),
        '--split',
        'test',
        '--overlays',
        '0',
        '--set',
        'inference.score_threshold=0',
    ]
    assert (
        seqpose(common + ['--data', str(video_root), '--out', str(tmp_path / 'odo'), '--camera-motion', 'odometry'])
        == 0
    )
    assert json.loads((tmp_path / 'odo' / 'metrics.json').read_text())['mean']
    for path in video_root.glob('Real/test/scene_*/odometry.txt'):
        path.unlink()  # as REAL275: no odometry recorded
    assert (
        seqpose(common + ['--data', str(video_root), '--out', str(tmp_path / 'none'), '--camera-motion', 'odometry'])
        == 1
    )
    assert 'has no odometry.txt' in capsys.readouterr().err
