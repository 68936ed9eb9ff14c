"""The training loop: video clips (memory carried through the clip), single-frame batches, or both mixed.

One optimiser step consumes one batch:
- video: B clips of T consecutive frames. The memory starts empty at the clip's first frame and is carried to
  the next frame (the model returns it detached, as StreamPETR's streaming training does); the losses of every
  frame are averaged. Because no gradient flows between frames, each frame is back-propagated as soon as its
  loss is known (the same gradient as summing first, at a fraction of the activation memory).
- single: B independent frames, no memory (CAMERA-style data).
- mixed: a fixed, resumable interleaving; a fraction `single_frame_ratio` of the steps are single-frame.

Reproducibility: the data order is a per-epoch shuffle seeded by (seed, epoch) (`sampling`), each sample's
augmentation is seeded by (seed, epoch, index), and checkpoints hold every RNG state and the data position, so
`--resume` continues bit-for-bit (on CPU; GPU kernels may be non-deterministic).
"""
import contextlib
import csv
import math
import os
import time
from pathlib import Path

import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from seqpose_core.config import SeqPoseConfig, from_dict
from seqpose_core.train.checkpoint import (capture_rng_state, load_training_checkpoint, restore_rng_state,
                                           save_training_checkpoint)
from seqpose_core.train.losses import DENSE_TERMS, PROPOSAL_TERMS, QUERY_TERMS, build_criterion
from seqpose_core.train.optim import build_optimizer, build_scheduler
from seqpose_core.train.sampling import ResumableDistributedSampler, SeededSamples
from seqpose_core.train.targets import batch_targets

CHECKPOINT_NAME = 'checkpoint.pt'     # the latest training checkpoint (what --resume reads)
MODEL_NAME = 'model.pt'               # model + config only, written at the end (what `seqpose eval` ships)
LOG_NAME = 'train_log.csv'
VAL_LOG_NAME = 'val_log.csv'
MODES = ('video', 'single', 'mixed')
AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
LOG_TERMS = tuple(f'loss_{term}' for term in QUERY_TERMS + DENSE_TERMS + PROPOSAL_TERMS)
VAL_KEYS = ('IoU25', 'IoU50', 'IoU75', '10deg10cm', '10deg5cm', '5deg5cm', '10deg', '10cm')


class TrainingError(RuntimeError):
    pass


# --- processes ---------------------------------------------------------------------------------------------------

class ProcessGroup:
    """torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) or a single process."""

    def __init__(self, device_request=None):
        self.world_size = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        self.local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        if device_request:
            device = torch.device(device_request)
            if device.type == 'cuda' and device.index is None:
                device = torch.device('cuda', self.local_rank)
        else:
            device = torch.device('cuda', self.local_rank) if torch.cuda.is_available() else torch.device('cpu')
        if device.type == 'cuda':
            if not torch.cuda.is_available():
                raise TrainingError(f'--device {device_request}: CUDA is not available on this machine')
            torch.cuda.set_device(device)
        self.device = device
        self.distributed = self.world_size > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo')

    @property
    def is_main(self):
        return self.rank == 0

    def barrier(self):
        if self.distributed:
            dist.barrier()

    def gather(self, obj):
        if not self.distributed:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def close(self):
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


# --- data --------------------------------------------------------------------------------------------------------

def collate_frames(samples):
    """Single-frame batch: the clip collation of B one-frame clips, first (only) time step."""
    from seqpose_core.data import collate_clips
    return collate_clips([[sample] for sample in samples])[0]


def build_datasets(cfg, data_root, mode):
    """{'video': clip dataset, 'single': frame dataset} as the mode needs (seqpose_core.data readers)."""
    from seqpose_core.data import NocsClipDataset, NocsFormatError, NocsFrameDataset
    datasets = {}
    try:
        if mode in ('video', 'mixed'):
            datasets['video'] = NocsClipDataset(data_root, cfg.train.video_split, clip_length=cfg.data.clip_length,
                                                data_cfg=cfg.data, train=True)
        if mode in ('single', 'mixed'):
            datasets['single'] = NocsFrameDataset(data_root, cfg.train.single_split, data_cfg=cfg.data, train=True)
    except NocsFormatError as error:
        raise TrainingError(f'training data (train.mode={mode}): {error}') from None
    for kind, dataset in datasets.items():
        if len(dataset) == 0:
            split = cfg.train.video_split if kind == 'video' else cfg.train.single_split
            raise TrainingError(f'no {"clips" if kind == "video" else "frames"} in split {split!r} under '
                                f'{data_root} (train.mode={mode})')
    return datasets


