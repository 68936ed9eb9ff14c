"""Training the pose refiner (model.pose_refiner) on crops around ground-truth objects.

The refiner is a second stage: it trains on its own, after the SeqPose model, from crops of the training frames
(every `frame_stride`-th frame of each scene: neighbouring video frames are nearly the same image). Each object
of the classes it serves gives `copies` crops, moved by up to `shift` crop sides and scaled by a factor in `zoom`,
because at inference the crop is centred on the predicted box, which is off. Targets are the allocentric
rotation (model.pose_refiner.ray_rotation) and, for mugs whose handle is hidden, the up axis alone; with a
box part (model.refiner_box), the inverse of each crop's jitter and the object's metric size (box_targets).

    crops = collect_crops(root, 'real_train', model_cfg, classes, settings)          # tensors, uint8 images
    history = train_refiner(model.pose_refiner, crops, settings, val_crops=..., log=...)
"""

import time
from dataclasses import dataclass

import numpy as np
import torch

from seqpose_core import CLASS_NAMES
from seqpose_core.data.layout import enumerate_scenes
from seqpose_core.data.reader import NocsFrameReader
from seqpose_core.geometry import rotation_error_deg
from seqpose_core.model.pose_refiner import OPTICAL_AXIS, box_targets, object_crops, ray_rotation
from seqpose_core.model.viewpoint import azimuth_bin_terms, azimuth_of
from seqpose_core.train.errors import TrainingError
from seqpose_core.train.logs import write_rows
from seqpose_core.train.targets import symmetric_mask


@dataclass(frozen=True)
class RefinerTrainingSettings:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    frame_stride: int = 3  # every n-th frame of each scene
    copies: int = 2  # crops per object, each with its own shift and zoom
    shift: float = 0.1  # crop sides, uniform in [-shift, shift] per axis
    zoom: tuple = (0.85, 1.2)
    seed: int = 0


def refiner_losses(outputs, allocentric, symmetric, boxes=None):
    """L1 of the up axis over every crop; cross-entropy of the azimuth bin + L1 of its residual over the
    crops whose azimuth is defined (not `symmetric`, e.g. a mug with its handle hidden); with `boxes`
    (box_targets), L1 of the centre offset, the log scale and the log size. -> dict of scalars."""
    up, logits, residual = outputs['up'], outputs['logits'], outputs['residual']
    target_up = allocentric[:, :, 1]
    losses = {'loss_up': (up - target_up).abs().sum(-1).mean()}
    asymmetric = ~symmetric
    if asymmetric.any():
        ray = up.new_tensor(OPTICAL_AXIS).expand_as(target_up[asymmetric])
        azimuth = azimuth_of(allocentric[asymmetric][:, :, 0], target_up[asymmetric], ray)
        classification, offset = azimuth_bin_terms(logits[asymmetric], residual[asymmetric], azimuth)
        losses['loss_azimuth'] = (classification + offset) / int(asymmetric.sum())
    else:
        losses['loss_azimuth'] = logits.sum() * 0.0
    if boxes is not None:
        losses['loss_centre'] = (outputs['centre_offset'] - boxes['centre_offset']).abs().sum(-1).mean()
        losses['loss_scale'] = (outputs['log_scale'] - boxes['log_scale']).abs().mean()
        losses['loss_size'] = (outputs['log_size'] - boxes['log_size']).abs().sum(-1).mean()
    return losses


def collect_crops(root, split, model_cfg, classes, settings, jitter=True, progress=True):
    """{'crops' (n, 3, S, S) uint8, 'allocentric' (n, 3, 3), 'class_ids' (n,) long, 'symmetric' (n,) bool,
    'sizes' (n, 3) metres, 'shift' (n, 2), 'zoom' (n,)} of the objects of `classes` (names; the refiner's,
    inference.refiner.classes) in `split` under `root`, cropped as model_cfg's refiner reads them. Without
    `jitter`, one crop per object at its ground-truth box (validation)."""
    unknown = [name for name in classes if name not in CLASS_NAMES]
    if unknown or not classes:
        raise TrainingError(f'refiner classes {list(classes)}: expected one or more of {list(CLASS_NAMES)}')
    class_ids = [CLASS_NAMES.index(name) + 1 for name in classes]
    reader = NocsFrameReader(root, split)
    prefixes = [prefix for _, frames in enumerate_scenes(root, split) for prefix in frames[:: settings.frame_stride]]
    if not prefixes:
        raise TrainingError(f'{root} ({split}): no frames to crop')
    rng = np.random.default_rng(settings.seed)
    copies = settings.copies if jitter else 1
    parts = {'crops': [], 'allocentric': [], 'class_ids': [], 'symmetric': [], 'sizes': [], 'shift': [], 'zoom': []}
    if progress:
        from tqdm import tqdm

        prefixes = tqdm(prefixes, desc=f'crops {split}', unit='frame', mininterval=5)
    for prefix in prefixes:
        frame = reader.read(prefix)
        annotation = frame.annotation
        keep = np.isin(annotation.class_ids, class_ids)
        if not keep.any():
            continue
        centres = torch.as_tensor(annotation.translations[keep], dtype=torch.float32)
        sizes = torch.as_tensor(annotation.sizes[keep], dtype=torch.float32)
        rotations = torch.as_tensor(annotation.rotations[keep], dtype=torch.float32)
        image = torch.from_numpy(frame.color).permute(2, 0, 1).float()
        K = torch.as_tensor(frame.K, dtype=torch.float32)
        allocentric = ray_rotation(centres).transpose(1, 2) @ rotations
        symmetric = symmetric_mask(
            torch.as_tensor(annotation.class_ids[keep]), torch.as_tensor(annotation.handle_visibility[keep])
        )
        for _ in range(copies):
            shift, zoom = torch.zeros(len(centres), 2), torch.ones(len(centres))
            if jitter:
                shift = torch.from_numpy(rng.uniform(-settings.shift, settings.shift, (len(centres), 2))).float()
                zoom = torch.from_numpy(rng.uniform(*settings.zoom, len(centres))).float()
            crops = object_crops(
                image, K, centres, sizes, model_cfg.refiner_crop_size, model_cfg.refiner_crop_margin, shift, zoom
            )
            parts['crops'].append(crops.round().clamp(0, 255).to(torch.uint8))
            parts['allocentric'].append(allocentric)
            parts['class_ids'].append(torch.as_tensor(annotation.class_ids[keep], dtype=torch.long))
            parts['symmetric'].append(symmetric)
            parts['sizes'].append(sizes)
            parts['shift'].append(shift)
            parts['zoom'].append(zoom)
    if not parts['crops']:
        raise TrainingError(f'{root} ({split}): no object of {list(classes)} to crop')
    return {key: torch.cat(values) for key, values in parts.items()}


