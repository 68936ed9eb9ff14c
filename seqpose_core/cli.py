"""`seqpose` command line: one entry point, one module per subcommand.

Each subcommand module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`. Modules are
imported only when their command runs (or for --help), so `seqpose eval-results` never imports torch models.
"""

import argparse
import importlib
import sys

# name -> module implementing it
COMMANDS = {
    'demo': 'seqpose_core.commands.demo',
    'eval-results': 'seqpose_core.commands.eval_results',
    'synth': 'seqpose_core.commands.synth',
    'info': 'seqpose_core.commands.info',
    'train': 'seqpose_core.commands.train',
    'eval': 'seqpose_core.commands.evaluate',
    'bag': 'seqpose_core.commands.bag',
    'bench': 'seqpose_core.commands.bench',
    'export': 'seqpose_core.commands.export',
    'average': 'seqpose_core.commands.average',
    'train-refiner': 'seqpose_core.commands.train_refiner',
    'select-refiner-classes': 'seqpose_core.commands.select_refiner',
    'train-crop-scorer': 'seqpose_core.commands.train_crop_scorer',
    'calibrate-covariance': 'seqpose_core.commands.covariance',
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog='seqpose', description='SeqPose: category-level 6D object pose and size from monocular RGB video.'
    )
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, 'DESCRIPTION', module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, '_run', None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError) as error:
        # Bad input is reported as one clear line naming it; a traceback would bury the message.
        print(f'seqpose {args.command}: error: {error}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
