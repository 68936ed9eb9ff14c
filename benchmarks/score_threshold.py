"""What a node user gets at each score threshold, from any `seqpose eval` output (its results/*.pkl).

    python benchmarks/score_threshold.py demo_out/mf [--thresholds 0.1 0.2 0.3] [--json out.json]

Per threshold: published detections per ground-truth object, precision (a detection is correct when an
unmatched object of its class has its centre within 10 cm; greedy by score) and recall. The node's default
`score_threshold` (config/seqpose.yaml) is chosen from this table. The eval output must have been written with a
runner threshold at or below the lowest one asked here (the default model's checkpoint keeps scores >= 0.05).
Below the table, the same figures for the class-mean-size reference of those frames
(seqpose_core.eval.class_mean_reference: one detection per object, class, rotation and ray exact, the class's
mean size): what an RGB-only model gets when it knows all but each instance's metric scale. Last, what the
detections kept at one threshold (--breakdown) are: correct, duplicates of a found object, the wrong class on an
object, of the right class but 10-25 cm off, or far from any object of their class.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from seqpose_core.eval.class_mean_reference import class_mean_reference_results
from seqpose_core.eval.results_io import load_eval_output

MATCH_DISTANCE = 0.10  # metres: a detection within this of an object of its class is a correct one


DETECTION_KINDS = ('correct', 'duplicate', 'wrong_class', 'off_10_25cm', 'far')
NEAR_MISS_DISTANCE = 0.25  # metres: a same-class detection closer than this but not correct is 'off_10_25cm'


def detection_kinds(result, threshold):
    """Per detection kept at `threshold`, by score (greedy): what it is, one of DETECTION_KINDS.

    correct: an unmatched object of its class within MATCH_DISTANCE; duplicate: only an object of its class that
    an earlier detection took lies that close; wrong_class: none of its class, but an object of another class
    within MATCH_DISTANCE; off_10_25cm: an object of its class within NEAR_MISS_DISTANCE; far: none of these.
    """
    scores = np.asarray(result['pred_scores'], dtype=np.float64)
    keep = np.flatnonzero(scores >= threshold)
    keep = keep[np.argsort(-scores[keep], kind='stable')]
    pred_classes = np.asarray(result['pred_class_ids'])
    pred_centres = np.asarray(result['pred_RTs'], dtype=np.float64).reshape(-1, 4, 4)[:, :3, 3]
    gt_classes = np.asarray(result['gt_class_ids'])
    gt_centres = np.asarray(result['gt_RTs'], dtype=np.float64).reshape(-1, 4, 4)[:, :3, 3]
    taken = np.zeros(len(gt_classes), dtype=bool)
    kinds = []
    for index in keep:
        distance = np.linalg.norm(gt_centres - pred_centres[index], axis=1)
        same_class = gt_classes == pred_classes[index]
        candidates = np.flatnonzero(same_class & ~taken & (distance < MATCH_DISTANCE))
        if len(candidates):
            taken[candidates[np.argmin(distance[candidates])]] = True
            kinds.append('correct')
        elif np.any(same_class & (distance < MATCH_DISTANCE)):
            kinds.append('duplicate')
        elif np.any(~same_class & (distance < MATCH_DISTANCE)):
            kinds.append('wrong_class')
        elif np.any(same_class & (distance < NEAR_MISS_DISTANCE)):
            kinds.append('off_10_25cm')
        else:
            kinds.append('far')
    return kinds


def matches(result, threshold):
    """(true positives, detections kept, objects) of one image at `threshold`."""
    kinds = detection_kinds(result, threshold)
    return kinds.count('correct'), len(kinds), len(result['gt_class_ids'])


def kind_shares(results, threshold):
    """{kind: share of the detections kept at `threshold`} over all images."""
    kinds = [kind for result in results for kind in detection_kinds(result, threshold)]
    return {kind: kinds.count(kind) / max(len(kinds), 1) for kind in DETECTION_KINDS}


def table(results, thresholds):
    rows = []
    for threshold in thresholds:
        tp, kept, objects = np.sum([matches(result, threshold) for result in results], axis=0)
        rows.append(
            {
                'threshold': float(threshold),
                'detections_per_object': kept / max(objects, 1),
                'precision': tp / kept if kept else float('nan'),
                'recall': tp / max(objects, 1),
                'detections_per_frame': kept / len(results),
                'objects_per_frame': objects / len(results),
            }
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('eval_dir', help='a `seqpose eval` output folder (or its results/)')
    parser.add_argument(
        '--thresholds', type=float, nargs='+', default=[0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6]
    )
    parser.add_argument(
        '--breakdown',
        type=float,
        default=0.3,
        help='threshold at which to say what the published detections are (the node default)',
    )
    parser.add_argument('--json', help='also write the table here')
    args = parser.parse_args(argv)
    eval_dir = Path(args.eval_dir)
    try:
        results = load_eval_output(eval_dir)
    except FileNotFoundError as error:
        parser.error(str(error))
    rows = table(results, args.thresholds)
    print(f'{len(results)} images from {eval_dir}; correct = same class, centre within {MATCH_DISTANCE * 100:.0f} cm')
    print(f'{"threshold":>10}{"det/object":>12}{"precision":>11}{"recall":>8}{"det/frame":>11}{"obj/frame":>11}')
    for row in rows:
        print(
            f'{row["threshold"]:>10.2f}{row["detections_per_object"]:>12.2f}{row["precision"]:>11.2f}'
            f'{row["recall"]:>8.2f}{row["detections_per_frame"]:>11.2f}{row["objects_per_frame"]:>11.2f}'
        )
    reference = table(class_mean_reference_results(results), [1.0])[0]
    print(
        f'class-mean reference: {reference["detections_per_object"]:.2f} per object, precision '
        f'{reference["precision"]:.2f}, recall {reference["recall"]:.2f}'
    )
    shares = kind_shares(results, args.breakdown)
    print(
        f'detections kept at {args.breakdown:g}: ' + ', '.join(f'{kind} {share:.2f}' for kind, share in shares.items())
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    'thresholds': rows,
                    'class_mean_reference': reference,
                    'breakdown': {'threshold': args.breakdown, **shares},
                },
                indent=1,
            )
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
