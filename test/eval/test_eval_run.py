"""`eval.run`: the loop `seqpose eval` and training validation share. A scene starts with an empty memory, and
the runner is given no camera motion unless the ground-truth oracle is asked for by name."""

from types import SimpleNamespace

import pytest

from helpers.generated_scenes import generate_scenes
from seqpose_core.data import NocsFrameReader, iter_scenes
from seqpose_core.eval.run import run_scenes


class RecordingRunner:
    """Stands in for StreamRunner: records resets and whether each step was given a camera motion."""

    def __init__(self, mode='video'):
        self.cfg = SimpleNamespace(mode=mode)
        self.calls = []

    def reset(self):
        self.calls.append('reset')

    def step(self, frame):
        self.calls.append('motion' if frame.camera_motion is not None else 'none')
        return SimpleNamespace(detections=[])


@pytest.fixture(scope='module')
def two_scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    generate_scenes(root, scenes=2, frames=3, size='112x84', split='test', seed=5)
    return root, NocsFrameReader(root, 'test'), list(iter_scenes(root, 'test'))


def test_no_camera_motion_unless_the_oracle_is_named(two_scenes):
    _, reader, scenes = two_scenes
    runner = RecordingRunner()
    frames = [(scene, frame.frame) for scene, frame, _ in run_scenes(runner, reader, scenes)]
    assert frames == [(name, prefix.name) for name, prefixes in scenes for prefix in prefixes]
    assert runner.calls == ['reset', 'none', 'none', 'none'] * 2

    oracle = RecordingRunner()
    list(run_scenes(oracle, reader, scenes, camera_motion='gt'))
    assert oracle.calls == ['reset', 'none', 'motion', 'motion'] * 2  # none at each scene's first frame
    single = RecordingRunner(mode='single')
    list(run_scenes(single, reader, scenes, camera_motion='gt'))
    assert 'motion' not in single.calls
    odometry = RecordingRunner()  # generated videos carry their simulated odometry (odometry.txt)
    list(run_scenes(odometry, reader, scenes, camera_motion='odometry'))
    assert odometry.calls == ['reset', 'none', 'motion', 'motion'] * 2
    with pytest.raises(ValueError, match='camera_motion'):
        list(run_scenes(RecordingRunner(), reader, scenes, camera_motion='imu'))
