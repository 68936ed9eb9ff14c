"""The bag tools' bridge to the evaluator (`seqpose_core.eval`): per-frame results in, metrics out.

Nothing is scored here. Each scored frame becomes one result dict of the common NOCS / object-deformnet format
(`results_io.write_results_pickle`, the writer `seqpose eval` uses; ground truth from the bag's
Detection3DArray goes through `results_io.detections_to_eval_format`, the conversion the predictions get),
kept in replay order; `evaluator.score_results` + `metrics_from_curves` score the list exactly as `seqpose eval`
scores its own, and `report.write_report` writes metrics.json + ap_curves.png.

Metrics are the evaluator's dict: percent, one row per class plus 'mean' (`protocol.REPORT_ROWS`), keys
`protocol.METRIC_NAMES` (IoU25, IoU50, IoU75, 5deg2cm, ... 10cm, IoU25_exact ...). A class with predictions
but no ground truth scores NaN, as in the reference, and so does the mean then (null in metrics.json).
"""

import json
import math
import re
from pathlib import Path

import numpy as np

DEFAULT_RATE = 30.0
# the metrics printed on one line and compared by the live replay (all of METRIC_NAMES are in metrics.json)
HEADLINE_KEYS = ('IoU25', 'IoU50', 'IoU75', '5deg2cm', '5deg5cm', '10deg2cm', '10deg5cm')


def gt_detections(objects):
    """Ground truth read from a bag (list[BagObject]) -> (list[Detection], handle visibility list)."""
    return [o.detection for o in objects], [int(o.handle_visibility) for o in objects]


def _safe_name(text):
    return re.sub(r'[^A-Za-z0-9._-]+', '_', str(text)).strip('_') or 'frame'


class ResultsCollector:
    """The per-image results of one run, in the order frames were replayed (the order the evaluator gets, as
    in `seqpose eval`), optionally also written as `results_<scene>_<frame>.pkl` into `results_dir`."""

    def __init__(self, results_dir=None):
        self.dir = Path(results_dir) if results_dir is not None else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.results = []
        self.names = set()

    @property
    def count(self):
        return len(self.results)

    def add(self, scene, frame, detections, gt_objects):
        """One frame: predictions (list[Detection], [] = nothing detected) against its bag ground truth."""
        from seqpose_core.eval.results_io import detections_to_eval_format, make_result, write_results_pickle

        gt, visibility = gt_detections(gt_objects)
        gt_arrays = detections_to_eval_format(gt)
        if self.dir is None:
            result = make_result(detections, *gt_arrays, gt_handle_visibility=visibility)
        else:
            name = f'results_{_safe_name(scene)}_{_safe_name(frame)}'
            if name in self.names:  # the same "<scene>/<frame>" twice: keep both files
                name = f'{name}_{self.count:06d}'
            self.names.add(name)
            result = write_results_pickle(
                self.dir / f'{name}.pkl', detections, *gt_arrays, gt_handle_visibility=visibility
            )
        self.results.append(result)
        return result

    def score(self, out_dir=None):
        """(metrics, curves) of the collected results; with `out_dir`, metrics.json + ap_curves.png there."""
        from seqpose_core.eval.evaluator import metrics_from_curves, score_results
        from seqpose_core.eval.report import write_report

        if not self.results:
            raise ValueError('no frame with ground truth to score')
        curves = score_results(self.results, validate=False)  # make_result validated each one
        metrics = metrics_from_curves(curves)
        if out_dir is not None:
            write_report(metrics, curves, out_dir)
        return metrics, curves


def json_metrics(metrics):
    """The metrics dict as metrics.json holds it (NaN -> None, rounded), for the JSON reports."""
    from seqpose_core.eval.report import metrics_json

    return json.loads(metrics_json(metrics)) if metrics else metrics


def object_counts(curves):
    """{class: {'gt': n, 'pred': m}} from the evaluator's curves."""
    from seqpose_core.eval.protocol import CLASS_NAMES

    return {name: {'gt': int(g), 'pred': int(p)} for name, g, p in zip(CLASS_NAMES, curves.num_gt, curves.num_pred)}


def _finite(value):
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def format_metrics_line(metrics, row='mean'):
    """'mAP (mean, %): IoU25 12.3, IoU50 ...' for one row of the metrics dict."""
    values = (metrics or {}).get(row)
    if not values:
        return 'nothing scored'
    cells = [f'{k} {values[k]:.1f}' if _finite(values[k]) else f'{k} n/a' for k in HEADLINE_KEYS if k in values]
    line = f'mAP ({row}, %): ' + ', '.join(cells)
    if row == 'mean' and any(not _finite(values[k]) for k in HEADLINE_KEYS if k in values):
        line += ' (n/a: a class has predictions but no ground truth, see metrics.json per class)'
    return line


def metric_differences(reference, other):
    """reference - other in percentage points, for every row and headline metric finite in both:
    {'mean/IoU50': d, 'mug/IoU50': d, ...}."""
    differences = {}
    if not reference or not other:
        return differences
    for row, values in reference.items():
        for key in HEADLINE_KEYS:
            a, b = values.get(key), (other.get(row) or {}).get(key)
            if _finite(a) and _finite(b):
                differences[f'{row}/{key}'] = float(a) - float(b)
    return differences


def estimate_rate(frames):
    """Frames per second of a bag, from its CameraInfo / ground-truth stamps (default 30)."""
    stamps = sorted({s for s, *_ in frames.camera_infos} | set(frames.ground_truth))
    if len(stamps) < 2:
        return DEFAULT_RATE
    deltas = np.diff(np.asarray(stamps, dtype=np.int64))
    deltas = deltas[deltas > 0]
    if not len(deltas):
        return DEFAULT_RATE
    return float(np.clip(1e9 / np.median(deltas), 1.0, 240.0))