class BatchStream:
    """Endless batches of one dataset, epoch after epoch, whose position (epoch, batches consumed) can be saved
    and restored; each process reads its DistributedSampler share."""

    def __init__(self, dataset, collate_fn, batch_size, seed, group, num_workers=0):
        if len(dataset) < batch_size * group.world_size:
            raise TrainingError(f'{len(dataset)} samples cannot fill one batch of {batch_size} per process '
                                f'x {group.world_size} processes: lower train.batch_size')
        self.dataset = SeededSamples(dataset, seed)
        self.sampler = ResumableDistributedSampler(self.dataset, num_replicas=group.world_size, rank=group.rank,
                                                   shuffle=True, seed=seed, drop_last=True)
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.batches_per_epoch = self.sampler.num_samples // batch_size
        self.epoch = 0
        self.position = 0            # batches consumed in the current epoch
        self._iterator = None

    def state_dict(self):
        return {'epoch': self.epoch, 'position': self.position}

    def load_state_dict(self, state):
        self.epoch, self.position = int(state['epoch']), int(state['position'])
        self._iterator = None

    def _start_iterator(self):
        self.sampler.set_position(self.epoch, self.position * self.batch_size)
        # Its own generator: creating an iterator then never draws from the global torch RNG.
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
                            collate_fn=self.collate_fn, num_workers=self.num_workers, generator=generator)
        self._iterator = iter(loader)

    def next(self):
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._iterator = self.epoch + 1, 0, None
        if self._iterator is None:
            self._start_iterator()
        batch = next(self._iterator)
        self.position += 1
        return batch


def step_kind(step, mode, single_frame_ratio):
    """'video' or 'single' for optimiser step `step`: a deterministic interleaving in 'mixed' mode."""
    if mode != 'mixed':
        return mode
    return 'single' if math.floor((step + 1) * single_frame_ratio) > math.floor(step * single_frame_ratio) else 'video'


def schedule_length(train_cfg, streams):
    """Optimiser steps of the whole schedule: train.max_steps, else `epochs` passes over the primary data
    (the clips in video / mixed mode, the frames in single mode)."""
    if train_cfg.max_steps > 0:
        return int(train_cfg.max_steps)
    if train_cfg.mode == 'single':
        return train_cfg.epochs * streams['single'].batches_per_epoch
    video_steps = train_cfg.epochs * streams['video'].batches_per_epoch
    if train_cfg.mode == 'mixed':
        return int(math.ceil(video_steps / max(1.0 - train_cfg.single_frame_ratio, 1e-6)))
    return video_steps


# --- logging -----------------------------------------------------------------------------------------------------

class CsvLog:
    """Append-only CSV with a fixed header; on resume, rows after the checkpoint's step are dropped (they will
    be produced again)."""

    def __init__(self, path, columns, resume_step=None):
        self.path = Path(path)
        self.columns = list(columns)
        if resume_step is not None and self.path.exists():
            with open(self.path, newline='', encoding='utf-8') as stream:
                rows = [row for row in csv.DictReader(stream) if int(row['step']) <= resume_step]
            self._rewrite(rows)
        elif not self.path.exists() or resume_step is None:
            self._rewrite([])

    def _rewrite(self, rows):
        tmp = self.path.with_suffix(f'.tmp{os.getpid()}')
        with open(tmp, 'w', newline='', encoding='utf-8') as stream:
            writer = csv.DictWriter(stream, fieldnames=self.columns, extrasaction='ignore')
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def write(self, row):
        with open(self.path, 'a', newline='', encoding='utf-8') as stream:
            csv.DictWriter(stream, fieldnames=self.columns, extrasaction='ignore').writerow(
                {key: (f'{value:.6g}' if isinstance(value, float) else value) for key, value in row.items()})


