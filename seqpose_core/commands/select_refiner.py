"""`seqpose select-refiner-classes`: per class, serve the decoder's pose, the refiner's rotation, or its rotation
and box, whichever scores best on selection sets (seqpose_core.eval.refiner_selection)."""

import sys

HELP = "choose per class whether the refiner's rotation (and box) replaces the decoder's, on selection sets"
DESCRIPTION = (
    HELP
    + """

Every class the refiner was trained on is evaluated three ways on each --data set (`seqpose eval`, no ground truth
at inference): the decoder alone, the refiner's rotation, and the refiner's rotation and box (refiners with a box
part). Per class the arm with the highest mean sum of the IoU25, IoU50, 10deg10cm, 10deg and 10cm APs wins; --out
is the checkpoint with inference.refiner.classes / box_classes set accordingly (the tensors are unchanged), and
OUT.selection.csv the table. Use sets you do not report on: the choice is fitted to them.

Examples:
  seqpose select-refiner-classes --checkpoint runs/box/model.pt --data data/s779 data/s780 --out runs/box/selected.pt"""
)


def add_arguments(parser):
    parser.add_argument('--checkpoint', required=True, help='a SeqPose checkpoint with a pose refiner')
    parser.add_argument('--data', nargs='+', required=True, metavar='DIR', help='NOCS-layout selection sets')
    parser.add_argument('--split', default='test', help='split of every --data set (default: %(default)s)')
    parser.add_argument('--mode', choices=('mf', 'sf'), default='mf', help='evaluation mode (default: %(default)s)')
    parser.add_argument('--out', required=True, help='the checkpoint to write (.pt or .safetensors)')
    parser.add_argument('--force', action='store_true', help='overwrite --out if it exists')
    parser.add_argument('--no-progress', action='store_true')


def run(args):
    import csv
    import dataclasses
    from pathlib import Path

    from seqpose_core.config_schema import to_dict
    from seqpose_core.eval.refiner_selection import (
        SELECTION_METRICS,
        choose_arms,
        classes_for,
        current_arms,
        score_arms,
    )
    from seqpose_core.model.checkpoint import WeightsError, load_checkpoint, save_checkpoint_content
    from seqpose_core.runner import load_model_and_config

    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f'--out {out}: exists; pass --force to overwrite it')
    if Path(args.checkpoint).resolve() == out.resolve():
        raise ValueError(f'--out {out}: is the --checkpoint itself')
    try:
        model, config = load_model_and_config(args.checkpoint)
        content = load_checkpoint(args.checkpoint)
    except (FileNotFoundError, WeightsError) as error:
        print(f'seqpose select-refiner-classes: {error}', file=sys.stderr)
        return 1
    scores = score_arms(model, config, args.data, args.split, args.mode, progress=not args.no_progress)
    chosen = choose_arms(scores, current_arms(config.inference.refiner))
    refiner_classes, box_classes = classes_for(chosen)
    metric_names = ' + '.join(SELECTION_METRICS)
    rows = [
        {
            'class': name,
            **{arm: '' if scores[arm][name] is None else f'{scores[arm][name]:.2f}' for arm in scores},
            'chosen': arm,
        }
        for name, arm in chosen.items()
    ]
    table = out.parent / f'{out.name}.selection.csv'
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(table, 'w', newline='', encoding='utf-8') as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f'score per class and arm: mean over {len(args.data)} set(s) of {metric_names} (mAP %, {args.mode})')
    for row in rows:
        print('  ' + '  '.join(f'{key} {value}' for key, value in row.items()))
    refiner = dataclasses.replace(config.inference.refiner, classes=refiner_classes, box_classes=box_classes)
    config = dataclasses.replace(config, inference=dataclasses.replace(config.inference, refiner=refiner))
    content['config'], content['config_type'] = to_dict(config), type(config).__name__
    content['refiner_selection'] = {
        'data': [str(path) for path in args.data],
        'split': args.split,
        'mode': args.mode,
        'chosen': chosen,
    }
    save_checkpoint_content(out, content)
    print(f'inference.refiner.classes {list(refiner_classes)}, box_classes {list(box_classes)} -> {out} ({table.name})')
    return 0
