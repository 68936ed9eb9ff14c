"""`seqpose eval`: run a model over every scene of a split with the stateful runner and score it (NOCS mAP).

For each scene, in order, the runner's memory is reset at the scene's first frame and every frame is fed in
turn (`--mode mf`: memory on, the paper's video setting; `--mode sf`: single frame). Each frame gives one
results pickle in the common NOCS / object-deformnet form (`results/results_<split>_<scene>_<frame>.pkl`);
the evaluator then writes metrics.json, the AP curves PNG and prints the table; a few frames get an overlay
(predicted boxes red, ground truth green, object axes).
"""

import sys

from seqpose_core.config import CAMERA_MOTION_CHOICES, MODES
from seqpose_core.stages.config import BACKENDS

HELP = 'evaluate a model on a NOCS-layout split (video or single-frame), write metrics.json + AP curves'


def add_arguments(parser):
    parser.add_argument('--checkpoint', default=None, help='model checkpoint (default: the embedded model)')
    parser.add_argument('--data', required=True, help='dataset root (NOCS layout, e.g. `seqpose synth` output)')
    parser.add_argument(
        '--split', default='test', help='split: test, val, real_test, camera_val, ... (default: %(default)s)'
    )
    parser.add_argument(
        '--mode',
        choices=sorted(MODES),
        default='mf',
        help='mf: video, memory carried across frames; sf: single frame (default: %(default)s)',
    )
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument(
        '--camera-motion',
        choices=CAMERA_MOTION_CHOICES,
        default='none',
        help='mf only: none (default: what a deployed camera without odometry has); odometry: the '
        "scene's odometry.txt, what a robot's odometry reports (generated videos have it, REAL275 has not); or gt: "
        'an ORACLE that derives the camera motion from the ground-truth poses of the frames being scored (never '
        'use it for a headline number)',
    )
    parser.add_argument('--overlays', type=int, default=4, help='overlay images to write (default: %(default)s)')
    parser.add_argument('--max-scenes', type=int, default=None, help='evaluate the first N scenes only')
    parser.add_argument('--device', default=None, help="cpu, cuda, ... (default: the config's inference.device)")
    parser.add_argument(
        '--backend',
        choices=BACKENDS,
        default=None,
        help="network backend (inference.backend; default: the checkpoint's, torch): onnxruntime runs the "
        'exported graphs (inference.onnx_dir, or exported once into ~/.cache/seqpose/onnx)',
    )
    parser.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='inference.NAME=VALUE',
        help='override an inference setting of the checkpoint by its dotted name (YAML value; '
        'repeatable), e.g. --set inference.score_threshold=0 --set '
        'inference.support_plane.enabled=false --set inference.refiner.passes=1; every '
        'setting: seqpose_core/stages/config.py, docs/architecture.md',
    )


def run(args):
    from seqpose_core.eval.run import evaluate_runner
    from seqpose_core.model import WeightsError
    from seqpose_core.runner import build_runner

    try:
        overrides = inference_overrides(args.set)
        if args.backend:
            overrides['backend'] = args.backend
        runner = build_runner(args.checkpoint, mode=args.mode, device=args.device, overrides=overrides)
        evaluate_runner(
            runner,
            args.data,
            args.split,
            args.out,
            max_scenes=args.max_scenes,
            overlays=args.overlays,
            camera_motion=args.camera_motion,
        )
    except (FileNotFoundError, WeightsError, ValueError) as error:  # ConfigError is a ValueError
        print(f'seqpose eval: {error}', file=sys.stderr)
        return 1
    print(f'results in {args.out} (metrics.json, ap_curves.png, results/, overlays/)')
    return 0


def inference_overrides(items):
    """`--set inference.a.b=v` items -> {'a.b': v} for build_runner; other sections are refused by name (the
    model, data and training sections come with the checkpoint)."""
    from seqpose_core.config_schema import ConfigError, parse_dotted_settings

    parsed = parse_dotted_settings(items)
    others = sorted(set(parsed) - {'inference'})
    if others:
        raise ConfigError(
            f'--set {others[0]}.*: seqpose eval changes inference settings only (the model, data and '
            'training sections come with the checkpoint)'
        )
    return parsed.get('inference', {})
