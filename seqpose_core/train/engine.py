"""The training loop: video (clips, or streamed sequences), single-frame batches, or both mixed.

One optimiser step consumes one batch:
- video, clips: B clips of T consecutive frames. The memory starts empty at the clip's first frame and is
  carried to the next frame (the model returns it detached); the losses of every frame are averaged. Because
  no gradient flows between frames, each frame is back-propagated as soon as its loss is known (the same
  gradient as summing first, at a fraction of the activation memory).
- video, streaming (train.streaming, StreamPETR): one frame of each of B long sequences; the memory the model
  returned at the previous step is carried into this one, as at inference, and reset where the sequences
  start (`streams.SequenceStream`).
- single: B independent frames, no memory (CAMERA-style data).
- mixed: a fixed, resumable interleaving; a fraction `single_frame_ratio` of the steps are single-frame.

Camera motion reaches the model only where the frame has one and it is not withheld (`camera_motion`).

`build_trainer` builds the parts (process group, model, criterion, batch streams, optimiser, logs) and restores
them from the run's checkpoint on --resume; `Trainer` runs the steps.

Reproducibility: the data order is a per-epoch shuffle seeded by (seed, epoch) (`sampling`), each sample's
augmentation is seeded by (seed, epoch, index), and checkpoints hold every RNG state and the data position, so
`--resume` continues bit-for-bit (on CPU; GPU kernels may be non-deterministic).
"""

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from seqpose_core.config import SeqPoseConfig, from_dict, save_config
from seqpose_core.model import build_model, save_checkpoint
from seqpose_core.model.checkpoint import (
    WeightsError,
    load_checkpoint,
    load_state_growing,
    model_config_from_checkpoint,
)
from seqpose_core.train.camera_motion import model_camera_motion
from seqpose_core.train.distributed import ProcessGroup, wrap_model
from seqpose_core.train.errors import TrainingError
from seqpose_core.train.frozen import freeze_modules, set_training_mode
from seqpose_core.train.logs import VAL_KEYS, RunLogs
from seqpose_core.train.losses import build_criterion
from seqpose_core.train.optim import build_optimizer, build_scheduler
from seqpose_core.train.resume import (
    CHECKPOINT_NAME,
    capture_rng_state,
    load_run_checkpoint,
    memory_from_state,
    memory_state,
    restore_rng_state,
    save_training_checkpoint,
)
from seqpose_core.train.streams import TRAINING_MODES, build_streams, schedule_length, step_kind
from seqpose_core.train.targets import batch_targets
from seqpose_core.train.validation import check_validation_data, validate
from seqpose_core.train.weight_average import WeightAverage

MODEL_NAME = 'model.pt'  # model + config only, written at the end (what `seqpose eval` ships)
LAST_WEIGHTS_NAME = 'model_last.pt'  # with train.ema_decay: the last weights, model.pt being their average
AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def check_train_config(train_cfg):
    if train_cfg.mode not in TRAINING_MODES:
        raise TrainingError(f'train.mode must be one of {TRAINING_MODES}, got {train_cfg.mode!r}')
    if train_cfg.mode == 'mixed' and not 0.0 < train_cfg.single_frame_ratio < 1.0:
        raise TrainingError('train.mode=mixed needs 0 < train.single_frame_ratio < 1')
    if train_cfg.amp not in ('none', *AMP_DTYPES):
        raise TrainingError(f"train.amp must be 'none', 'bf16' or 'fp16', got {train_cfg.amp!r}")
    if train_cfg.streaming and train_cfg.stream_length < 1:
        raise TrainingError(f'train.stream_length must be >= 1, got {train_cfg.stream_length}')
    if not 0.0 <= train_cfg.camera_motion_dropout <= 1.0:
        raise TrainingError(f'train.camera_motion_dropout must be in [0, 1], got {train_cfg.camera_motion_dropout}')
    if not 0.0 <= train_cfg.ema_decay < 1.0:
        raise TrainingError(f'train.ema_decay must be in [0, 1) (0: off), got {train_cfg.ema_decay}')


@dataclass
class Precision:
    """Autocast on CUDA when train.amp asks for it, and the gradient scaler fp16 needs."""

    scaler: torch.amp.GradScaler
    dtype: Optional[torch.dtype] = None  # None: full precision

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type='cuda', dtype=self.dtype)


def build_precision(train_cfg, device):
    use_amp = device.type == 'cuda' and train_cfg.amp != 'none'
    scaler = torch.amp.GradScaler('cuda', enabled=use_amp and train_cfg.amp == 'fp16')
    return Precision(scaler, AMP_DTYPES[train_cfg.amp] if use_amp else None)


