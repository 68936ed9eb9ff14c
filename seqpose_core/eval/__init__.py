"""The standard NOCS / object-deformnet evaluation (legacy 3D IoU, n deg m cm) plus the true box 3D IoU.

results = load_results_dir('results/')            # or make_result(detections, gt...) per image
curves = score_results(results)                    # AP against every threshold
metrics = metrics_from_curves(curves)              # == evaluate_results(results)
write_report(metrics, curves, 'out/')              # metrics.json + ap_curves.png
"""

from .evaluator import APCurves, evaluate_results, metrics_from_curves, score_results
from .report import format_table, metrics_json, write_report
from .results_io import (
    ResultFormatError,
    load_result_file,
    load_results_dir,
    make_result,
    validate_result,
    write_results_pickle,
)

__all__ = [
    'APCurves',
    'evaluate_results',
    'metrics_from_curves',
    'score_results',
    'format_table',
    'metrics_json',
    'write_report',
    'ResultFormatError',
    'load_result_file',
    'load_results_dir',
    'make_result',
    'validate_result',
    'write_results_pickle',
]
