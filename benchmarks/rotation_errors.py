"""Where the rotation goes wrong, per class, from any `seqpose eval` output (its results/*.pkl).

    python benchmarks/rotation_errors.py demo_out/mf [--threshold 0.05] [--json out.json]

Per ground-truth object, the nearest detection of its class (score >= threshold, centre within 10 cm) is taken
and its rotation error split into the tilt of the object's up axis (y: the angle between the predicted and the
true y columns, all the NOCS protocol checks for a symmetric object) and the azimuth about that axis (the twist
about y of R_gt^T R_pred, in (-180, 180]; asymmetric objects only: a mug with its handle hidden, bottles, bowls
and cans have none). The 10deg metrics fail an asymmetric object when either is off; this table says which.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from seqpose_core.eval.pose_errors import unscaled_rotations
from seqpose_core.eval.protocol import CLASS_NAMES, is_symmetric
from seqpose_core.eval.results_io import load_eval_output

MATCH_DISTANCE = 0.10  # metres, as benchmarks/score_threshold.py
AZIMUTH_BINS = (0, 10, 45, 135, 180.001)  # degrees: right, off, sideways, flipped front to back


def tilt_and_azimuth(rotations_pred, rotations_gt):
    """(n, 3, 3) rotations -> (n,) tilt of the y axis and (n,) signed azimuth about y, degrees.

    Swing-twist decomposition of the relative rotation in the object's frame: the twist about y is
    2 atan2(q_y, q_w) of its quaternion q; the swing (the rest) tilts the y axis.
    """
    relative = np.swapaxes(rotations_gt, 1, 2) @ rotations_pred  # (n, 3, 3), object frame
    y_pred, y_gt = rotations_pred[:, :, 1], rotations_gt[:, :, 1]
    cos_tilt = np.sum(y_pred * y_gt, axis=1) / (np.linalg.norm(y_pred, axis=1) * np.linalg.norm(y_gt, axis=1))
    tilt = np.degrees(np.arccos(np.clip(cos_tilt, -1.0, 1.0)))
    # with q the quaternion of `relative`: R[0, 2] - R[2, 0] = 4 q_w q_y and R[0, 0] + R[2, 2] = 2 (q_w^2 - q_y^2),
    # so this atan2 is 2 atan2(q_y, q_w), already wrapped to (-180, 180] (a front-to-back flip reads 180)
    azimuth = np.degrees(np.arctan2(relative[:, 0, 2] - relative[:, 2, 0], relative[:, 0, 0] + relative[:, 2, 2]))
    return tilt, azimuth


def nearest_matches(result, threshold):
    """Per GT object of one image: index of the nearest same-class detection within MATCH_DISTANCE, or -1."""
    scores = np.asarray(result['pred_scores'], dtype=np.float64)
    pred_classes = np.asarray(result['pred_class_ids'])
    pred_centres = np.asarray(result['pred_RTs'], dtype=np.float64).reshape(-1, 4, 4)[:, :3, 3]
    gt_centres = np.asarray(result['gt_RTs'], dtype=np.float64).reshape(-1, 4, 4)[:, :3, 3]
    chosen = np.full(len(gt_centres), -1)
    for index, (gt_class, centre) in enumerate(zip(np.asarray(result['gt_class_ids']), gt_centres)):
        candidates = np.flatnonzero((pred_classes == gt_class) & (scores >= threshold))
        if len(candidates):
            distance = np.linalg.norm(pred_centres[candidates] - centre, axis=1)
            if distance.min() < MATCH_DISTANCE:
                chosen[index] = candidates[np.argmin(distance)]
    return chosen


def rotation_table(results, threshold):
    """One row per class that has objects, then 'all'."""
    per_class = {name: {'found': 0, 'objects': 0, 'tilt': [], 'error': [], 'azimuth': []} for name in CLASS_NAMES}
    for result in results:
        gt_classes = np.asarray(result['gt_class_ids'])
        if not len(gt_classes):
            continue
        handles = result.get('gt_handle_visibility')
        symmetric = is_symmetric(gt_classes, np.ones(len(gt_classes)) if handles is None else handles)
        chosen = nearest_matches(result, threshold)
        for gt_class in gt_classes:
            per_class[CLASS_NAMES[gt_class - 1]]['objects'] += 1
        found = np.flatnonzero(chosen >= 0)
        if not len(found):
            continue
        pred_rts = np.asarray(result['pred_RTs'], dtype=np.float64).reshape(-1, 4, 4)[chosen[found]]
        gt_rts = np.asarray(result['gt_RTs'], dtype=np.float64).reshape(-1, 4, 4)[found]
        tilt, azimuth = tilt_and_azimuth(unscaled_rotations(pred_rts), unscaled_rotations(gt_rts))
        for slot, index in enumerate(found):
            row = per_class[CLASS_NAMES[gt_classes[index] - 1]]
            row['found'] += 1
            row['tilt'].append(tilt[slot])
            if symmetric[index]:
                row['error'].append(tilt[slot])
            else:
                row['azimuth'].append(abs(azimuth[slot]))
                # the protocol's angle of R_pred R_gt^T, which the swing and twist together make up
                relative = (
                    unscaled_rotations(pred_rts[slot : slot + 1])[0] @ unscaled_rotations(gt_rts[slot : slot + 1])[0].T
                )
                row['error'].append(np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1.0, 1.0))))
    rows = []
    everything = {'found': 0, 'objects': 0, 'tilt': [], 'error': [], 'azimuth': []}
    for name, row in list(per_class.items()) + [('all', everything)]:
        if name != 'all':
            for key in everything:
                everything[key] += row[key]
        if not row['objects']:
            continue
        error, azimuth = np.asarray(row['error']), np.asarray(row['azimuth'])
        median = lambda values: float(np.median(values)) if len(values) else float('nan')
        rows.append(
            {
                'class': name,
                'objects': row['objects'],
                'found': row['found'],
                'within_10deg': float(np.mean(error < 10)) if len(error) else float('nan'),
                'median_error': median(error),
                'median_tilt': median(row['tilt']),
                'asymmetric': len(azimuth),
                'median_azimuth': median(azimuth),
                'azimuth_bins': np.histogram(azimuth, bins=AZIMUTH_BINS)[0].tolist(),
            }
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('eval_dir', help='a `seqpose eval` output folder (or its results/)')
    parser.add_argument('--threshold', type=float, default=0.05, help='lowest score of the detections considered')
    parser.add_argument('--json', help='also write the table here')
    args = parser.parse_args(argv)
    eval_dir = Path(args.eval_dir)
    try:
        results = load_eval_output(eval_dir)
    except FileNotFoundError as error:
        parser.error(str(error))
    rows = rotation_table(results, args.threshold)
    print(
        f'{len(results)} images from {eval_dir}; per object the nearest detection of its class (score >= '
        f'{args.threshold:g}, centre within {MATCH_DISTANCE * 100:.0f} cm); degrees'
    )
    bins = '/'.join(f'{low:g}-{high:.0f}' for low, high in zip(AZIMUTH_BINS[:-1], AZIMUTH_BINS[1:]))
    print(
        f'{"class":>8}{"objects":>9}{"found":>7}{"<10deg":>8}{"error":>8}{"tilt":>7}{"asym.":>7}'
        f'{"azimuth":>9}  azimuth {bins}'
    )
    for row in rows:
        print(
            f'{row["class"]:>8}{row["objects"]:>9}{row["found"]:>7}{row["within_10deg"]:>8.2f}'
            f'{row["median_error"]:>8.1f}{row["median_tilt"]:>7.1f}{row["asymmetric"]:>7}'
            f'{row["median_azimuth"]:>9.1f}  {" / ".join(str(count) for count in row["azimuth_bins"])}'
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
