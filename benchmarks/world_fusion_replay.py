"""The world fusion stage replayed on a `seqpose eval` output, for many settings at the cost of one model run.

    python benchmarks/world_fusion_replay.py runs/sel/mf_odo_off --data data/long_selection \
        --grid world_fusion.bearing_sigma=0.005,0.01,0.02 --grid world_fusion.depth_sigma=0.1,0.2 [--json out.json]

Reads the per-frame detections of an output made in video mode with `--camera-motion odometry --set
inference.world_fusion.enabled=false` (results/*.pkl carry the tracker's ids and the ground truth), feeds them,
frame by frame with the scene's odometry, through `seqpose_core.stages.world_fusion` under each combination
of the --grid settings, and prints the mean APs of each beside the input's own and the class-mean-size
reference of the same frames. The model is not run again: only the stage after the tracker changes, so a
number here equals what `seqpose eval` gives with those settings. Choose on a selection set; report held out.
"""

import argparse
import itertools
import json
import pickle
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from seqpose_core.config_schema import parse_dotted_settings
from seqpose_core.data import NocsFrameReader, iter_scenes
from seqpose_core.detection import Detection
from seqpose_core.eval.class_mean_reference import class_mean_reference_results
from seqpose_core.eval.evaluator import evaluate_results
from seqpose_core.eval.results_io import find_result_files, load_result_file, make_result
from seqpose_core.eval.run import scene_odometry
from seqpose_core.geometry import camera_motion_between
from seqpose_core.stages.config import InferenceConfig, with_settings
from seqpose_core.stages.pipeline import FrameContext
from seqpose_core.stages.world_fusion import WorldFusionStage

KEYS = ('IoU25', 'IoU50', '10deg10cm', '10deg5cm', '10deg', '10cm', '5cm')
NAME = re.compile(r'results_.+?_(scene_\d+)_(\d+)\.pkl$')


def detections_of(result):
    """The result's predictions as Detections (its RT carries the box diagonal as scale)."""
    detections = []
    for index, class_id in enumerate(result['pred_class_ids']):
        rt = np.asarray(result['pred_RTs'][index], dtype=np.float64)
        scale = float(np.linalg.norm(rt[:3, 0]))
        detections.append(
            Detection(
                int(class_id),
                float(result['pred_scores'][index]),
                rt[:3, :3] / scale,
                rt[:3, 3].copy(),
                np.asarray(result['pred_scales'][index], dtype=np.float64) * scale,
                track_id=int(result['pred_track_ids'][index]),
            )
        )
    return detections


def load_scenes(eval_dir):
    """{scene: [(frame, result)] in frame order} of an eval output."""
    scenes = defaultdict(list)
    for path in find_result_files(Path(eval_dir) / 'results'):
        match = NAME.search(Path(path).name)
        (result,) = load_result_file(path)
        if 'pred_track_ids' not in result:
            raise SystemExit(f'{path}: no pred_track_ids (made before the runner wrote track ids)')
        scenes[match.group(1)].append((match.group(2), result))
    return {scene: sorted(frames, key=lambda item: int(item[0])) for scene, frames in scenes.items()}


def within(results, distance):
    """Share of ground-truth objects whose nearest same-class prediction is within `distance` metres (recall of
    centres, whatever the score)."""
    hits = total = 0
    for result in results:
        for gt_class, gt_rt in zip(result['gt_class_ids'], result['gt_RTs']):
            total += 1
            same = result['pred_RTs'][result['pred_class_ids'] == gt_class]
            if len(same) and np.min(np.linalg.norm(same[:, :3, 3] - gt_rt[:3, 3], axis=1)) < distance:
                hits += 1
    return 100.0 * hits / max(total, 1)


