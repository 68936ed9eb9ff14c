"""`seqpose train-crop-scorer`: teach a model's refiner to score the crops around its own detections."""

import dataclasses
import sys

HELP = "train the refiner's crop scorer on the detections a SeqPose checkpoint publishes on training video"
DESCRIPTION = (
    HELP
    + """

The scorer (model.refiner_scoring) is a small head on the refiner's crop features that says what the crop around a
published box holds: background or one of the six classes. The runner then publishes sqrt(score x the crop's
probability of the detection's class) (inference.crop_scoring). It learns from the runner's own detections on
--data, labelled by the ground truth (the class of the object whose centre is within 10 cm, else background); the
refiner's pose and the rest of the checkpoint are copied unchanged. RUN/model.pt is the checkpoint with the scorer,
RUN/scorer_log.csv a row per epoch (loss; with --val-data the 7-way accuracy and the ranking AUC of the correct
detections by the decoder's score, by the crop and by their fusion).

Running the model over the video is what takes the time; --keep-detections keeps what it collected
(RUN/detections.pt, RUN/val_detections.pt), and --detections / --val-detections train on such files again (the
same checkpoint's refiner) without running the model: another head, more epochs, or a learning curve over
--max-scenes.

Examples:
  seqpose train-crop-scorer --data data/train --val-data data/s779 --out runs/scorer
  seqpose train-crop-scorer --checkpoint runs/box/model.pt --data data/train --max-scenes 500 --out runs/scorer
  seqpose train-crop-scorer --data data/train --val-data data/s779 --keep-detections --out runs/collected
  seqpose train-crop-scorer --detections runs/collected/detections.pt \\
      --val-detections runs/collected/val_detections.pt --max-scenes 250 --out runs/scorer_250"""
)


