"""`seqpose bag score`: score predictions already in a bag (e.g. `ros2 bag record` of the live node) against
the ground truth, matched by header stamp. No images are decoded; no model runs.

A ground-truth frame without a predictions message (a frame the node dropped) counts as "nothing detected"
(`missing='empty'`, the default: it costs recall) or is left out (`missing='skip'`). Scoring is the
evaluator's (`seqpose_core.bag.scoring`), results in ground-truth stamp order."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from seqpose_core.bag import messages as M
from seqpose_core.bag import scoring
from seqpose_core.bag.io import BagError, BagReader, SkipLog


@dataclass
class ScoreReport:
    bag: str
    predictions_topic: str
    gt_topic: str
    gt_frames: int = 0
    prediction_messages: int = 0
    frames_scored: int = 0
    frames_without_predictions: int = 0
    metrics: dict = None  # the evaluator's metrics (percent, rows 'mean' + classes), as metrics.json
    object_counts: dict = None
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    # stamp_ns -> receive time of the predictions message (log time in the bag); used by live replay
    receive_times: dict = field(default_factory=dict, repr=False)

    def to_dict(self):
        out = dict(self.__dict__)
        out.pop('receive_times')
        out['metrics'] = scoring.json_metrics(self.metrics)
        return out

    def format(self):
        lines = [
            f'bag score {self.bag}: {self.predictions_topic} against {self.gt_topic}',
            f'  ground-truth frames {self.gt_frames}, prediction messages {self.prediction_messages}, '
            f'scored {self.frames_scored} ({self.frames_without_predictions} without predictions)',
        ]
        lines.append('  ' + (scoring.format_metrics_line(self.metrics) if self.metrics else 'nothing scored'))
        lines.extend(f'  note: {note}' for note in self.notes)
        if self.skipped:
            lines.append('  skipped:')
            lines.extend(f'    - {e["count"]} x {e["what"]}: {e["reason"]}' for e in self.skipped)
        if self.outputs:
            lines.append(f'  outputs: {", ".join(f"{k}={v}" for k, v in self.outputs.items())}')
        return '\n'.join(lines)


def _read_arrays(reader, topic, skipped, what, expect_type=M.DETECTION_ARRAY_TYPE):
    """header stamp -> (objects, problems, log_time_ns) for a Detection3DArray topic (first message wins)."""
    info = reader.topics().get(topic)
    if info is None:
        available = ', '.join(sorted(reader.topics())) or 'none'
        raise BagError(f'{reader.path}: {what} topic {topic} is not in the bag; topics: {available}')
    if info.msgtype != expect_type:
        raise BagError(f'{reader.path}: {what} topic {topic} has type {info.msgtype}, expected {expect_type}')
    out = {}
    for message in reader.messages([topic]):
        stamp = M.stamp_to_ns(message.msg.header.stamp)
        if stamp in out:
            skipped.add(
                f'{what} message',
                'a second message with the same header stamp (the first is used)',
                example=f'stamp {stamp}',
            )
            continue
        objects, problems = M.detection_array_to_objects(message.msg)
        out[stamp] = (objects, problems, message.log_time_ns)
    return out


def _frame_names(reader, topic):
    if topic not in reader.topics():
        return {}
    names = {}
    for message in reader.messages([topic]):
        scene, _, frame = message.msg.frame_id.rpartition('/')
        names[M.stamp_to_ns(message.msg.stamp)] = (scene or 'scene', frame)
    return names


def score_bag(
    bag,
    predictions_topic=M.DETECTIONS_TOPIC,
    gt_topic=M.GT_TOPIC,
    gt_bag=None,
    frame_name_topic=M.FRAME_NAME_TOPIC,
    missing='empty',
    out_dir=None,
    stamp_map=None,
) -> ScoreReport:
    """Score `predictions_topic` of `bag` against `gt_topic` (of `gt_bag`, default the same bag).

    `missing`: 'empty' scores ground-truth frames without a predictions message as "nothing detected",
    'skip' leaves them out. `stamp_map` (published stamp -> bag stamp) undoes the re-stamping of a player
    before matching. `out_dir`: results/ pickles, metrics.json, ap_curves.png and score_report.json there;
    None keeps everything in memory."""
    if missing not in ('empty', 'skip'):
        raise ValueError(f'missing must be empty or skip, got {missing!r}')
    skipped = SkipLog()
    report = ScoreReport(bag=str(bag), predictions_topic=predictions_topic, gt_topic=gt_topic)
    with BagReader(bag, skipped) as reader:
        predictions = _read_arrays(reader, predictions_topic, skipped, 'predictions')
        if gt_bag is None:
            ground_truth = _read_arrays(reader, gt_topic, skipped, 'ground-truth')
            names = _frame_names(reader, frame_name_topic)
    if gt_bag is not None:
        with BagReader(gt_bag, skipped) as gt_reader:
            ground_truth = _read_arrays(gt_reader, gt_topic, skipped, 'ground-truth')
            names = _frame_names(gt_reader, frame_name_topic)
    if stamp_map:
        predictions = {stamp_map.get(stamp, stamp): value for stamp, value in predictions.items()}
    report.gt_frames = len(ground_truth)
    report.prediction_messages = len(predictions)
    report.receive_times = {stamp: value[2] for stamp, value in predictions.items()}

    results_dir = Path(out_dir) / 'results' if out_dir else None
    results = scoring.ResultsCollector(results_dir)
    for stamp in sorted(ground_truth):
        gt_objects, gt_problems, _ = ground_truth[stamp]
        scene, frame = names.get(stamp, ('stamp', str(stamp)))
        if gt_problems:
            skipped.add(
                'frame scoring',
                'ground truth has unreadable objects: ' + '; '.join(gt_problems),
                example=f'stamp {stamp}',
            )
            continue
        if stamp in predictions:
            pred_objects, pred_problems, _ = predictions[stamp]
            if pred_problems:
                skipped.add(
                    'prediction object',
                    'unreadable, left out of the frame: ' + '; '.join(pred_problems),
                    count=len(pred_problems),
                    example=f'stamp {stamp}',
                )
        else:
            report.frames_without_predictions += 1
            if missing == 'skip':
                skipped.add(
                    'frame scoring',
                    f'no predictions message on {predictions_topic} with this header '
                    'stamp (dropped?); left out (--missing skip)',
                    example=f'stamp {stamp}',
                )
                continue
            pred_objects = []
        results.add(scene, frame, [o.detection for o in pred_objects], gt_objects)
        report.frames_scored += 1
    if report.frames_without_predictions and missing == 'empty':
        report.notes.append(
            f'{report.frames_without_predictions} ground-truth frames have no predictions '
            f'message (dropped?): scored as "nothing detected"'
        )
    unmatched = [s for s in predictions if s not in ground_truth]
    if unmatched:
        skipped.add(
            'predictions message',
            f'no ground truth on {gt_topic} with this header stamp: not scored',
            count=len(unmatched),
            example=f'stamp {min(unmatched)}',
        )
    if report.frames_scored:
        report.metrics, curves = results.score(out_dir)
        report.object_counts = scoring.object_counts(curves)
        if out_dir:
            report.outputs.update(
                results=str(results_dir),
                metrics=str(Path(out_dir) / 'metrics.json'),
                ap_curves=str(Path(out_dir) / 'ap_curves.png'),
            )
    report.skipped = skipped.entries()
    report.notes.extend(skipped.notes)
    if out_dir:
        path = Path(out_dir) / 'score_report.json'
        path.write_text(json.dumps(report.to_dict(), indent=2, default=str))
        report.outputs['report'] = str(path)
    return report
