"""The bag tools' bridge to the evaluator: per-frame NOCS results pickles in, metrics out.

Nothing is scored here: frames become the standard `results_<scene>_<frame>.pkl` (object-deformnet format,
written by `seqpose_core.eval.write_results_pickle`) and `seqpose_core.eval.evaluate_results` /
`write_report` score them exactly as `seqpose eval` and `seqpose eval-results` do.
"""
import numpy as np


DEFAULT_RATE = 30.0


def annotation_from_objects(objects, source='bag'):
    """Ground truth read from a bag (list[BagObject]) -> the data reader's FrameAnnotation, the form the
    evaluator and the overlays take (scale s = box diagonal, normalised sizes = size / s)."""
    from seqpose_core.data.nocs import FrameAnnotation
    detections = [o.detection for o in objects]
    sizes = np.array([d.size for d in detections], dtype=np.float64).reshape(-1, 3)
    scales = np.linalg.norm(sizes, axis=1) if len(sizes) else np.zeros(0)
    return FrameAnnotation(
        class_ids=np.array([d.class_id for d in detections], dtype=np.int64),
        instance_ids=np.arange(1, len(detections) + 1, dtype=np.int64),
        model_names=[f'track_{d.track_id}' for d in detections],
        rotations=np.array([d.rotation for d in detections], dtype=np.float64).reshape(-1, 3, 3),
        translations=np.array([d.translation for d in detections], dtype=np.float64).reshape(-1, 3),
        scales=scales, normalised_sizes=sizes / np.maximum(scales, 1e-12)[:, None],
        handle_visibility=np.array([o.handle_visibility for o in objects], dtype=np.int64), source=source)


def nocs_frame(scene, frame, gt_objects, image_hw=None, K=None, color=None):
    """A data-reader NocsFrame for one bag frame (no depth / mask: the evaluator needs the ground truth, the
    image size and K only)."""
    from pathlib import Path
    from seqpose_core.data.nocs import NocsFrame
    if color is None and image_hw is not None:
        color = np.zeros(tuple(image_hw) + (3,), np.uint8)
    return NocsFrame(scene=scene, frame=frame, prefix=Path(scene) / frame, color=color, depth=None,
                     instance_mask=None, K=K, meta=[], annotation=annotation_from_objects(gt_objects))


class ResultsWriter:
    """Writes results_<scene>_<frame>.pkl files into one directory with the evaluator's writer."""

    def __init__(self, results_dir):
        from pathlib import Path
        self.dir = Path(results_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def write(self, scene, frame, detections, gt_objects, image_hw=None, K=None, color=None):
        from seqpose_core.eval import write_results_pickle
        write_results_pickle(self.dir / f'results_{scene}_{frame}.pkl',
                             nocs_frame(scene, frame, gt_objects, image_hw, K, color), detections)
        self.count += 1


def evaluate_and_report(results_dir, out_dir=None):
    """Score a results directory with the evaluator; write metrics.json + ap_curves.png into out_dir."""
    from seqpose_core.eval import evaluate_results, write_report
    metrics = evaluate_results(results_dir)
    if out_dir is not None:
        write_report(metrics, out_dir)
    return metrics


def format_metrics_line(metrics):
    keys = [k for k in ('3D50', '3D75', '5deg2cm', '5deg5cm', '10deg2cm', '10deg5cm') if k in metrics]
    if not keys:
        return 'metrics: ' + ', '.join(f'{k}={v}' for k, v in list(metrics.items())[:6])
    return 'mAP: ' + ', '.join(f'{k} {100 * float(metrics[k]):.1f}' for k in keys)


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


HEADLINE_KEYS = ('3D50', '3D75', '5deg2cm', '5deg5cm', '10deg2cm', '10deg5cm')


def headline_keys(metrics):
    return [k for k in HEADLINE_KEYS if k in (metrics or {})]