class Trainer:
    """Runs the optimiser steps of a run from built parts (see `build_trainer`)."""

    def __init__(
        self,
        cfg: SeqPoseConfig,
        group,
        model,
        criterion,
        streams,
        optimizer,
        scheduler,
        precision,
        total_steps,
        run_dir,
        *,
        val_data=None,
        stop_step=None,
        progress=True,
    ):
        self.cfg = cfg
        self.group = group
        self.device = group.device
        self.model = model
        self.ddp_model = wrap_model(model, group)
        self.criterion = criterion
        self.streams = streams
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.precision = precision
        self.total_steps = total_steps
        self.run_dir = Path(run_dir)
        self.val_data = val_data
        self.stop_step = stop_step
        self.progress = progress
        self.logs = None  # RunLogs, main process only (open_logs)
        self.stream_memory = None  # streaming: the memory the last video step returned (MemoryQueue)
        self.step = 0
        # the weights validation and model.pt use: their moving average (train.ema_decay), or the weights
        self.weight_average = WeightAverage(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        # 'proposal' needs proposal queries; a model without them publishes (and ranks by) the query scores
        self.score_fusion = cfg.inference.score_fusion if self.model.has_proposals else 'query'

    # --- checkpoints -------------------------------------------------------------------------------------------

    def restore(self, checkpoint):
        """Continue from a training checkpoint (`resume.load_run_checkpoint`)."""
        self.model.load_state_dict(checkpoint['model'])
        training = checkpoint['training']
        self.optimizer.load_state_dict(training['optimizer'])
        self.scheduler.load_state_dict(training['scheduler'])
        self.precision.scaler.load_state_dict(training['scaler'])
        self.step = int(training['step'])
        for kind, state in training['data_position'].items():
            if kind in self.streams:
                self.streams[kind].load_state_dict(state)
        rng_states = training['rng']
        if len(rng_states) != self.group.world_size:
            raise TrainingError(
                f'the checkpoint was written by {len(rng_states)} process(es); resuming with '
                f'{self.group.world_size} would not continue the same run'
            )
        restore_rng_state(rng_states[self.group.rank])
        memories = training.get('stream_memory')
        if memories is not None and memories[self.group.rank] is not None:
            self.stream_memory = memory_from_state(memories[self.group.rank], self.device)
        if self.weight_average is not None:
            if 'weight_average' not in training:
                raise TrainingError('the checkpoint holds no weight average, but train.ema_decay is set')
            self.weight_average.load_state_dict(training['weight_average'])

    def save_checkpoint(self):
        rng_states = self.group.gather(capture_rng_state())
        optional_state = {}
        if self.weight_average is not None:
            optional_state['weight_average'] = self.weight_average.state_dict()
        if self.cfg.train.streaming:
            # where each process stands in its sequences: the memory is part of the run's state
            optional_state['stream_memory'] = self.group.gather(
                None if self.stream_memory is None else memory_state(self.stream_memory)
            )
        if self.group.is_main:
            save_training_checkpoint(
                self.run_dir / CHECKPOINT_NAME,
                self.model,
                self.cfg,
                {
                    'optimizer': self.optimizer.state_dict(),
                    'scheduler': self.scheduler.state_dict(),
                    'scaler': self.precision.scaler.state_dict(),
                    'step': self.step,
                    'total_steps': self.total_steps,
                    'data_position': {kind: stream.state_dict() for kind, stream in self.streams.items()},
                    'rng': rng_states,
                    **optional_state,
                },
            )
        self.group.barrier()

    def save_model(self):
        """The model alone (+ config), the form `seqpose eval --checkpoint` and the shipped default use: the
        weight average with train.ema_decay (and the last weights beside it), else the weights."""
        if not self.group.is_main:
            return
        if self.weight_average is not None:
            save_checkpoint(self.run_dir / LAST_WEIGHTS_NAME, self.model, self.cfg)
        with self.evaluated_weights():
            save_checkpoint(self.run_dir / MODEL_NAME, self.model, self.cfg)

    def evaluated_weights(self):
        """Inside the block the model holds the weights that are validated and shipped."""
        if self.weight_average is None:
            return contextlib.nullcontext(self.model)
        return self.weight_average.applied(self.model)

    def open_logs(self, resume_step=None):
        """The run folder's logs and config.yaml (main process); rows after `resume_step` are dropped."""
        if self.group.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.logs = RunLogs(self.run_dir, resume_step)
            save_config(self.cfg, self.run_dir / 'config.yaml')
        self.group.barrier()

    # --- one step ----------------------------------------------------------------------------------------------

    def _streamed_memory(self, frame):
        """The memory a streamed frame batch starts from: empty where its sequences start, else the last step's."""
        starts = frame['is_sequence_start']
        if bool(starts.any()) or self.stream_memory is None:
            if not bool(starts.all()):
                raise TrainingError('streamed sequences must start together (the memory resets for the whole batch)')
            return self.model.init_memory(len(starts))
        return self.stream_memory

    def train_step(self, kind, batch):
        """One optimiser step on a clip batch (list over time), a streamed frame batch or a single-frame batch;
        returns loss values."""
        streamed = kind == 'video' and self.cfg.train.streaming
        frames = batch if kind == 'video' and not streamed else [batch]
        self.optimizer.zero_grad(set_to_none=True)
        if streamed:
            memory = self._streamed_memory(batch)
        elif kind == 'video':
            memory = self.model.init_memory(frames[0]['image'].shape[0])
        else:
            memory = None
        totals = {}
        for time_index, frame in enumerate(frames):
            images = frame['image'].to(self.device, non_blocking=True)
            intrinsics = frame['K'].to(self.device).float()
            camera_motion = model_camera_motion(frame, self.device) if memory is not None else None
            last = time_index == len(frames) - 1
            sync = contextlib.nullcontext() if last or not self.group.distributed else self.ddp_model.no_sync()
            with sync:
                with self.precision.autocast():
                    # the memory keeps its top-K by the scores inference publishes, as the runner's memory does
                    outputs, memory = self.ddp_model(
                        images,
                        intrinsics,
                        memory=memory,
                        camera_motion=camera_motion,
                        dense=True,
                        score_fusion=self.score_fusion,
                    )
                losses = self.criterion(outputs, batch_targets(frame, self.device), frame)
                total = self.criterion.weighted_total(losses)
                if not torch.isfinite(total):
                    bad = sorted(name for name, value in losses.items() if not torch.isfinite(value))
                    raise TrainingError(
                        f'step {self.step}: non-finite loss ({", ".join(bad)}); lower train.lr or check the data'
                    )
                self.precision.scaler.scale(total / len(frames)).backward()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) / len(frames)
            totals['loss'] = totals.get('loss', 0.0) + float(total.detach()) / len(frames)
        if streamed:
            self.stream_memory = memory
        totals['grad_norm'] = self._optimizer_step()
        if self.weight_average is not None:
            self.weight_average.update(self.model)
        totals['loss_aux'] = sum(
            self.criterion.weight_dict[name] * value for name, value in totals.items() if '_aux' in name
        )
        return totals

    def _optimizer_step(self):
        """Unscale, clip, step the optimiser and the lr schedule; returns the gradient norm before clipping."""
        scaler = self.precision.scaler
        scaler.unscale_(self.optimizer)
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.train.grad_clip_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, self.cfg.train.grad_clip_norm)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in parameters]))
        scaler.step(self.optimizer)
        scaler.update()
        self.scheduler.step()
        return float(grad_norm)

    # --- the loop ----------------------------------------------------------------------------------------------

    def head_lr(self):
        """The current lr of the head groups (the backbone and sampling groups run at their multiples)."""
        for group in self.optimizer.param_groups:
            if group.get('name', '').startswith('head/'):
                return group['lr']
        return self.optimizer.param_groups[-1]['lr']

    def validate(self):
        """NOCS metrics of the current model on the validation data, logged."""
        out = self.run_dir / 'val' / f'step_{self.step:07d}'
        with self.evaluated_weights():
            metrics = validate(
                self.model,
                self.cfg,
                self.val_data,
                out,
                self.device,
                oracle_camera_motion=self.cfg.train.val_oracle_camera_motion,
            )
        self.logs.write_val(self.step, metrics)
        return metrics

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
                    row.update(
                        step=self.step,
                        kind=kind,
                        lr=lr,
                        seconds_per_step=elapsed / window_steps,
                        epoch=self.streams['single' if train_cfg.mode == 'single' else 'video'].epoch,
                    )
                    self.logs.write_train(row)
                    window, window_steps, window_start = {}, 0, time.perf_counter()
                if self.step % train_cfg.checkpoint_every == 0 or self.step == end:
                    self.save_checkpoint()
                if train_cfg.val_every > 0 and (self.step % train_cfg.val_every == 0 or self.step == self.total_steps):
                    if self.group.is_main:
                        metrics = self.validate()
                        if bar is not None:
                            bar.write(
                                f'step {self.step}: '
                                + '  '.join(f'{key} {metrics[key]:.1f}' for key in VAL_KEYS if key in metrics)
                            )
                    self.group.barrier()
        finally:
            if bar is not None:
                bar.close()
            if self.logs is not None:
                self.logs.close()
        if self.step >= self.total_steps:
            self.save_model()
        self.group.barrier()
        return self.step