def add_arguments(parser):
    from seqpose_core.train.crop_scorer import ScorerSettings

    defaults = ScorerSettings()
    parser.add_argument(
        '--checkpoint', default=None, help='a SeqPose checkpoint with a pose refiner (default: the embedded model)'
    )
    parser.add_argument(
        '--data',
        nargs='+',
        default=None,
        help='NOCS-layout root(s) with the training video (several: their scenes in that order)',
    )
    parser.add_argument(
        '--detections',
        default=None,
        help='train on the detections kept by an earlier --keep-detections instead of --data',
    )
    parser.add_argument('--split', default='real_train', help='split of --data (default: real_train)')
    parser.add_argument('--val-data', default=None, help='NOCS-layout root to validate on after every epoch')
    parser.add_argument('--val-split', default='real_test')
    parser.add_argument('--val-detections', default=None, help='validate on kept detections instead of --val-data')
    parser.add_argument(
        '--keep-detections',
        action='store_true',
        help='keep the collected detections in RUN/detections.pt (and RUN/val_detections.pt)',
    )
    parser.add_argument('--out', required=True, help='run folder (gets model.pt and scorer_log.csv)')
    parser.add_argument(
        '--max-scenes',
        type=int,
        default=defaults.max_scenes,
        help='learn from the first N scenes of --data (or of --detections) only (0: all)',
    )
    parser.add_argument('--epochs', type=int, default=defaults.epochs)
    parser.add_argument('--batch-size', type=int, default=defaults.batch_size)
    parser.add_argument('--lr', type=float, default=defaults.lr)
    parser.add_argument('--seed', type=int, default=defaults.seed)
    parser.add_argument(
        '--device',
        default=None,
        help="where the model runs over --data (default: the checkpoint's "
        'inference.device); the head itself trains on the CPU',
    )
    parser.add_argument('--threads', type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument('--force', action='store_true', help='write into an --out that already holds a model.pt')
    parser.add_argument('--no-progress', action='store_true')


def run(args):
    from seqpose_core.commands.second_stage import grown_model, open_checkpoint_run
    from seqpose_core.data.layout import enumerate_scenes
    from seqpose_core.model import save_checkpoint
    from seqpose_core.runner import StreamRunner
    from seqpose_core.stages.config import with_settings
    from seqpose_core.train.crop_scorer import (
        ScorerSettings,
        collect_detection_features,
        concatenate_detections,
        first_scenes,
        load_detections,
        save_detections,
        train_scorer,
    )
    from seqpose_core.train.errors import TrainingError

    for name in ('epochs', 'batch_size'):
        if getattr(args, name) < 1:
            raise ValueError(f'--{name.replace("_", "-")} {getattr(args, name)}: expected at least 1')
    if args.max_scenes < 0:
        raise ValueError(f'--max-scenes {args.max_scenes}: expected 0 (all) or more')
    for given, kept in (('data', 'detections'), ('val_data', 'val_detections')):
        if getattr(args, given) and getattr(args, kept):
            raise ValueError(f'--{given.replace("_", "-")} and --{kept.replace("_", "-")}: give one of them')
    if not args.data and not args.detections:
        raise ValueError('--data or --detections: give the training video or detections kept from it')
    if args.keep_detections and not (args.data or args.val_data):
        raise ValueError('--keep-detections: there is nothing to collect without --data or --val-data')
    out, checkpoint, content, config = open_checkpoint_run(args)
    if config.model.refiner_width <= 0:
        print(
            f'seqpose train-crop-scorer: {checkpoint} has no pose refiner (model.refiner_width 0); '
            'train one first (seqpose train-refiner)',
            file=sys.stderr,
        )
        return 1
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, refiner_scoring=True))
    # the checkpoint's tensors fit; the scorer's are new (or, a scored model again, its own to continue)
    model = grown_model(config, content, checkpoint, 'model with a crop scorer', args.seed)
    # the detections to learn from are each frame's, published without a scorer's opinion or a track's memory
    runner = StreamRunner(
        model,
        with_settings(config.inference, {'mode': 'video', 'crop_scoring.enabled': False, 'tracks.score_decay': 0.0}),
        input_size=(config.data.input_height, config.data.input_width),
        device=args.device,
    )
    settings = ScorerSettings(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_scenes=args.max_scenes, seed=args.seed
    )
    progress = not args.no_progress

    def detections(roots, split, kept, file_name, scene_settings):
        if kept:
            return first_scenes(load_detections(kept, model.pose_refiner), scene_settings.max_scenes)
        # --max-scenes counts over the roots together: the first N scenes of the first root, then the next...
        parts, counts = [], []
        for root in roots:
            left = scene_settings.max_scenes - sum(counts) if scene_settings.max_scenes else 0
            parts.append(
                collect_detection_features(
                    runner, root, split, dataclasses.replace(scene_settings, max_scenes=left), progress=progress
                )
            )
            scenes = len(list(enumerate_scenes(root, split)))
            counts.append(min(left, scenes) if left else scenes)
            if scene_settings.max_scenes and sum(counts) >= scene_settings.max_scenes:
                break
        collected = concatenate_detections(parts, counts)
        if args.keep_detections:
            out.mkdir(parents=True, exist_ok=True)
            save_detections(
                out / file_name,
                collected,
                model.pose_refiner,
                f'{" + ".join(map(str, roots))} ({split}), {scene_settings.max_scenes or "all"} scenes, {checkpoint}',
            )
        return collected

    try:
        data = detections(args.data, args.split, args.detections, 'detections.pt', settings)
        val_data = None
        if args.val_data or args.val_detections:
            val_data = detections(
                [args.val_data],
                args.val_split,
                args.val_detections,
                'val_detections.pt',
                dataclasses.replace(settings, max_scenes=0),
            )
        print(
            f'{len(data["labels"])} training detections ({float((data["labels"] > 0).float().mean()):.2f} at an '
            'object)' + (f', {len(val_data["labels"])} validation detections' if val_data else '')
        )
        out.mkdir(parents=True, exist_ok=True)
        train_scorer(model.crop_scorer, data, settings, val_data, out / 'scorer_log.csv', progress)
    except TrainingError as error:
        print(f'seqpose train-crop-scorer: {error}', file=sys.stderr)
        return 1
    # what else the checkpoint carries (e.g. the refiner's class selection) stays with it
    carried = {
        key: value
        for key, value in content.items()
        if key not in ('format', 'version', 'model', 'config', 'config_type')
    }
    save_checkpoint(out / 'model.pt', model, config, **carried)
    print(f'-> {out / "model.pt"}')
    return 0