def open_tensorboard(run_dir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:        # optional: TensorBoard is not a dependency
        return None
    return SummaryWriter(log_dir=str(Path(run_dir) / 'tensorboard'))


# --- the trainer -------------------------------------------------------------------------------------------------

class Trainer:
    def __init__(self, cfg: SeqPoseConfig, data_root, run_dir, *, resume=False, stop_step=None, device=None,
                 val_data=None, progress=True):
        self.run_dir = Path(run_dir)
        self.data_root = Path(data_root)
        self.val_data = Path(val_data) if val_data else self.data_root
        self.stop_step = stop_step
        self.progress = progress
        self.group = ProcessGroup(device)
        self.device = self.group.device

        checkpoint = None
        if resume:
            checkpoint_path = self.run_dir / CHECKPOINT_NAME
            if not checkpoint_path.exists():
                raise TrainingError(f'--resume: no {CHECKPOINT_NAME} in {self.run_dir}')
            try:
                checkpoint = load_training_checkpoint(checkpoint_path)
            except ValueError as error:
                raise TrainingError(f'--resume: {error}') from None
            # The run continues with the config it started with.
            cfg = from_dict(SeqPoseConfig, checkpoint['config'], f'{checkpoint_path}:config')
        self.cfg = cfg
        train_cfg = cfg.train
        if train_cfg.mode not in MODES:
            raise TrainingError(f'train.mode must be one of {MODES}, got {train_cfg.mode!r}')
        if train_cfg.mode == 'mixed' and not 0.0 < train_cfg.single_frame_ratio < 1.0:
            raise TrainingError('train.mode=mixed needs 0 < train.single_frame_ratio < 1')
        if train_cfg.amp not in ('none', *AMP_DTYPES):
            raise TrainingError(f"train.amp must be 'none', 'bf16' or 'fp16', got {train_cfg.amp!r}")

        if train_cfg.val_every > 0:
            # fail now rather than after the first val_every steps
            from seqpose_core.data import NocsFormatError, resolve_split
            try:
                resolve_split(self.val_data, train_cfg.val_split)
            except NocsFormatError as error:
                raise TrainingError(f'validation every {train_cfg.val_every} steps: {error}; pass --val-data DIR '
                                    'or set train.val_every=0') from None

        if train_cfg.num_threads > 0:
            torch.set_num_threads(train_cfg.num_threads)

        seed = train_cfg.seed + self.group.rank
        torch.manual_seed(seed)      # model initialisation (identical across ranks: DDP broadcasts rank 0's)

        from seqpose_core.model import build_model
        self.model = build_model(cfg.model).to(self.device)
        self.model.train()
        self.ddp_model = (DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == 'cuda'
                                                  else None, find_unused_parameters=True)
                          if self.group.distributed else self.model)
        self.criterion = build_criterion(cfg)

        datasets = build_datasets(cfg, self.data_root, train_cfg.mode)
        self.streams = {
            kind: BatchStream(dataset, collate_frames if kind == 'single' else _collate_clips,
                              train_cfg.batch_size, train_cfg.seed + (0 if kind == 'video' else 1), self.group,
                              train_cfg.num_workers)
            for kind, dataset in datasets.items()}
        self.total_steps = schedule_length(train_cfg, self.streams)
        if self.total_steps <= 0:
            raise TrainingError('the schedule has no steps: check train.epochs / train.max_steps and the data')

        self.optimizer = build_optimizer(self.model, train_cfg)
        self.scheduler = build_scheduler(self.optimizer, train_cfg, self.total_steps)
        self.use_amp = self.device.type == 'cuda' and train_cfg.amp != 'none'
        self.amp_dtype = AMP_DTYPES.get(train_cfg.amp)
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.use_amp and train_cfg.amp == 'fp16')
        self.step = 0

        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            torch.manual_seed(seed)  # the training stream starts from the seed, whatever the model init drew

        if self.group.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            resume_step = self.step if checkpoint is not None else None
            self.log = CsvLog(self.run_dir / LOG_NAME,
                              ['step', 'epoch', 'kind', 'lr', 'loss', *LOG_TERMS, 'loss_aux', 'grad_norm',
                               'seconds_per_step'], resume_step)
            self.val_log = CsvLog(self.run_dir / VAL_LOG_NAME, ['step', *VAL_KEYS], resume_step)
            self.tensorboard = open_tensorboard(self.run_dir)
            from seqpose_core.config import save_config
            save_config(self.cfg, self.run_dir / 'config.yaml')
        self.group.barrier()

    # --- checkpoints -------------------------------------------------------------------------------------------

    def _restore(self, checkpoint):
        self.model.load_state_dict(checkpoint['model'])
        checkpoint = checkpoint['training']
        self.optimizer.load_state_dict(checkpoint['optimizer'])
        self.scheduler.load_state_dict(checkpoint['scheduler'])
        self.scaler.load_state_dict(checkpoint['scaler'])
        self.step = int(checkpoint['step'])
        for kind, state in checkpoint['data_position'].items():
            if kind in self.streams:
                self.streams[kind].load_state_dict(state)
        rng_states = checkpoint['rng']
        if len(rng_states) != self.group.world_size:
            raise TrainingError(f'the checkpoint was written by {len(rng_states)} process(es); resuming with '
                                f'{self.group.world_size} would not continue the same run')
        restore_rng_state(rng_states[self.group.rank])

    def save_checkpoint(self):
        rng_states = self.group.gather(capture_rng_state())
        if self.group.is_main:
            save_training_checkpoint(self.run_dir / CHECKPOINT_NAME, self.model, self.cfg, {
                'optimizer': self.optimizer.state_dict(),
                'scheduler': self.scheduler.state_dict(),
                'scaler': self.scaler.state_dict(),
                'step': self.step,
                'total_steps': self.total_steps,
                'data_position': {kind: stream.state_dict() for kind, stream in self.streams.items()},
                'rng': rng_states,
            })
        self.group.barrier()

    def save_model(self):
        """The model alone (+ config), the form `seqpose eval --checkpoint` and the shipped default use."""
        if self.group.is_main:
            from seqpose_core.model import save_checkpoint
            save_checkpoint(self.run_dir / MODEL_NAME, self.model, self.cfg)

    # --- one step ----------------------------------------------------------------------------------------------

    def _autocast(self):
        if self.use_amp:
            return torch.autocast(device_type='cuda', dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def train_step(self, kind, batch):
        """One optimiser step on a clip batch (list over time) or a frame batch; returns loss values."""
        frames = batch if kind == 'video' else [batch]
        self.optimizer.zero_grad(set_to_none=True)
        batch_size = frames[0]['image'].shape[0]
        memory = self.model.init_memory(batch_size) if kind == 'video' else None
        totals = {}
        for time_index, frame in enumerate(frames):
            images = frame['image'].to(self.device, non_blocking=True)
            intrinsics = frame['K'].to(self.device).float()
            camera_motion = None
            if kind == 'video' and time_index > 0 and frame.get('camera_motion') is not None:
                camera_motion = frame['camera_motion'].to(self.device).float()
            last = time_index == len(frames) - 1
            sync = contextlib.nullcontext() if last or not self.group.distributed else self.ddp_model.no_sync()
            with sync:
                with self._autocast():
                    outputs, memory = self.ddp_model(images, intrinsics, memory=memory, camera_motion=camera_motion,
                                                     dense=True)
                losses = self.criterion(outputs, batch_targets(frame, self.device), frame)
                total = self.criterion.weighted_total(losses)
                if not torch.isfinite(total):
                    bad = sorted(name for name, value in losses.items() if not torch.isfinite(value))
                    raise TrainingError(f'step {self.step}: non-finite loss ({", ".join(bad)}); lower train.lr '
                                        'or check the data')
                self.scaler.scale(total / len(frames)).backward()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) / len(frames)
            totals['loss'] = totals.get('loss', 0.0) + float(total.detach()) / len(frames)
        self.scaler.unscale_(self.optimizer)
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.train.grad_clip_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, self.cfg.train.grad_clip_norm)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in parameters]))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        totals['loss_aux'] = sum(self.criterion.weight_dict[name] * value for name, value in totals.items()
                                 if '_aux' in name)
        totals['grad_norm'] = float(grad_norm)
        return totals

    # --- the loop ----------------------------------------------------------------------------------------------

    def head_lr(self):
        """The current lr of the head groups (the backbone and sampling groups run at their multiples)."""
        for group in self.optimizer.param_groups:
            if group.get('name', '').startswith('head/'):
                return group['lr']
        return self.optimizer.param_groups[-1]['lr']

    def validate(self):
        """NOCS metrics of the current model on the validation data (through `seqpose eval`'s machinery)."""
        from seqpose_core.commands.evaluate import evaluate_model
        rng_state = capture_rng_state()   # validation must not shift the training's random stream
        self.model.eval()
        try:
            out = self.run_dir / 'val' / f'step_{self.step:07d}'
            summary = evaluate_model(self.model, self.cfg, self.val_data, self.cfg.train.val_split, 'mf', out,
                                     max_scenes=self.cfg.train.val_max_scenes or None, overlays=0, progress=False,
                                     device=str(self.device))
        finally:
            self.model.train()
            restore_rng_state(rng_state)
        mean = summary['mean']
        self.val_log.write({'step': self.step, **{key: float(mean.get(key, float('nan'))) for key in VAL_KEYS}})
        if self.tensorboard is not None:
            for key in VAL_KEYS:
                if key in mean:
                    self.tensorboard.add_scalar(f'val/{key}', mean[key], self.step)
        return mean

    def run(self):
        train_cfg = self.cfg.train
        end = self.total_steps if self.stop_step is None else min(self.stop_step, self.total_steps)
        bar = None
        if self.group.is_main and self.progress:
            from tqdm import tqdm
            bar = tqdm(total=end, initial=self.step, desc='train', unit='step', dynamic_ncols=True)
        window, window_steps, window_start = {}, 0, time.perf_counter()
        try:
            while self.step < end:
                kind = step_kind(self.step, train_cfg.mode, train_cfg.single_frame_ratio)
                batch = self.streams[kind].next()
                lr = self.head_lr()
                values = self.train_step(kind, batch)
                self.step += 1
                for name, value in values.items():
                    window[name] = window.get(name, 0.0) + value
                window_steps += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f'{values["loss"]:.3f}', lr=f'{lr:.2e}', refresh=False)
                if self.group.is_main and (self.step % train_cfg.log_every == 0 or self.step == end):
                    elapsed = time.perf_counter() - window_start
                    row = {name: value / window_steps for name, value in window.items()}
                    row.update(step=self.step, kind=kind, lr=lr, seconds_per_step=elapsed / window_steps,
                               epoch=self.streams['single' if train_cfg.mode == 'single' else 'video'].epoch)
                    self.log.write(row)
                    if self.tensorboard is not None:
                        for name in ('loss', *LOG_TERMS, 'loss_aux', 'grad_norm'):
                            if name in row:
                                self.tensorboard.add_scalar(f'train/{name}', row[name], self.step)
                        self.tensorboard.add_scalar('train/lr', lr, self.step)
                    window, window_steps, window_start = {}, 0, time.perf_counter()
                if self.step % train_cfg.checkpoint_every == 0 or self.step == end:
                    self.save_checkpoint()
                if train_cfg.val_every > 0 and (self.step % train_cfg.val_every == 0 or self.step == self.total_steps):
                    if self.group.is_main:
                        metrics = self.validate()
                        if bar is not None:
                            bar.write(f'step {self.step}: ' + '  '.join(
                                f'{key} {metrics[key]:.1f}' for key in VAL_KEYS if key in metrics))
                    self.group.barrier()
        finally:
            if bar is not None:
                bar.close()
            if self.group.is_main and self.tensorboard is not None:
                self.tensorboard.close()
        if self.step >= self.total_steps:
            self.save_model()
        self.group.barrier()
        return self.step


def _collate_clips(clips):
    from seqpose_core.data import collate_clips
    return collate_clips(clips)
