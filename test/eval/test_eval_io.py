"""Result pickles: safe loading with errors that name the file and key, the writer, and the CLI."""

import json
import os
import pickle

import numpy as np
import pytest

from seqpose_core.cli import main as seqpose_main
from seqpose_core.detection import Detection
from seqpose_core.eval import ResultFormatError, evaluate_results, load_results_dir, make_result, write_results_pickle
from seqpose_core.eval.protocol import METRIC_NAMES, REPORT_ROWS
from seqpose_core.eval.synthetic import synthetic_results


def _dump(path, value):
    with open(path, 'wb') as stream:
        pickle.dump(value, stream)


def test_missing_key_names_file_and_key(tmp_path):
    result = synthetic_results(1)[0]
    del result['pred_scores']
    _dump(tmp_path / 'results_a.pkl', result)
    with pytest.raises(ResultFormatError, match=r'results_a\.pkl.*pred_scores'):
        load_results_dir(str(tmp_path))


def test_malformed_shape_names_file_and_key(tmp_path):
    result = synthetic_results(1)[0]
    result['gt_RTs'] = result['gt_RTs'][:, :3]
    _dump(tmp_path / 'results_b.pkl', result)
    with pytest.raises(ResultFormatError, match=r"results_b\.pkl.*'gt_RTs'.*shape"):
        load_results_dir(str(tmp_path))


def test_bad_last_row_is_refused(tmp_path):
    result = synthetic_results(1)[0]
    result['pred_RTs'][0, 3, 0] = 1.0
    _dump(tmp_path / 'results_c.pkl', result)
    with pytest.raises(ResultFormatError, match=r"results_c\.pkl.*'pred_RTs' entry 0"):
        load_results_dir(str(tmp_path))


def test_code_in_pickle_is_refused(tmp_path):
    _dump(tmp_path / 'results_d.pkl', {'gt_class_ids': os.getcwd, 'x': 1})
    with pytest.raises(ValueError, match=r'results_d\.pkl.*refusing'):
        load_results_dir(str(tmp_path))


def test_missing_handle_visibility_means_visible_and_lists_are_flattened(tmp_path):
    first, second = synthetic_results(2, seed=3)
    del first['gt_handle_visibility']
    _dump(tmp_path / 'results_1.pkl', first)
    _dump(tmp_path / 'results_2.pkl', [second, second])
    loaded = load_results_dir(str(tmp_path))
    assert len(loaded) == 3
    np.testing.assert_array_equal(loaded[0]['gt_handle_visibility'], np.ones(len(first['gt_class_ids'])))


def test_writer_round_trip_from_detections(tmp_path):
    rotation = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    size = np.array([0.1, 0.2, 0.05])
    detection = Detection(class_id=3, score=0.7, rotation=rotation, translation=np.array([0.1, 0, 0.9]), size=size)
    rt, scales = detection.nocs_rt_and_scales()
    path = tmp_path / 'results_x.pkl'
    write_results_pickle(str(path), [detection], [3], rt[None], scales[None], [1])
    loaded = load_results_dir(str(tmp_path))[0]
    np.testing.assert_allclose(loaded['pred_RTs'][0], rt)
    np.testing.assert_allclose(loaded['pred_scales'][0] * np.linalg.norm(size), size)
    assert loaded['pred_scores'][0] == pytest.approx(0.7)
    # a detection equal to its GT scores 100 in its class
    assert evaluate_results([make_result([detection], [3], rt[None], scales[None])])['camera']['IoU75'] == 100.0


def test_cli_writes_metrics_json_and_plot(tmp_path, capsys):
    results_dir, out_dir = tmp_path / 'res', tmp_path / 'out'
    results_dir.mkdir()
    for index, result in enumerate(synthetic_results(12, seed=5)):
        _dump(results_dir / f'results_{index:03d}.pkl', result)
    assert seqpose_main(['eval-results', str(results_dir), '--out', str(out_dir), '--quiet']) == 0
    metrics = json.loads((out_dir / 'metrics.json').read_text())
    assert list(metrics) == list(REPORT_ROWS)
    for row in REPORT_ROWS:
        assert list(metrics[row]) == list(METRIC_NAMES)
    expected = evaluate_results(load_results_dir(str(results_dir)))
    for row in REPORT_ROWS:
        assert metrics[row] == pytest.approx(expected[row], abs=1e-5)
    assert (out_dir / 'ap_curves.png').stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert 'IoU50_exact' in printed and 'mean' in printed


def test_cli_reports_bad_directory(tmp_path, capsys):
    assert seqpose_main(['eval-results', str(tmp_path / 'nothing'), '--out', str(tmp_path / 'o'), '--quiet']) == 2
    assert 'not a directory' in capsys.readouterr().err
