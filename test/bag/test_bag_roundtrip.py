"""Round trip on generated REAL-format scenes: scenes -> bag -> `bag eval` scores exactly what `seqpose eval`
scores on the same scenes with the same checkpoint; `bag score` of the output bag agrees; damaged bags are
scored on what is usable with the reasons in the report."""

import json

import numpy as np
import pytest

from helpers.bags import FRAMES, SCENES, generate_scenes, synthetic_frame_bag, tiny_checkpoint
from seqpose_core.bag import messages as M
from seqpose_core.bag.from_nocs import write_nocs_bag
from seqpose_core.bag.replay import evaluate_bag
from seqpose_core.bag.score_recorded import score_bag
from seqpose_core.cli import main as seqpose_main
from seqpose_core.runner import build_runner


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp('roundtrip')
    root = generate_scenes(base / 'scenes')
    checkpoint = tiny_checkpoint(base / 'tiny.pt')
    bag = base / 'scenes_bag'
    write_nocs_bag([root / 'Real' / 'test'], bag, progress=False)
    return base, root, checkpoint, bag


def _numbers(metrics):
    """Every number in a metrics dict, flattened with its key path (for an exact comparison)."""
    out = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f'{prefix}/{key}', item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(f'{prefix}[{index}]', item)
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            out[prefix] = float(value)

    walk('', metrics)
    return out


def _assert_same_per_image_results(eval_results, bag_results, exact=True):
    """`seqpose eval` writes results_<subset>_<scene>_<frame>.pkl, `bag eval` results_<scene>_<frame>.pkl: the
    same frames, bit-identical predictions (`exact`; else to 1e-5), and the same ground truth up to the quaternion
    round trip."""
    from seqpose_core.eval.results_io import load_result_file

    theirs = sorted(eval_results.glob('results_*.pkl'))
    ours = sorted(bag_results.glob('results_*.pkl'))
    assert len(ours) == len(theirs) == FRAMES * SCENES
    for path in ours:
        matches = [p for p in theirs if p.name.endswith('_' + path.name[len('results_') :])]
        assert len(matches) == 1, (path.name, [p.name for p in theirs])
        [a], [b] = load_result_file(path), load_result_file(matches[0])
        assert a.keys() == b.keys(), path.name
        for key in a:
            if key in ('gt_class_ids', 'gt_handle_visibility', 'pred_class_ids', 'pred_track_ids') or (
                exact and key.startswith('pred_')
            ):
                assert np.array_equal(a[key], b[key]), (path.name, key)
            elif key.startswith('pred_'):
                assert np.allclose(a[key], b[key], rtol=0, atol=1e-5), (path.name, key)
            else:
                assert np.allclose(a[key], b[key], rtol=0, atol=1e-6), (path.name, key)


@pytest.mark.parametrize('mode, camera_motion', [('mf', 'none'), ('sf', 'none'), ('mf', 'odometry')])
def test_bag_eval_gives_the_metrics_of_seqpose_eval(setup, mode, camera_motion):
    """bag eval == eval, with the camera motion from the bag's nav_msgs/Odometry too (the scenes' odometry.txt
    that from-nocs wrote)."""
    base, root, checkpoint, bag = setup
    eval_out, bag_out = base / f'seqpose_eval_{mode}_{camera_motion}', base / f'bag_eval_{mode}_{camera_motion}'
    # neither gives the model ground truth: seqpose eval's default (no camera motion) is what a bag replay has
    assert (
        seqpose_main(
            [
                'eval',
                '--checkpoint',
                str(checkpoint),
                '--data',
                str(root),
                '--split',
                'test',
                '--mode',
                mode,
                '--overlays',
                '0',
                '--out',
                str(eval_out),
                '--camera-motion',
                camera_motion,
            ]
        )
        == 0
    )
    command = ['bag', 'eval', str(bag), '--checkpoint', str(checkpoint), '--mode', mode, '--out', str(bag_out)]
    assert seqpose_main(command + ['--camera-motion', camera_motion]) == 0
    expected = _numbers(json.loads((eval_out / 'metrics.json').read_text()))
    got = _numbers(json.loads((bag_out / 'metrics.json').read_text()))
    assert expected and got.keys() == expected.keys()
    # GT rotations pass through a quaternion (float32 labels are orthonormal to ~1e-8 only): equal to 1e-6
    differences = {k: (got[k], expected[k]) for k in expected if abs(got[k] - expected[k]) > 1e-6}
    assert not differences, differences
    # the odometry's poses pass through a quaternion in the bag: the motions agree to ~1e-15, the float32 network's
    # outputs then to its own rounding
    _assert_same_per_image_results(eval_out / 'results', bag_out / 'results', exact=camera_motion == 'none')
    report = json.loads((bag_out / 'bag_report.json').read_text())
    assert report['frames_replayed'] == report['frames_scored'] == FRAMES * SCENES
    assert report['segments'] == SCENES and report['skipped'] == []
    assert (bag_out / 'ap_curves.png').stat().st_size > 0
    assert len(list((bag_out / 'results').glob('results_*.pkl'))) == FRAMES * SCENES
    import cv2

    video = cv2.VideoCapture(str(bag_out / 'overlay.mp4'))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES * SCENES