def keep_pose_refiner(cfg, init_model_cfg, init_path, announce=True):
    """`cfg` with the pose refiner settings of the warm start's model when it has a refiner and `cfg` none:
    the refiner reads image crops, not the model's features, so it stays valid while the model trains on (its
    tensors get no gradient here), and the continued model.pt keeps it."""
    if init_model_cfg.refiner_width <= 0 or cfg.model.refiner_width > 0:
        return cfg
    settings = {
        f.name: getattr(init_model_cfg, f.name)
        for f in dataclasses.fields(init_model_cfg)
        if f.name.startswith('refiner_')
    }
    if announce:
        print(
            f'train.init_weights: {init_path} has a pose refiner (width {init_model_cfg.refiner_width}); '
            'the continued model keeps it unchanged (retrain it with seqpose train-refiner, its crop scorer '
            'with seqpose train-crop-scorer)'
        )
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **settings))


def build_trainer(
    cfg: SeqPoseConfig, data_root, run_dir, *, resume=False, stop_step=None, device=None, val_data=None, progress=True
):
    """A Trainer for `cfg` on `data_root` writing into `run_dir`; with `resume`, the run in `run_dir` continued
    with its own config (`cfg` is then ignored) from its checkpoint."""
    group = ProcessGroup(device)
    checkpoint = load_run_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        cfg = from_dict(SeqPoseConfig, checkpoint['config'], f'{Path(run_dir) / CHECKPOINT_NAME}:config')
    train_cfg = cfg.train
    check_train_config(train_cfg)
    val_data = Path(val_data) if val_data else Path(data_root)
    check_validation_data(val_data, train_cfg)
    if train_cfg.num_threads > 0:
        torch.set_num_threads(train_cfg.num_threads)

    init_content = None
    if train_cfg.init_weights and checkpoint is None:
        try:
            init_content = load_checkpoint(train_cfg.init_weights)
            cfg = keep_pose_refiner(
                cfg,
                model_config_from_checkpoint(init_content, train_cfg.init_weights),
                train_cfg.init_weights,
                announce=group.is_main,
            )
        except WeightsError as error:
            raise TrainingError(f'train.init_weights: {error}') from None

    seed = train_cfg.seed + group.rank
    torch.manual_seed(seed)  # model initialisation (identical across ranks: DDP broadcasts rank 0's)
    model = build_model(cfg.model)
    if init_content is not None:
        try:
            new_tensors = load_state_growing(
                model, init_content['model'], train_cfg.init_weights, 'model (train.init_weights)'
            )
        except WeightsError as error:
            raise TrainingError(f'train.init_weights: {error}') from None
        if new_tensors and group.is_main:
            print(
                f'train.init_weights: {len(new_tensors)} tensor(s) not in {train_cfg.init_weights} start from '
                f'their initialisation: {", ".join(new_tensors[:8])}{" ..." if len(new_tensors) > 8 else ""}'
            )
    freeze_modules(model, train_cfg.frozen_modules)
    model = model.to(group.device)
    set_training_mode(model, train_cfg.frozen_modules)
    streams = build_streams(cfg, Path(data_root), group)
    total_steps = schedule_length(train_cfg, streams)
    if total_steps <= 0:
        raise TrainingError('the schedule has no steps: check train.epochs / train.max_steps and the data')
    optimizer = build_optimizer(model, train_cfg)
    trainer = Trainer(
        cfg,
        group,
        model,
        build_criterion(cfg),
        streams,
        optimizer,
        build_scheduler(optimizer, train_cfg, total_steps),
        build_precision(train_cfg, group.device),
        total_steps,
        run_dir,
        val_data=val_data,
        stop_step=stop_step,
        progress=progress,
    )
    if checkpoint is not None:
        trainer.restore(checkpoint)
    else:
        torch.manual_seed(seed)  # the training stream starts from the seed, whatever the model init drew
    trainer.open_logs(trainer.step if checkpoint is not None else None)
    return trainer
