"""How fast the published centre of an object that was moved comes back to it, on real model output.

    seqpose synth --out data/moving --scenes 4 --frames 300 --seed 20261209 --split test --moving-objects 1
    seqpose eval --data data/moving --mode mf --camera-motion odometry --out runs/moving
    python benchmarks/moving_object_recovery.py runs/moving --data data/moving

Per video, the moved object is the one whose distances to the others change (`seqpose synth --moving-objects`:
one object slid 15-30 cm over 0.5 s); the move ends at the first frame after which they stay put. From there the
script prints, per video, how long until the nearest prediction of the object's class (score >= --threshold) is
within 10 cm and 5 cm of it again and stays so for 10 frames, and the same for the frames before the move
(how well it was held before). A stale fused place would never come back within 10 cm.
"""

import argparse
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from seqpose_core.data import NocsFrameReader, iter_scenes
from seqpose_core.eval.results_io import find_result_files, load_result_file

FPS = 30.0
NAME = re.compile(r'results_.+?_(scene_\d+)_(\d+)\.pkl$')


def moved_object(frames):
    """(instance id, the frame its move ended) of a video's annotations, or None when nothing moved."""
    per_frame = []
    for frame in frames:
        a = frame.annotation
        per_frame.append({int(i): t for i, t in zip(a.instance_ids, a.translations)})
    ids = sorted({i for f in per_frame for i in f})
    drift = {}
    for candidate in ids:
        others = [o for o in ids if o != candidate]
        series = []
        for f in per_frame:
            if candidate in f and any(o in f for o in others):
                series.append(np.mean([np.linalg.norm(f[candidate] - f[o]) for o in others if o in f]))
            else:
                series.append(np.nan)
        drift[candidate] = np.array(series)
    ranges = {k: np.nanmax(v) - np.nanmin(v) for k, v in drift.items() if np.isfinite(v).sum() > 1}
    if not ranges or max(ranges.values()) < 0.05:
        return None
    moved = max(ranges, key=ranges.get)
    series = drift[moved]
    final = series[np.isfinite(series)][-1]
    settled = np.flatnonzero(~(np.abs(series - final) < 0.005) & np.isfinite(series))
    return moved, int(settled[-1]) + 1 if settled.size else 0


def recovery(errors, start, limit, hold=10):
    """Frames from `start` until the error is below `limit` for `hold` frames in a row (None: never)."""
    run = 0
    for index in range(start, len(errors)):
        run = run + 1 if errors[index] < limit else 0
        if run >= hold:
            return index - hold + 1 - start
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('eval_dir')
    parser.add_argument('--data', required=True)
    parser.add_argument('--split', default='test')
    parser.add_argument('--threshold', type=float, default=0.2, help="the node's score threshold (default 0.2)")
    args = parser.parse_args(argv)
    results = defaultdict(dict)
    for path in find_result_files(Path(args.eval_dir) / 'results'):
        match = NAME.search(Path(path).name)
        results[match.group(1)][int(match.group(2))] = load_result_file(path)[0]
    reader = NocsFrameReader(args.data, args.split)
    for scene, prefixes in iter_scenes(args.data, args.split):
        frames = [reader.read(prefix) for prefix in prefixes]
        found = moved_object(frames)
        if found is None or scene not in results:
            print(f'{scene}: no object moved')
            continue
        instance, settled = found
        errors = []
        for index, frame in enumerate(frames):
            a = frame.annotation
            rows = np.flatnonzero(a.instance_ids == instance)
            result = results[scene].get(index)
            if not rows.size or result is None:
                errors.append(np.inf)
                continue
            same = (result['pred_class_ids'] == a.class_ids[rows[0]]) & (result['pred_scores'] >= args.threshold)
            centres = result['pred_RTs'][same][:, :3, 3]
            errors.append(np.min(np.linalg.norm(centres - a.translations[rows[0]], axis=1)) if len(centres) else np.inf)
        errors = np.array(errors)
        before = errors[max(settled - 45, 0) : settled - 15]
        after = [recovery(errors, settled, limit) for limit in (0.10, 0.05)]
        text = ', '.join(
            f'within {int(limit * 100)} cm after {frames_ / FPS:.2f} s'
            if frames_ is not None
            else f'never within {int(limit * 100)} cm'
            for limit, frames_ in zip((0.10, 0.05), after)
        )
        print(
            f'{scene}: instance {instance} moved, settled at frame {settled}; before the move '
            f'{100 * np.mean(before < 0.10):.0f} % of frames within 10 cm; after it {text}'
        )


if __name__ == '__main__':
    main()