def test_output_bag_holds_inputs_and_predictions_and_scores_the_same(setup):
    base, root, checkpoint, bag = setup
    out = base / 'bag_eval_mf_none'
    if not (out / 'bag').exists():
        evaluate_bag(bag, out, checkpoint=checkpoint, mode='mf')
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    counts = {}
    with open(next((out / 'bag').glob('*.mcap')), 'rb') as stream:
        for _, channel, _, decoded in make_reader(stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == M.DETECTIONS_TOPIC:
                assert decoded.header.frame_id == M.CAMERA_FRAME_ID
    assert counts == {
        M.IMAGE_TOPIC: 10,
        M.CAMERA_INFO_TOPIC: 10,
        M.GT_TOPIC: 10,
        M.ODOMETRY_TOPIC: 10,  # the generated scenes' simulated odometry, and the same on /tf
        M.TF_TOPIC: 10,
        M.FRAME_NAME_TOPIC: 10,
        M.DETECTIONS_TOPIC: 10,
    }
    scored = score_bag(out / 'bag', out_dir=base / 'score')
    assert scored.frames_scored == FRAMES * SCENES and scored.frames_without_predictions == 0
    replayed = json.loads((out / 'metrics.json').read_text())
    rescored = json.loads((base / 'score' / 'metrics.json').read_text())
    a, b = _numbers(replayed), _numbers(rescored)
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-6 for k in a)


def test_damaged_bag_is_scored_on_what_is_usable(tmp_path, setup):
    _, _, checkpoint, _ = setup
    stamps = [1_000_000_000 + i * 33_333_333 for i in range(8)]
    stamps.append(stamps[2])  # a duplicate
    bag = synthetic_frame_bag(tmp_path / 'b', stamps_ns=stamps, gt_every=2)
    runner = build_runner(checkpoint, mode='mf')
    report = evaluate_bag(bag, tmp_path / 'out', runner=runner, video=False)
    assert report.frames_replayed == 8 and report.frames_scored == 4
    assert report.metrics is not None
    reasons = ' | '.join(e['reason'] for e in report.skipped)
    assert 'duplicate header stamp' in reasons and 'not scored' in reasons
    saved = json.loads((tmp_path / 'out' / 'bag_report.json').read_text())
    assert saved['skipped'] == report.skipped and 'skipped:' in report.format()


def test_bag_score_names_a_missing_predictions_topic_and_scores_an_output_bag(tmp_path, setup, capsys):
    _, _, checkpoint, _ = setup
    bag = synthetic_frame_bag(tmp_path / 'b', frames=6)
    assert seqpose_main(['bag', 'score', str(bag)]) == 2  # no predictions topic in this bag
    assert '/seqpose/detections is not in the bag' in capsys.readouterr().err
    out = tmp_path / 'eval'
    evaluate_bag(bag, out, runner=build_runner(checkpoint, mode='sf'), video=False)
    empty = score_bag(out / 'bag', missing='empty')
    assert empty.frames_scored == 6 and empty.frames_without_predictions == 0
