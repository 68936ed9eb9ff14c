"""`seqpose eval`: run a model over every scene of a split with the stateful runner and score it (NOCS mAP).

For each scene, in order, the runner's memory is reset at the scene's first frame and every frame is fed in
turn (`--mode mf`: memory on, the paper's video setting; `--mode sf`: single frame). Each frame gives one
results pickle in the common NOCS / object-deformnet form (`results/results_<split>_<scene>_<frame>.pkl`);
the evaluator then writes metrics.json, the AP curves PNG and prints the table; a few frames get an overlay
(predicted boxes red, ground truth green, object axes).
"""
import sys

from seqpose_core.config import CAMERA_MOTION_CHOICES, MODES

HELP = 'evaluate a model on a NOCS-layout split (video or single-frame), write metrics.json + AP curves'


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
    parser.add_argument('--no-rotation-refinement', dest='rotation_refinement', action='store_false', default=None,
                        help="publish the decoder's rotations even where the model has a pose refiner "
                             '(inference.rotation_refinement false: the ablation of the refiner)')
    parser.add_argument('--no-box-refinement', dest='box_refinement', action='store_false', default=None,
                        help="keep the decoder's translations and sizes where the refiner re-estimates boxes "
                             '(inference.box_refinement false: the refiner\'s rotation alone)')
    parser.add_argument('--no-crop-scoring', dest='crop_scoring', action='store_false', default=None,
                        help="publish the decoder's scores where the refiner scores crops (inference.crop_scoring "
                             'false: the ablation of the crop scorer)')
    parser.add_argument('--crop-score-weight', type=float, default=None, metavar='W',
                        help="override inference.crop_score_weight: the crop scorer's weight in the published score")
    parser.add_argument('--score-track-decay', type=float, default=None, metavar='W',
                        help='override inference.score_track_decay (0: each frame\'s own score, the ablation)')
    parser.add_argument('--refiner-passes', type=int, default=None, metavar='N',
                        help='override inference.refiner_passes (1: the refiner looks once)')
    parser.add_argument('--no-support-plane', dest='support_plane', action='store_false', default=None,
                        help="keep each detection's own up axis (inference.support_plane false: the ablation of "
                             'the shared support plane)')
    parser.add_argument('--support-plane-gate', dest='support_plane_gate_deg', type=float, default=None,
                        metavar='DEG', help='override inference.support_plane_gate_deg')
    parser.add_argument('--support-plane-decay', type=float, default=None, metavar='W',
                        help='override inference.support_plane_decay (0: each frame alone)')


def run(args):
    from seqpose_core.eval.run import evaluate_runner
    from seqpose_core.model import WeightsError
    from seqpose_core.runner import build_runner
    try:
        overrides = {name: value for name, value in (('score_threshold', args.score_threshold),
                                                      ('score_fusion', args.score_fusion),
                                                      ('rotation_refinement', args.rotation_refinement),
                                                      ('box_refinement', args.box_refinement),
                                                      ('refiner_passes', args.refiner_passes),
                                                      ('crop_scoring', args.crop_scoring),
                                                      ('crop_score_weight', args.crop_score_weight),
                                                      ('score_track_decay', args.score_track_decay),
                                                      ('support_plane', args.support_plane),
                                                      ('support_plane_gate_deg', args.support_plane_gate_deg),
                                                      ('support_plane_decay', args.support_plane_decay))
                     if value is not None}
        runner = build_runner(args.checkpoint, mode=args.mode, device=args.device, overrides=overrides)
        evaluate_runner(runner, args.data, args.split, args.out, max_scenes=args.max_scenes,
                        overlays=args.overlays, camera_motion=args.camera_motion)
    except (FileNotFoundError, WeightsError, ValueError) as error:
        print(f'seqpose eval: {error}', file=sys.stderr)
        return 1
    print(f'results in {args.out} (metrics.json, ap_curves.png, results/, overlays/)')
    return 0
