"""Parts of the model that keep the weights they start from while the rest trains (`train.frozen_modules`).

Fine-tuning the temporal decoder on a warm start (StreamPETR-style streaming on long sequences) does not need the
image encoder and the dense heads to move: frozen, they cost a forward pass and no backward, and what the pose
refiner and its crop scorer learned from their outputs stays true. A frozen part also stays in eval mode, so its
BatchNorm statistics (the encoder's convolutional stem) do not drift with the training batches.
"""

from seqpose_core.train.errors import TrainingError


def freeze_modules(model, names):
    """Stop the gradient of every parameter of the named parts (top-level child modules); TrainingError naming
    an unknown part."""
    parts = dict(model.named_children())
    unknown = [name for name in names if name not in parts]
    if unknown:
        raise TrainingError(f'train.frozen_modules: {unknown} not a part of the model; its parts: {list(parts)}')
    for name in names:
        for parameter in parts[name].parameters():
            parameter.requires_grad_(False)


def set_training_mode(model, frozen_names):
    """model.train(), the frozen parts left in eval mode."""
    model.train()
    for name in frozen_names:
        getattr(model, name).eval()
