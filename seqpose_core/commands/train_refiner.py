"""`seqpose train-refiner`: train the pose refiner (a second look at each detection's rotation and box) of a model."""

import dataclasses
import sys

HELP = 'train a pose refiner for a SeqPose checkpoint on crops of ground-truth objects'
DESCRIPTION = (
    HELP
    + """

The refiner (model.pose_refiner) is a small CNN on a crop of the camera image around each detection of
inference.refiner.classes; the runner lets it replace the decoder's rotation (with --box, also the translation and
size: model.refiner_box). It trains alone, after the model: the
rest of the checkpoint is copied unchanged. RUN/model.pt is the checkpoint with the refiner (for seqpose eval,
the node, or as the embedded default model), RUN/refiner_log.csv a row per epoch (losses; with --val-data the
fraction of each class's validation crops within 10 degrees, on ground-truth boxes; with --box the median relative
depth error and centre error in crop sides).

Examples:
  seqpose train-refiner --data data/train --val-data data/val6 --out runs/refiner
  seqpose train-refiner --checkpoint runs/default/model.pt --data data/train --out runs/refiner --epochs 8
  seqpose train-refiner --data data/train --out runs/refiner6 --classes bottle,bowl,camera,can,laptop,mug --shift 0.2
  seqpose train-refiner --data data/train --out runs/box --box --shift 0.2 --zoom 0.65 1.5"""
)


def add_arguments(parser):
    from seqpose_core.train.pose_refiner import RefinerTrainingSettings

    defaults = RefinerTrainingSettings()
    parser.add_argument(
        '--checkpoint', default=None, help='the SeqPose checkpoint to refine (default: the embedded model)'
    )
    parser.add_argument('--data', required=True, help='NOCS-layout root with the training frames')
    parser.add_argument('--split', default='real_train', help='split of --data (default: real_train)')
    parser.add_argument('--val-data', default=None, help='NOCS-layout root to validate on after every epoch')
    parser.add_argument('--val-split', default='real_test')
    parser.add_argument('--out', required=True, help='run folder (gets model.pt and refiner_log.csv)')
    parser.add_argument('--width', type=int, default=32, help='channels of the first stage (model.refiner_width)')
    parser.add_argument('--epochs', type=int, default=defaults.epochs)
    parser.add_argument('--batch-size', type=int, default=defaults.batch_size)
    parser.add_argument('--lr', type=float, default=defaults.lr)
    parser.add_argument(
        '--frame-stride', type=int, default=defaults.frame_stride, help='every n-th frame of each scene gives crops'
    )
    parser.add_argument('--copies', type=int, default=defaults.copies, help='jittered crops per object')
    parser.add_argument(
        '--shift',
        type=float,
        default=defaults.shift,
        help=f'crops move by up to this many crop sides per axis, as a predicted box is off (default {defaults.shift})',
    )
    parser.add_argument(
        '--zoom',
        type=float,
        nargs=2,
        metavar=('MIN', 'MAX'),
        default=defaults.zoom,
        help=f'crops scale by a factor in [MIN, MAX] (default {defaults.zoom[0]} {defaults.zoom[1]})',
    )
    parser.add_argument(
        '--box',
        action='store_true',
        help='the refiner also re-estimates each box (centre, projected size, metric size, hence '
        'depth: model.refiner_box)',
    )
    parser.add_argument(
        '--classes',
        default=None,
        help='comma-separated classes the refiner serves (inference.refiner.classes; default: the '
        "checkpoint's). A symmetric class (bottle, bowl, can) learns its up axis only",
    )
    parser.add_argument('--seed', type=int, default=defaults.seed)
    parser.add_argument('--threads', type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument('--force', action='store_true', help='write into an --out that already holds a model.pt')
    parser.add_argument('--no-progress', action='store_true')


def run(args):
    from seqpose_core.commands.second_stage import grown_model, open_checkpoint_run
    from seqpose_core.model import save_checkpoint
    from seqpose_core.train.errors import TrainingError
    from seqpose_core.train.pose_refiner import RefinerTrainingSettings, collect_crops, train_refiner

    for name in ('width', 'epochs', 'batch_size', 'frame_stride', 'copies'):
        if getattr(args, name) < 1:
            raise ValueError(f'--{name.replace("_", "-")} {getattr(args, name)}: expected at least 1')
    if not 0 <= args.shift < 1:
        raise ValueError(f'--shift {args.shift}: expected crop sides in [0, 1)')
    if not 0 < args.zoom[0] <= args.zoom[1]:
        raise ValueError(f'--zoom {args.zoom[0]} {args.zoom[1]}: expected 0 < MIN <= MAX')
    out, checkpoint, content, config = open_checkpoint_run(args)
    model_changes = {'refiner_width': args.width}
    refiner = config.inference.refiner
    if args.classes is not None:
        refiner = dataclasses.replace(
            refiner, classes=tuple(name.strip() for name in args.classes.split(',') if name.strip())
        )
    if args.box:  # every class the refiner serves, until `seqpose select-refiner-classes` narrows them
        model_changes['refiner_box'] = True
        refiner = dataclasses.replace(refiner, box_classes=refiner.classes)
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, **model_changes),
        inference=dataclasses.replace(config.inference, refiner=refiner),
    )
    # the checkpoint's tensors fit; the refiner's are new (or, refining a refined model, its own to continue)
    model = grown_model(config, content, checkpoint, 'model with a pose refiner', args.seed)
    settings = RefinerTrainingSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        frame_stride=args.frame_stride,
        copies=args.copies,
        shift=args.shift,
        zoom=tuple(args.zoom),
        seed=args.seed,
    )
    progress = not args.no_progress
    try:
        classes = config.inference.refiner.classes
        crops = collect_crops(args.data, args.split, config.model, classes, settings, progress=progress)
        val_crops = None
        if args.val_data:
            val_crops = collect_crops(
                args.val_data,
                args.val_split,
                config.model,
                classes,
                dataclasses.replace(settings, frame_stride=1),
                jitter=False,
                progress=progress,
            )
        print(
            f'{len(crops["class_ids"])} training crops of {", ".join(classes)}'
            + (f', {len(val_crops["class_ids"])} validation crops' if val_crops else '')
        )
        out.mkdir(parents=True, exist_ok=True)
        train_refiner(model.pose_refiner, crops, settings, val_crops, out / 'refiner_log.csv', progress)
    except TrainingError as error:
        print(f'seqpose train-refiner: {error}', file=sys.stderr)
        return 1
    save_checkpoint(out / 'model.pt', model, config)
    print(f'-> {out / "model.pt"}')
    return 0
