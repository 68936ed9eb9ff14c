"""Where the batches come from: one endless, resumable stream per kind of step, and the fixed interleaving of
the two kinds in 'mixed' mode (`step_kind`).

- 'video': a `BatchStream` of clips (each step a clip batch, the memory starting empty), or with
  train.streaming a `SequenceStream` (each step one frame of B sequences, the memory carried across steps);
- 'single': a `BatchStream` of frames.
"""

import math

import torch
from torch.utils.data import DataLoader

from seqpose_core.data import NocsClipDataset, NocsFormatError, NocsFrameDataset, collate_clips
from seqpose_core.train.camera_motion import withheld_sequences, withhold_camera_motion
from seqpose_core.train.errors import TrainingError
from seqpose_core.train.sampling import ResumableDistributedSampler, SeededSamples

TRAINING_MODES = ('video', 'single', 'mixed')


def collate_frames(samples):
    """Single-frame batch: the clip collation of B one-frame clips, first (only) time step."""
    return collate_clips([[sample] for sample in samples])[0]


def build_datasets(cfg, data_root, mode):
    """{'video': clip dataset, 'single': frame dataset} as the mode needs (seqpose_core.data readers)."""
    datasets = {}
    try:
        if mode in ('video', 'mixed') and cfg.train.streaming:
            # consecutive, non-overlapping sequences: each frame of a scene is streamed once per epoch
            length = cfg.train.stream_length
            datasets['video'] = NocsClipDataset(
                data_root, cfg.train.video_split, clip_length=length, clip_stride=length, data_cfg=cfg.data, train=True
            )
        elif mode in ('video', 'mixed'):
            datasets['video'] = NocsClipDataset(
                data_root, cfg.train.video_split, clip_length=cfg.data.clip_length, data_cfg=cfg.data, train=True
            )
        if mode in ('single', 'mixed'):
            datasets['single'] = NocsFrameDataset(data_root, cfg.train.single_split, data_cfg=cfg.data, train=True)
    except NocsFormatError as error:
        raise TrainingError(f'training data (train.mode={mode}): {error}') from None
    for kind, dataset in datasets.items():
        if len(dataset) == 0:
            split = cfg.train.video_split if kind == 'video' else cfg.train.single_split
            what = (
                'frames'
                if kind == 'single'
                else (
                    f'sequences of train.stream_length={cfg.train.stream_length} frames'
                    if cfg.train.streaming
                    else 'clips'
                )
            )
            raise TrainingError(f'no {what} in split {split!r} under {data_root} (train.mode={mode})')
    return datasets


class BatchStream:
    """Endless batches of one dataset, epoch after epoch, whose position (epoch, batches consumed) can be saved
    and restored; each process reads its DistributedSampler share."""

    def __init__(self, dataset, collate_fn, batch_size, seed, group, num_workers=0, camera_motion_dropout=0.0):
        if len(dataset) < batch_size * group.world_size:
            raise TrainingError(
                f'{len(dataset)} samples cannot fill one batch of {batch_size} per process '
                f'x {group.world_size} processes: lower train.batch_size'
            )
        self.dataset = SeededSamples(dataset, seed)
        self.sampler = ResumableDistributedSampler(
            self.dataset, num_replicas=group.world_size, rank=group.rank, shuffle=True, seed=seed, drop_last=True
        )
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        # clip batches: the sequences whose camera motion is withheld are drawn per (seed, rank, epoch, batch)
        self.camera_motion_dropout = camera_motion_dropout
        self.dropout_seed = seed * 1000 + group.rank
        self.batches_per_epoch = self.sampler.num_samples // batch_size
        self.epoch = 0
        self.position = 0  # batches consumed in the current epoch
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
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            drop_last=True,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            generator=generator,
        )
        self._iterator = iter(loader)

    def next(self):
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._iterator = self.epoch + 1, 0, None
        if self._iterator is None:
            self._start_iterator()
        batch = next(self._iterator)
        self.position += 1
        if self.camera_motion_dropout > 0:
            withheld = withheld_sequences(
                self.dropout_seed, self.epoch, self.position, self.batch_size, self.camera_motion_dropout
            )
            batch = withhold_camera_motion(batch, withheld)
        return batch


class SequenceStream:
    """Streaming video batches: each of the B batch slots walks through the consecutive frames of a sequence,
    one frame per step, and all slots start new sequences (drawn from `sequences`, a BatchStream of
    stream_length-frame clips) together. `next()` -> one collated frame batch; its `is_sequence_start` is True
    for every slot at a sequence's first frame, where the trainer resets the memory.

    The position is the sequence batch's and the frames of it consumed: a resume in mid-sequence reads that
    sequence batch again (the same frames and augmentation: they are seeded by position) and continues."""

    def __init__(self, sequences, length):
        self.sequences = sequences
        self.length = length
        self.time = length  # frames of the current sequence batch consumed (length: none left)
        self._current = None  # list over time of collated frame batches

    @property
    def epoch(self):
        return self.sequences.epoch

    @property
    def batches_per_epoch(self):
        return self.sequences.batches_per_epoch * self.length

    def state_dict(self):
        return {'sequences': self.sequences.state_dict(), 'time': self.time}

    def load_state_dict(self, state):
        self.sequences.load_state_dict(state['sequences'])
        self.time = int(state['time'])
        self._current = None
        if self.time < self.length:
            # the sequence batch in progress was the last one read: step back one batch and read it again
            self.sequences.load_state_dict({'epoch': self.sequences.epoch, 'position': self.sequences.position - 1})
            self._current = self.sequences.next()

    def next(self):
        if self._current is None or self.time >= self.length:
            self._current, self.time = self.sequences.next(), 0
        frame = self._current[self.time]
        self.time += 1
        return frame


def build_streams(cfg, data_root, group):
    """{kind: BatchStream} for train.mode; the two kinds draw their data order from different seeds."""
    train_cfg = cfg.train
    streams = {}
    for kind, dataset in build_datasets(cfg, data_root, train_cfg.mode).items():
        if kind == 'single':
            streams[kind] = BatchStream(
                dataset, collate_frames, train_cfg.batch_size, train_cfg.seed + 1, group, train_cfg.num_workers
            )
            continue
        clips = BatchStream(
            dataset,
            collate_clips,
            train_cfg.batch_size,
            train_cfg.seed,
            group,
            train_cfg.num_workers,
            camera_motion_dropout=train_cfg.camera_motion_dropout,
        )
        streams[kind] = SequenceStream(clips, train_cfg.stream_length) if train_cfg.streaming else clips
    return streams


def step_kind(step, mode, single_frame_ratio):
    """'video' or 'single' for optimiser step `step`: a deterministic interleaving in 'mixed' mode."""
    if mode != 'mixed':
        return mode
    return 'single' if math.floor((step + 1) * single_frame_ratio) > math.floor(step * single_frame_ratio) else 'video'


def schedule_length(train_cfg, streams):
    """Optimiser steps of the whole schedule: train.max_steps, else `epochs` passes over the primary data
    (the clips, or every frame of the streamed sequences, in video / mixed mode; the frames in single mode)."""
    if train_cfg.max_steps > 0:
        return int(train_cfg.max_steps)
    if train_cfg.mode == 'single':
        return train_cfg.epochs * streams['single'].batches_per_epoch
    video_steps = train_cfg.epochs * streams['video'].batches_per_epoch
    if train_cfg.mode == 'mixed':
        return int(math.ceil(video_steps / max(1.0 - train_cfg.single_frame_ratio, 1e-6)))
    return video_steps