def replay(scenes, odometry, cameras, settings, threshold=0.05):
    """The stage over every scene's frames; cameras: {scene: (K, a blank image of the scene's size, the frames'
    path prefixes (their images are read when the settings take the camera motion from the image))};
    odometry: {scene: readings} or None (video without odometry)."""
    stage = WorldFusionStage(None, settings)
    out = []
    for scene, frames in scenes.items():
        state = stage.initial_state()
        readings = odometry[scene] if odometry is not None else None
        K, blank, prefixes = cameras[scene]
        for position, (frame, result) in enumerate(frames):
            motion = None
            if readings is not None and position:
                motion = camera_motion_between(readings[position - 1], readings[position])
            image = blank
            if readings is None and settings.world_fusion.image_motion:
                image = cv2.cvtColor(cv2.imread(f'{prefixes[int(frame)]}_color.png'), cv2.COLOR_BGR2RGB)
            context = FrameContext(image, K, motion, 'video', 'cpu')
            detections = detections_of(result)
            detections, state = stage.apply(detections, context, state)
            # the runner's threshold after a stage that changes scores (the eval's: the checkpoint's, 0.05)
            detections = sorted((d for d in detections if d.score >= threshold), key=lambda d: d.score, reverse=True)
            out.append(
                make_result(
                    detections,
                    result['gt_class_ids'],
                    result['gt_RTs'],
                    result['gt_scales'],
                    result['gt_handle_visibility'],
                )
            )
    return out


def summary(results):
    metrics = evaluate_results(results)['mean']
    metrics['5cm'] = within(results, 0.05)
    metrics['10cm_recall'] = within(results, 0.10)
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('eval_dir')
    parser.add_argument('--data', required=True, help='the dataset root the output was made from (odometry.txt)')
    parser.add_argument('--split', default='test')
    parser.add_argument(
        '--no-odometry',
        action='store_true',
        help='replay without the odometry (an output made with --camera-motion none; try world_fusion.image_motion)',
    )
    parser.add_argument(
        '--grid',
        action='append',
        default=[],
        metavar='world_fusion.NAME=V1,V2',
        help='settings to combine (repeatable)',
    )
    parser.add_argument('--json', default=None)
    parser.add_argument(
        '--write-results',
        default=None,
        metavar='DIR',
        help="the last combination's results into DIR/results (for benchmarks/score_threshold.py)",
    )
    args = parser.parse_args(argv)

    scenes = load_scenes(args.eval_dir)
    reader = NocsFrameReader(args.data, args.split)
    odometry, cameras = {}, {}
    for name, prefixes in iter_scenes(args.data, args.split):
        if name in scenes:
            odometry[name] = scene_odometry(reader, prefixes)
            height, width = cv2.imread(f'{prefixes[0]}_color.png').shape[:2]
            blank = np.zeros((height, width, 3), np.uint8)
            by_frame = {int(Path(prefix).name): prefix for prefix in prefixes}
            cameras[name] = (reader.intrinsics(Path(prefixes[0]).parent), blank, by_frame)
    if args.no_odometry:
        odometry = None
    inputs = [result for frames in scenes.values() for _, result in frames]
    rows = {'input (no fusion)': summary(inputs), 'class-mean reference': summary(class_mean_reference_results(inputs))}
    grid = [
        (name, [value for value in values.split(',')]) for name, values in (item.split('=', 1) for item in args.grid)
    ]
    for combination in itertools.product(*[[(name, value) for value in values] for name, values in grid]):
        changes = parse_dotted_settings([f'inference.{name}={value}' for name, value in combination]).get(
            'inference', {}
        )
        settings = with_settings(InferenceConfig(), changes)
        fused = replay(scenes, odometry, cameras, settings)
        rows[' '.join(f'{name.split(".")[-1]}={value}' for name, value in combination) or 'defaults'] = summary(fused)
    frames = sum(len(f) for f in scenes.values())
    print(
        f'{args.eval_dir}: {len(scenes)} scenes, {frames} frames (MF, '
        f'{"no odometry" if args.no_odometry else "odometry"}); mean AP %, and centres within '
        '5 / 10 cm (share of ground-truth objects)'
    )
    print(f'{"":<48}' + ''.join(f'{key:>11}' for key in KEYS + ('10cm_recall',)))
    for name, metrics in rows.items():
        print(f'{name:<48}' + ''.join(f'{metrics[key]:>11.1f}' for key in KEYS + ('10cm_recall',)))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.write_results:
        folder = Path(args.write_results) / 'results'
        folder.mkdir(parents=True, exist_ok=True)
        names = [f'results_real_test_{scene}_{frame}.pkl' for scene, frames in scenes.items() for frame, _ in frames]
        for name, result in zip(names, fused):
            with open(folder / name, 'wb') as stream:
                pickle.dump(result, stream, protocol=4)
        (Path(args.write_results) / 'metrics.json').write_text(json.dumps({'mean': evaluate_results(fused)['mean']}))


if __name__ == '__main__':
    main()
