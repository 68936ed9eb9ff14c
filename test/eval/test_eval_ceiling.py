"""The class-mean-size reference (seqpose_core.eval.class_mean_reference, benchmarks/class_mean_reference.py)."""

import json

import numpy as np

from seqpose_core.eval.class_mean_reference import class_mean_diagonals, class_mean_reference_results
from seqpose_core.eval.evaluator import evaluate_results
from seqpose_core.geometry import project_points


def result(diagonals, translations):
    n = len(diagonals)
    rts = np.repeat(np.eye(4)[None], n, axis=0)
    rts[:, :3, :3] *= np.asarray(diagonals)[:, None, None]
    rts[:, :3, 3] = translations
    scales = np.tile([0.5, 0.7, 0.5], (n, 1))
    return {
        'gt_class_ids': np.full(n, 4),
        'gt_RTs': rts,
        'gt_scales': scales,
        'gt_handle_visibility': np.ones(n, dtype=np.int64),
        'pred_class_ids': np.zeros(0, dtype=np.int64),
        'pred_RTs': np.zeros((0, 4, 4)),
        'pred_scales': np.zeros((0, 3)),
        'pred_scores': np.zeros(0),
    }


def test_ceiling_keeps_the_image_and_lacks_only_the_scale():
    same = [result([0.2, 0.2], [[0.1, 0.0, 0.8], [-0.2, 0.1, 1.0]])]
    assert evaluate_results(class_mean_reference_results(same))['can']['IoU75'] == 100.0
    varied = [result([0.15, 0.25], [[0.1, 0.0, 0.8], [-0.2, 0.1, 1.0]])]
    assert class_mean_diagonals(varied) == {4: 0.2}
    ceiling = class_mean_reference_results(varied)[0]
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    # every centre is moved along its own ray: it projects where the true one does
    np.testing.assert_allclose(
        project_points(ceiling['pred_RTs'][:, :3, 3], K), project_points(varied[0]['gt_RTs'][:, :3, 3], K)
    )
    np.testing.assert_allclose(ceiling['pred_RTs'][:, 2, 3], [0.8 * 0.2 / 0.15, 1.0 * 0.2 / 0.25])
    metrics = evaluate_results([ceiling])['can']
    assert metrics['10deg'] == 100.0 and metrics['IoU75'] < 100.0


def test_the_reference_of_a_tracked_output_scores():
    """SeqPose's own outputs carry pred_track_ids (one per prediction); the reference has its own predictions
    (what `seqpose demo` scores beside the model)."""
    tracked = result([0.2, 0.2], [[0.1, 0.0, 0.8], [-0.2, 0.1, 1.0]])
    tracked.update(
        pred_class_ids=np.array([4, 4, 4]),
        pred_RTs=np.repeat(np.eye(4)[None], 3, axis=0),
        pred_scales=np.full((3, 3), 0.5),
        pred_scores=np.ones(3),
        pred_track_ids=np.array([1, 2, 3]),
    )
    reference = class_mean_reference_results([tracked])
    assert list(reference[0]['pred_track_ids']) == [-1, -1]
    assert evaluate_results(reference)['can']['IoU75'] == 100.0


def test_benchmark_prints_the_ceiling_beside_the_model(tmp_path, capsys):
    import pickle
    import runpy

    results = tmp_path / 'results'
    results.mkdir()
    with open(results / 'results_test_scene_1_0000.pkl', 'wb') as stream:
        pickle.dump(result([0.15, 0.25], [[0.1, 0.0, 0.8], [-0.2, 0.1, 1.0]]), stream)
    means = {
        key: 1.0
        for key in ('IoU25', 'IoU50', 'IoU75', '10deg10cm', '10deg5cm', '5deg5cm', '10deg', '10cm', 'IoU50_exact')
    }
    (tmp_path / 'metrics.json').write_text(json.dumps({'mean': means}))
    module = runpy.run_path('benchmarks/class_mean_reference.py')
    assert module['main']([str(tmp_path), '--json', str(tmp_path / 'c.json')]) == 0
    printed = capsys.readouterr().out
    assert 'class-mean reference' in printed and 'model' in printed
    assert json.loads((tmp_path / 'c.json').read_text())['class_mean_reference']['10deg'] > 0
