"""AdamW with a slower backbone, and the linear warm-up + cosine decay schedule (paper sec. 4.2)."""

import math

import torch

# Parameter-name prefixes of the image encoder (DINOv2), the part that gets `backbone_lr_mult`.
BACKBONE_PREFIXES = ('encoder.', 'backbone.', 'dinov2.', 'pretrained.')
# No weight decay on these (biases, norms, embeddings, learnt query anchors), as DETR-family recipes do.
NO_DECAY_KEYWORDS = ('bias', 'norm', 'pos_embed', 'cls_token', 'mask_token', 'anchor', 'query_embed', 'gamma')


# Where the decoder looks (3D sampling offsets, anchor positions) learns `sampling_lr_mult` slower, as Deformable
# DETR / DETR3D train their sampling offsets and reference points (x0.1): at the full rate they run away from the
# objects (and out of the image) before the features they sample mean anything.
SAMPLING_KEYWORDS = ('sampling_offsets', 'anchors.reference_points')


def is_backbone_parameter(name):
    return name.startswith(BACKBONE_PREFIXES)


def parameter_kind(name, train_cfg):
    if is_backbone_parameter(name):
        return 'backbone', train_cfg.lr * train_cfg.backbone_lr_mult
    if train_cfg.sampling_lr_mult != 1.0 and any(word in name for word in SAMPLING_KEYWORDS):
        return 'sampling', train_cfg.lr * train_cfg.sampling_lr_mult
    return 'head', train_cfg.lr


def parameter_groups(model, train_cfg):
    """Groups backbone / head (/ sampling, when sampling_lr_mult != 1) x decay / no decay; each group's `lr` is
    its peak learning rate."""
    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        kind, lr = parameter_kind(name, train_cfg)
        no_decay = parameter.ndim <= 1 or any(word in name for word in NO_DECAY_KEYWORDS)
        key = (kind, 'no_decay' if no_decay else 'decay')
        if key not in groups:
            groups[key] = {
                'name': '/'.join(key),
                'params': [],
                'lr': lr,
                'weight_decay': 0.0 if no_decay else train_cfg.weight_decay,
            }
        groups[key]['params'].append(parameter)
    if not groups:
        raise ValueError('the model has no trainable parameters')
    return [groups[key] for key in sorted(groups)]  # a fixed order, so optimiser state_dicts line up on resume


def build_optimizer(model, train_cfg):
    return torch.optim.AdamW(
        parameter_groups(model, train_cfg), lr=train_cfg.lr, betas=(0.9, 0.999), weight_decay=train_cfg.weight_decay
    )


def lr_factor(step, total_steps, warmup_steps, warmup_start_factor=0.001, min_lr_ratio=0.001):
    """Multiplier of the peak lr before optimiser step `step` (0-based): linear warm-up, then cosine decay
    to min_lr_ratio at `total_steps`."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    if step < warmup_steps:
        return warmup_start_factor + (1.0 - warmup_start_factor) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer, train_cfg, total_steps):
    def factor(step):
        return lr_factor(
            step, total_steps, train_cfg.warmup_steps, train_cfg.warmup_start_factor, train_cfg.min_lr_ratio
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
