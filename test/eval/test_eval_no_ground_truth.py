"""No ground truth reaches the model at inference: `seqpose eval --mode mf` (the default, no camera motion)
gives the same predictions when every frame's annotations are replaced by a randomly moved copy. The
ground-truth camera motion (`--camera-motion gt`) is an oracle, named as such, and does change them."""

import pickle
import shutil

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from helpers.generated_scenes import generate_scenes
from seqpose_core.cli import main as seqpose
from seqpose_core.config import load_config
from seqpose_core.eval.results_io import load_results_dir
from seqpose_core.model import build_model, save_checkpoint

PREDICTION_KEYS = ('pred_class_ids', 'pred_RTs', 'pred_scales', 'pred_scores')


def move_annotations(root, seed):
    """Every label file's object poses moved by a random rigid motion of its own (as if each frame's
    annotations came from a differently moved camera)."""
    rng = np.random.default_rng(seed)
    labels = sorted(root.rglob('*_label.pkl'))
    assert labels
    for path in labels:
        with open(path, 'rb') as stream:
            label = pickle.load(stream)
        motion = np.eye(4)
        motion[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
        motion[:3, 3] = rng.normal(scale=0.3, size=3)
        label['poses'] = motion @ label['poses']
        label['rotations'] = motion[:3, :3] @ label['rotations']
        label['translations'] = label['translations'] @ motion[:3, :3].T + motion[:3, 3]
        with open(path, 'wb') as stream:
            pickle.dump(label, stream, protocol=4)


def predictions(out):
    return [{key: result[key] for key in PREDICTION_KEYS} for result in load_results_dir(out / 'results')]


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x[key], y[key]) for x, y in zip(a, b) for key in PREDICTION_KEYS)


def test_video_eval_predictions_do_not_depend_on_annotations(tmp_path):
    data, moved = tmp_path / 'data', tmp_path / 'moved'
    generate_scenes(data, scenes=1, frames=5, size='160x120', split='test', seed=5)
    shutil.copytree(data, moved)
    move_annotations(moved, seed=1)
    config = load_config('tiny')
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / 'tiny.pt', build_model(config.model), config)

    def evaluate(root, name, *extra):
        out = tmp_path / name
        assert (
            seqpose(
                [
                    'eval',
                    '--checkpoint',
                    str(checkpoint),
                    '--data',
                    str(root),
                    '--mode',
                    'mf',
                    '--out',
                    str(out),
                    '--overlays',
                    '0',
                    *extra,
                ]
            )
            == 0
        )
        return predictions(out)

    original = evaluate(data, 'original')
    assert sum(len(p['pred_scores']) for p in original) > 0
    assert same(original, evaluate(moved, 'moved'))
    # the oracle reads the annotations: there the moved copy changes what the model is given
    assert not same(
        evaluate(data, 'oracle', '--camera-motion', 'gt'), evaluate(moved, 'oracle_moved', '--camera-motion', 'gt')
    )
