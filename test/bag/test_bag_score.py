"""`bag score` when the predictions topic lacks some frames (a live node that dropped them): the dropped frames
count as "nothing detected" (recall lost), or are left out with --missing skip. No model runs here: the bag's
predictions are the ground truth itself on the frames that have them, so the expected APs are known exactly."""

import json

import numpy as np
import pytest

from helpers.bags import synthetic_frame_bag
from seqpose_core.bag.score_recorded import score_bag
from seqpose_core.cli import main as seqpose_main
from seqpose_core.eval.evaluator import evaluate_results
from seqpose_core.eval.results_io import load_results_dir

FRAMES = 6
ANSWERED = (0, 1, 3, 4)  # frames 2 and 5 have no predictions message
IOU_KEYS = ('IoU25', 'IoU50', 'IoU75', 'IoU25_exact', 'IoU50_exact', 'IoU75_exact')


@pytest.fixture()
def bag(tmp_path):
    return synthetic_frame_bag(tmp_path / 'bag', frames=FRAMES, predictions=ANSWERED)


def test_dropped_frames_count_as_nothing_detected(tmp_path, bag):
    out = tmp_path / 'empty'
    report = score_bag(bag, missing='empty', out_dir=out)
    assert (report.gt_frames, report.prediction_messages) == (FRAMES, len(ANSWERED))
    assert report.frames_scored == FRAMES and report.frames_without_predictions == FRAMES - len(ANSWERED)
    assert any('2 ground-truth frames have no predictions message' in note for note in report.notes), report.notes
    # one perfect prediction on 4 of the 6 mug frames: precision 1 up to recall 4/6, then nothing
    mug = report.metrics['mug']
    for key in IOU_KEYS:
        assert mug[key] == pytest.approx(100 * len(ANSWERED) / FRAMES, abs=1e-4), key
    # the protocol's pose AP counts only the GT matched at IoU 0.1: dropped frames do not lower it
    assert mug['5deg2cm'] == pytest.approx(100.0)
    # the mean is over the six classes; the five without GT or predictions score 0
    assert report.metrics['mean']['IoU50'] == pytest.approx(mug['IoU50'] / 6)
    # every GT frame has its results pickle; the dropped ones hold no prediction; the evaluator agrees on them
    results = load_results_dir(out / 'results')
    assert len(results) == FRAMES
    assert sorted(len(r['pred_class_ids']) for r in results) == [0, 0, 1, 1, 1, 1]
    assert all(len(r['gt_class_ids']) == 1 and r['gt_handle_visibility'][0] == 0 for r in results)
    assert json.dumps(evaluate_results(results)) == json.dumps(report.metrics)
    saved = json.loads((out / 'metrics.json').read_text())
    assert saved['mug']['IoU50'] == pytest.approx(mug['IoU50'], abs=1e-5)
    assert (out / 'ap_curves.png').stat().st_size > 0
    assert json.loads((out / 'score_report.json').read_text())['frames_without_predictions'] == 2


def test_missing_skip_leaves_dropped_frames_out(bag):
    report = score_bag(bag, missing='skip')
    assert report.frames_scored == len(ANSWERED) and report.frames_without_predictions == FRAMES - len(ANSWERED)
    assert all(report.metrics['mug'][key] == pytest.approx(100.0) for key in IOU_KEYS)
    reasons = ' | '.join(entry['reason'] for entry in report.skipped)
    assert 'no predictions message' in reasons and '--missing skip' in reasons


def test_bag_score_cli_prints_the_metrics(tmp_path, bag, capsys):
    assert seqpose_main(['bag', 'score', str(bag), '--out', str(tmp_path / 'cli')]) == 0
    printed = capsys.readouterr().out
    assert 'scored 6 (2 without predictions)' in printed and 'IoU50' in printed
    assert np.isclose(
        json.loads((tmp_path / 'cli' / 'metrics.json').read_text())['mug']['IoU25'], 100 * 4 / 6, atol=1e-4
    )
