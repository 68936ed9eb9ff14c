"""`seqpose average`: the weighted mean of the weights of checkpoints of one model (checkpoint averaging)."""

import sys

HELP = 'average the weights of checkpoints of one model (continuations of one start) into a new checkpoint'
DESCRIPTION = (
    HELP
    + """

Continuations of one checkpoint lie in one basin of the loss, where the mean of their weights is often better
than each ("model soups", Wortsman et al. 2022): e.g. a continuation that gained recall but lost rotation,
averaged with its start. Evaluate the result like any checkpoint before shipping it.

Examples:
  seqpose average --out runs/soup.pt seqpose_core/weights/default.pt runs/continued/model.pt
  seqpose average --out runs/soup.pt A.pt B.pt --weights 0.7 0.3
Exit status 1 when a file cannot be read or the checkpoints are of different models."""
)


def add_arguments(parser):
    parser.add_argument('checkpoints', nargs='+', metavar='CHECKPOINT', help='SeqPose checkpoints of one model')
    parser.add_argument(
        '--weights',
        nargs='+',
        type=float,
        metavar='W',
        help='one weight per checkpoint (>= 0, normalised to sum to 1; default: equal)',
    )
    parser.add_argument('--out', required=True, metavar='PATH', help='the averaged checkpoint (.pt or .safetensors)')
    parser.add_argument('--force', action='store_true', help='overwrite --out if it exists')


def run(args):
    from pathlib import Path

    from seqpose_core.model.checkpoint import WeightsError, average_checkpoints, save_checkpoint_content

    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f'--out {out}: exists; pass --force to overwrite it')
    if any(Path(path).resolve() == out.resolve() for path in args.checkpoints):
        raise ValueError(f'--out {out}: is one of the inputs')
    try:
        averaged = average_checkpoints(args.checkpoints, args.weights)
    except WeightsError as error:
        print(f'seqpose average: {error}', file=sys.stderr)
        return 1
    save_checkpoint_content(out, averaged)
    for source in averaged['averaged_from']:
        print(f'{source["weight"]:.3f}  {source["path"]}')
    print(f'-> {out}')
    return 0
