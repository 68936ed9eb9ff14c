"""`seqpose eval`: run a model over every scene of a split with the stateful runner and score it (NOCS mAP).

For each scene, in order, the runner's memory is reset at the scene's first frame and every frame is fed in
turn (`--mode mf`: memory on, the paper's video setting; `--mode sf`: single frame). Each frame gives one
results pickle in the common NOCS / object-deformnet form (`results/results_<split>_<scene>_<frame>.pkl`);
the evaluator then writes metrics.json, the AP curves PNG and prints the table; a few frames get an overlay
(predicted boxes red, ground truth green, object axes).
"""
import sys
from pathlib import Path

from seqpose_core.config import MODES

HELP = 'evaluate a model on a NOCS-layout split (video or single-frame), write metrics.json + AP curves'
FRAME_PERIOD = 1.0 / 30.0         # seconds between the stamps given to the runner (a 30 Hz video)
CAMERA_MOTION_CHOICES = ('gt', 'none')


def add_arguments(parser):
    parser.add_argument('--checkpoint', default=None,
                        help='model checkpoint (default: the embedded model)')
    parser.add_argument('--data', required=True, help='dataset root (NOCS layout, e.g. `seqpose synth` output)')
    parser.add_argument('--split', default='test', help='split: test, val, real_test, camera_val, ... '
                                                         '(default: %(default)s)')
    parser.add_argument('--mode', choices=sorted(MODES), default='mf',
                        help='mf: video, memory carried across frames; sf: single frame (default: %(default)s)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--camera-motion', choices=CAMERA_MOTION_CHOICES, default='none',
                        help='mf only: none (default: what a deployed camera without odometry has), or gt: an '
                             'ORACLE that derives the camera motion from the ground-truth poses of the frames '
                             'being scored (never use it for a headline number)')
    parser.add_argument('--overlays', type=int, default=4, help='overlay images to write (default: %(default)s)')
    parser.add_argument('--max-scenes', type=int, default=None, help='evaluate the first N scenes only')
    parser.add_argument('--device', default=None, help='cpu, cuda, ... (default: the config\'s inference.device)')
    parser.add_argument('--score-threshold', type=float, default=None,
                        help='override inference.score_threshold (the mAP uses every detection kept)')
    parser.add_argument('--score-fusion', choices=('query', 'proposal'), default=None,
                        help="override inference.score_fusion: 'query' (the queries' own scores) or 'proposal' "
                             "(fused with the proposal head's evidence; models with proposal queries)")


def load_model_for_eval(checkpoint, device='cpu'):
    """(model, SeqPoseConfig) from a checkpoint path, or from the embedded default model when None."""
    from seqpose_core.runner import DEFAULT_CHECKPOINT, load_model_and_config
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    if not path.is_file():
        if checkpoint:
            raise FileNotFoundError(f'--checkpoint {path}: no such file')
        raise FileNotFoundError(f'no embedded default model at {DEFAULT_CHECKPOINT}: pass --checkpoint, or train '
                                'one (see seqpose_core/weights/README.md for the command)')
    return load_model_and_config(path, device)


def _overlay_frames(total, count):
    """Indices of `count` frames spread over `total`."""
    if count <= 0 or total <= 0:
        return set()
    if count >= total:
        return set(range(total))
    return {round(i * (total - 1) / (count - 1)) if count > 1 else 0 for i in range(count)}


