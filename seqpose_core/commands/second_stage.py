"""What the commands that train a second stage on a checkpoint share (train-refiner, train-crop-scorer): the run
folder, the threads, the checkpoint with its config, and the model grown by the new part."""

from pathlib import Path


def open_checkpoint_run(args):
    """args.out (refused when it holds a model.pt, unless args.force), args.threads (> 0: torch threads) and
    args.checkpoint (None: the embedded model) -> (out Path, checkpoint Path, its content, its SeqPoseConfig)."""
    import torch

    from seqpose_core.config import config_from_checkpoint
    from seqpose_core.model.checkpoint import load_checkpoint
    from seqpose_core.runner import DEFAULT_CHECKPOINT

    out = Path(args.out)
    if (out / 'model.pt').exists() and not args.force:
        raise FileExistsError(f'--out {out}: holds a model.pt already; pass --force to replace it')
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    content = load_checkpoint(checkpoint)
    return out, checkpoint, content, config_from_checkpoint(content, checkpoint)


def grown_model(config, content, checkpoint, what, seed):
    """A SeqPose of config.model, seeded with `seed`, holding the checkpoint's tensors (they must fit); the new
    part keeps its own initialisation (or, grown before, its tensors from the checkpoint to continue)."""
    import torch

    from seqpose_core.model.checkpoint import load_state_growing
    from seqpose_core.model.seqpose import SeqPose

    torch.manual_seed(seed)
    model = SeqPose(config.model)
    load_state_growing(model, content['model'], checkpoint, what)
    return model
