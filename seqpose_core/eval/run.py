"""Evaluate a model on a NOCS-layout split: run the stateful runner over every scene, score the frames.

For each scene, in order, the runner's memory is reset at the scene's first frame and every frame is fed in
turn (mode 'mf': memory on, the paper's video setting; 'sf': single frame). Each frame gives one results
pickle in the common NOCS / object-deformnet form (`results/results_<split>_<scene>_<frame>.pkl`); the
evaluator then writes metrics.json and the AP curves PNG; a few frames get an overlay.

What the runner is given is what a deployed camera has: images, intrinsics, stamps and no camera motion, or
with `camera_motion='odometry'` what a robot has too: the motion between frames from the scene's odometry
(drift and jitter included; a dataset without it is refused by name). `camera_motion='gt'` is an ORACLE that
derives the motion between frames from the ground-truth poses of the very frames being scored; it is for
ablations only, never for a headline number.
"""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from seqpose_core.config import CAMERA_MOTION_CHOICES, MODES
from seqpose_core.data import NocsFrameReader, camera_motion_from_annotations, iter_scenes
from seqpose_core.eval.evaluator import metrics_from_curves, score_results
from seqpose_core.eval.overlays import spread_indices, write_overlay
from seqpose_core.eval.report import format_table, write_report
from seqpose_core.eval.results_io import write_results_pickle
from seqpose_core.geometry import camera_motion_between
from seqpose_core.runner import Frame, build_runner

FRAME_PERIOD = 1.0 / 30.0  # seconds between the stamps given to the runner (a 30 Hz video)


def run_scenes(runner, reader, scenes, camera_motion='none'):
    """Yield (scene name, NocsFrame, detections) for every frame of `scenes` ([(name, [frame prefixes])]) in
    order, read with `reader`; the runner's memory is reset at each scene's first frame."""
    if camera_motion not in CAMERA_MOTION_CHOICES:
        raise ValueError(f'camera_motion {camera_motion!r}: expected one of {CAMERA_MOTION_CHOICES}')
    oracle_motion = camera_motion == 'gt' and runner.cfg.mode == 'video'
    for scene_name, prefixes in scenes:
        runner.reset()
        previous = None
        odometry = scene_odometry(reader, prefixes) if camera_motion == 'odometry' else None
        for position, prefix in enumerate(prefixes):
            frame = reader.read(prefix)
            motion = None
            if oracle_motion and previous is not None:
                # the same estimate the training clips carry (static scenes: from the GT object poses)
                motion = camera_motion_from_annotations(previous.annotation, frame.annotation)
            elif odometry is not None and position:
                motion = camera_motion_between(odometry[position - 1], odometry[position])
            result = runner.step(Frame(frame.color, frame.K, position * FRAME_PERIOD, scene_name, camera_motion=motion))
            yield scene_name, frame, result.detections
            previous = frame


def scene_odometry(reader, prefixes):
    """(frames, 4, 4) odom_from_camera of the frames `prefixes` of one scene, from its odometry.txt; ValueError
    naming the scene when it has none, or none for a frame."""
    scene_folder = Path(prefixes[0]).parent
    readings = reader.odometry(scene_folder)
    if readings is None:
        raise ValueError(
            f'--camera-motion odometry: {scene_folder} has no odometry.txt (REAL275 and CAMERA25 record none; '
            'generated videos have it): use --camera-motion none'
        )
    missing = [Path(prefix).name for prefix in prefixes if int(Path(prefix).name) not in readings]
    if missing:
        raise ValueError(f'{scene_folder / "odometry.txt"}: no reading for frame(s) {missing[:5]}')
    return np.stack([readings[int(Path(prefix).name)] for prefix in prefixes])


def evaluate_model(
    model,
    cfg,
    data_root,
    split,
    mode,
    out_dir,
    *,
    max_scenes=None,
    overlays=4,
    progress=True,
    device=None,
    camera_motion='none',
    score_threshold=None,
    score_fusion=None,
):
    """Run `model` (+ its SeqPoseConfig) over the split (`evaluate_runner`); returns metrics.json's dict."""
    if mode not in MODES:
        raise ValueError(f'mode {mode!r}: expected one of {sorted(MODES)}')
    overrides = {
        name: value
        for name, value in (('score_threshold', score_threshold), ('score_fusion', score_fusion))
        if value is not None
    }
    runner = build_runner(model=model, config=cfg, mode=mode, device=device, overrides=overrides)
    return evaluate_runner(
        runner,
        data_root,
        split,
        out_dir,
        max_scenes=max_scenes,
        overlays=overlays,
        progress=progress,
        camera_motion=camera_motion,
    )


def evaluate_runner(
    runner, data_root, split, out_dir, *, max_scenes=None, overlays=4, progress=True, camera_motion='none'
):
    """Run `runner` over the split, write results pickles, metrics.json, AP curves and overlays into out_dir;
    returns the metrics dict of metrics.json (percent; 'mean' and one row per class)."""
    if camera_motion not in CAMERA_MOTION_CHOICES:
        raise ValueError(f'camera_motion {camera_motion!r}: expected one of {CAMERA_MOTION_CHOICES}')
    mode = next(name for name, value in MODES.items() if value == runner.cfg.mode)
    out_dir = Path(out_dir)
    results_dir = out_dir / 'results'
    results_dir.mkdir(parents=True, exist_ok=True)

    reader = NocsFrameReader(data_root, split)
    scenes = list(iter_scenes(data_root, split))
    if max_scenes:
        scenes = scenes[:max_scenes]
    if not scenes:
        raise FileNotFoundError(f'no scenes in split {split!r} under {data_root}')
    total = sum(len(prefixes) for _, prefixes in scenes)
    overlay_indices = spread_indices(total, overlays)
    subset_name = f'{reader.location.kind}_{reader.location.subset}'
    results = []
    with tqdm(total=total, desc=f'eval {mode}', unit='frame', disable=not progress) as bar:
        for frame_index, (scene_name, frame, detections) in enumerate(
            run_scenes(runner, reader, scenes, camera_motion)
        ):
            annotation = frame.annotation
            results.append(
                write_results_pickle(
                    results_dir / f'results_{subset_name}_{scene_name}_{frame.frame}.pkl',
                    detections,
                    annotation.class_ids,
                    annotation.scaled_poses,
                    annotation.normalised_sizes,
                    annotation.handle_visibility,
                )
            )
            if frame_index in overlay_indices:
                write_overlay(out_dir / 'overlays' / f'{scene_name}_{frame.frame}.png', frame, detections)
            bar.update(1)
    curves = score_results(results, validate=False)  # write_results_pickle validated each one
    metrics = metrics_from_curves(curves)
    if progress:
        print(f'{len(results)} images, {len(scenes)} scene(s), mode {mode}')
        print(format_table(metrics, counts=(curves.num_gt, curves.num_pred)))
    write_report(metrics, curves, out_dir)
    return metrics