def evaluate_model(model, cfg, data_root, split, mode, out_dir, *, max_scenes=None, overlays=4, progress=True,
                   device=None, camera_motion='none', score_threshold=None, score_fusion=None):
    """Run `model` (+ its SeqPoseConfig) over the split, write results pickles, metrics.json, AP curves and
    overlays into out_dir; returns the metrics dict of metrics.json (percent; 'mean' and one row per class)."""
    from tqdm import tqdm

    from seqpose_core.data import NocsFrameReader, camera_motion_from_annotations, iter_scenes
    from seqpose_core.eval.evaluator import metrics_from_curves, score_results
    from seqpose_core.eval.report import format_table, write_report
    from seqpose_core.eval.results_io import write_results_pickle
    from seqpose_core.runner import Frame, build_runner

    if mode not in MODES:
        raise ValueError(f'mode {mode!r}: expected one of {sorted(MODES)}')
    if camera_motion not in CAMERA_MOTION_CHOICES:
        raise ValueError(f'camera_motion {camera_motion!r}: expected one of {CAMERA_MOTION_CHOICES}')
    out_dir = Path(out_dir)
    results_dir = out_dir / 'results'
    overlay_dir = out_dir / 'overlays'
    results_dir.mkdir(parents=True, exist_ok=True)
    overrides = {name: value for name, value in (('score_threshold', score_threshold),
                                                  ('score_fusion', score_fusion)) if value is not None}
    runner = build_runner(model=model, config=cfg, mode=mode, device=device, overrides=overrides)

    reader = NocsFrameReader(data_root, split)
    scenes = list(iter_scenes(data_root, split))
    if max_scenes:
        scenes = scenes[:max_scenes]
    if not scenes:
        raise FileNotFoundError(f'no scenes in split {split!r} under {data_root}')
    total = sum(len(prefixes) for _, prefixes in scenes)
    overlay_indices = _overlay_frames(total, overlays)
    subset_name = f'{reader.location.kind}_{reader.location.subset}'
    frame_index, results = 0, []
    with tqdm(total=total, desc=f'eval {mode}', unit='frame', disable=not progress) as bar:
        for scene_name, prefixes in scenes:
            runner.reset()
            previous = None
            for position, prefix in enumerate(prefixes):
                frame = reader.read(prefix)
                motion = None
                if MODES[mode] == 'video' and camera_motion == 'gt' and previous is not None:
                    # the same estimate the training clips carry (static scenes: from the GT object poses)
                    motion = camera_motion_from_annotations(previous.annotation, frame.annotation)
                detections = runner.step(Frame(frame.color, frame.K, position * FRAME_PERIOD, scene_name,
                                               camera_motion=motion)).detections
                annotation = frame.annotation
                results.append(write_results_pickle(results_dir / f'results_{subset_name}_{scene_name}_{frame.frame}.pkl',
                                     detections, annotation.class_ids, annotation.scaled_poses,
                                     annotation.normalised_sizes, annotation.handle_visibility))
                if frame_index in overlay_indices:
                    _write_overlay(overlay_dir / f'{scene_name}_{frame.frame}.png', frame, detections)
                previous = frame
                frame_index += 1
                bar.update(1)
    curves = score_results(results, validate=False)   # write_results_pickle validated each one
    metrics = metrics_from_curves(curves)
    if progress:
        print(f'{len(results)} images, {len(scenes)} scene(s), mode {mode}')
        print(format_table(metrics, counts=(curves.num_gt, curves.num_pred)))
    write_report(metrics, curves, out_dir)
    return metrics


def _write_overlay(path, frame, detections):
    """The frame with GT boxes (green) and predicted boxes (red), object axes and labels (paper Fig. 4)."""
    import cv2

    from seqpose_core.detection import Detection
    from seqpose_core.geometry import scale_intrinsics
    from seqpose_core.visualize import OVERLAY_MIN_HEIGHT, draw_detections, overlay_predictions
    annotation = frame.annotation
    ground_truth = [Detection(class_id=int(class_id), score=1.0, rotation=rotation, translation=translation,
                              size=size)
                    for class_id, rotation, translation, size in zip(annotation.class_ids, annotation.rotations,
                                                                     annotation.translations, annotation.sizes)]
    # small renders are upscaled so boxes and labels stay legible (K follows the resize)
    factor = max(1, -(-OVERLAY_MIN_HEIGHT // frame.color.shape[0]))
    height, width = frame.color.shape[0] * factor, frame.color.shape[1] * factor
    image = cv2.resize(frame.color, (width, height), interpolation=cv2.INTER_LINEAR)
    K = scale_intrinsics(frame.K, frame.color.shape[:2], (height, width))
    draw_detections(image, ground_truth, K, gt=True)
    draw_detections(image, overlay_predictions(detections, len(ground_truth)), K)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def run(args):
    from seqpose_core.model import WeightsError
    try:
        model, cfg = load_model_for_eval(args.checkpoint, args.device or 'cpu')
        summary = evaluate_model(model, cfg, args.data, args.split, args.mode, args.out,
                                 max_scenes=args.max_scenes, overlays=args.overlays, device=args.device,
                                 camera_motion=args.camera_motion, score_threshold=args.score_threshold,
                                 score_fusion=args.score_fusion)
    except (FileNotFoundError, WeightsError, ValueError) as error:
        print(f'seqpose eval: {error}', file=sys.stderr)
        return 1
    print(f'results in {args.out} (metrics.json, ap_curves.png, results/, overlays/)')
    return 0
