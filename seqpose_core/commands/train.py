"""`seqpose train`: train SeqPose on NOCS-layout data (CAMERA / REAL or `seqpose synth` output)."""

import sys

HELP = 'train a model (video clips, single frames or both; resumable; torchrun for several GPUs)'
DESCRIPTION = """Train SeqPose on NOCS-layout data (the official CAMERA/REAL folders or `seqpose synth` output).

Writes into RUN_DIR: checkpoint.pt (the latest training state, every train.checkpoint_every steps and at the
end; --resume continues from it bit-for-bit), model.pt (model + config, at the end of the schedule; what
`seqpose eval --checkpoint` takes), config.yaml, train_log.csv (losses, lr), val_log.csv (NOCS metrics every
train.val_every steps) and tensorboard/ when TensorBoard is installed.

Several GPUs:  torchrun --nproc_per_node=4 -m seqpose_core.cli train --config ... --data ... --out ...
"""


def add_arguments(parser):
    parser.add_argument(
        '--config',
        help='YAML config path or shipped name (tiny, default, seqpose_vits, ...); '
        'not needed with --resume (the run keeps its own config)',
    )
    parser.add_argument('--data', required=True, help='dataset root (NOCS layout)')
    parser.add_argument('--out', required=True, metavar='RUN_DIR', help='run folder (checkpoints, logs)')
    parser.add_argument('--resume', action='store_true', help='continue the run in RUN_DIR from its checkpoint')
    parser.add_argument(
        '--max-steps',
        type=int,
        default=None,
        metavar='N',
        help='stop after global step N (checkpointed; the lr schedule still follows the config, '
        'so --resume continues it)',
    )
    parser.add_argument('--device', default=None, help='cpu, cuda or cuda:N (default: CUDA when available)')
    parser.add_argument('--val-data', default=None, help='dataset root for validation (default: --data)')
    parser.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='SECTION.KEY=VALUE',
        help='override a config value, e.g. --set train.lr=1e-3 (YAML value syntax; repeatable)',
    )
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def run(args):
    import torch

    threads = torch.get_num_threads()  # train.num_threads changes it; callers in the same process get it back
    try:
        return _train(args)
    finally:
        torch.set_num_threads(threads)


def _train(args):
    from seqpose_core.config import ConfigError, load_config
    from seqpose_core.config_schema import parse_dotted_settings
    from seqpose_core.train.engine import build_trainer
    from seqpose_core.train.errors import TrainingError

    if not args.resume and not args.config:
        print('seqpose train: --config is required (except with --resume)', file=sys.stderr)
        return 2
    try:
        overrides = parse_dotted_settings(args.set)
        if args.resume and (args.config or overrides):
            print(
                "seqpose train: --resume continues with the run's own config; --config/--set are ignored",
                file=sys.stderr,
            )
        cfg = None if args.resume else load_config(args.config, overrides)
        trainer = build_trainer(
            cfg,
            args.data,
            args.out,
            resume=args.resume,
            stop_step=args.max_steps,
            device=args.device,
            val_data=args.val_data,
            progress=not args.no_progress,
        )
        try:
            step = trainer.run()
        finally:
            trainer.group.close()
    except (ConfigError, TrainingError, FileNotFoundError) as error:
        print(f'seqpose train: {error}', file=sys.stderr)
        return 1
    if trainer.group.is_main:
        print(f'stopped at step {step}/{trainer.total_steps}; checkpoint in {args.out}')
    return 0