def _box_targets(refiner, crops, part):
    if not refiner.box:
        return None
    return box_targets(crops['sizes'][part], crops['shift'][part], crops['zoom'][part])


@torch.no_grad()
def validate(refiner, crops, batch_size=256):
    """{class name: {'within_10deg', 'median_deg'[, 'depth_error', 'centre_error']}} of the refiner's allocentric
    rotations and, with a box part, the median relative depth error and centre error (crop sides) it decodes
    from ground-truth boxes."""
    was_training = refiner.training
    refiner.eval()
    errors, depth_errors, centre_errors = [], [], []
    for start in range(0, len(crops['class_ids']), batch_size):
        part = slice(start, start + batch_size)
        outputs = refiner(crops['crops'][part], crops['class_ids'][part])
        errors.append(
            rotation_error_deg(
                refiner.rotations(outputs), crops['allocentric'][part], symmetric=crops['symmetric'][part]
            )
        )
        targets = _box_targets(refiner, crops, part)
        if targets is not None:
            # relative depth error: the depth scales as size / projected diagonal (model.pose_refiner.decode_boxes)
            predicted = torch.exp(outputs['log_size']).norm(dim=-1) / torch.exp(outputs['log_scale'])
            true = torch.exp(targets['log_size']).norm(dim=-1) / torch.exp(targets['log_scale'])
            depth_errors.append((predicted / true - 1).abs())
            centre_errors.append((outputs['centre_offset'] - targets['centre_offset']).norm(dim=-1))
    refiner.train(was_training)
    errors = torch.cat(errors)
    if depth_errors:
        depth_errors, centre_errors = torch.cat(depth_errors), torch.cat(centre_errors)
    summary = {}
    for class_id in crops['class_ids'].unique().tolist():
        mine = crops['class_ids'] == class_id
        row = {'within_10deg': float((errors[mine] < 10).float().mean()), 'median_deg': float(errors[mine].median())}
        if len(depth_errors):
            row['depth_error'] = float(depth_errors[mine].median())
            row['centre_error'] = float(centre_errors[mine].median())
        summary[CLASS_NAMES[class_id - 1]] = row
    return summary


def train_refiner(refiner, crops, settings, val_crops=None, log_path=None, progress=True):
    """AdamW with a one-cycle schedule over `settings.epochs` passes of `crops`; validation per epoch on
    `val_crops` (ground-truth boxes), a CSV row per epoch at `log_path`. Returns the rows."""
    count = len(crops['class_ids'])
    steps_per_epoch = count // settings.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f'{count} crops: fewer than one batch of {settings.batch_size}')
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(refiner.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, pct_start=0.05, total_steps=settings.epochs * steps_per_epoch
    )
    refiner.train()
    rows, started = [], time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=settings.epochs * steps_per_epoch, desc='refiner', unit='step', dynamic_ncols=True)
    for epoch in range(settings.epochs):
        order = torch.randperm(count, generator=generator)
        totals = {}
        for step in range(steps_per_epoch):
            batch = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            outputs = refiner(crops['crops'][batch], crops['class_ids'][batch])
            losses = refiner_losses(
                outputs, crops['allocentric'][batch], crops['symmetric'][batch], _box_targets(refiner, crops, batch)
            )
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) / steps_per_epoch
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f'{float(loss):.3f}', refresh=False)
        row = {'epoch': epoch + 1, 'minutes': (time.perf_counter() - started) / 60, **totals}
        if val_crops is not None:
            for name, figures in validate(refiner, val_crops).items():
                row.update({f'{name}_{key}': value for key, value in figures.items()})
        rows.append(row)
        if bar is not None:
            bar.write(
                'epoch {epoch}: '.format(**row)
                + '  '.join(f'{key} {value:.3f}' for key, value in row.items() if key != 'epoch')
            )
        if log_path is not None:
            write_rows(log_path, rows)
    if bar is not None:
        bar.close()
    refiner.eval()
    return rows
