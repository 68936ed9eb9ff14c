"""The sparse query memory queue (section 3.3 a, eq. 5): top-K queries of each of the last N frames.

A `MemoryQueue` is a small immutable value: the model takes one and returns a new one, so a training loop can
keep or drop it freely. Everything it holds is detached (no gradient flows into the past, as StreamPETR).

Per stored frame (newest first): query features (B, K, C), reference points (B, K, 3) in metres in the camera
frame of the frame being processed, confidence scores (B, K), the accumulated camera motion from the frame
where the entries were produced to the current one (B, 4, 4), and the age in frames.
"""

from dataclasses import dataclass, replace
from typing import Optional

import torch

from seqpose_core.geometry import transform_points


@dataclass(frozen=True)
class MemoryFrame:
    features: torch.Tensor  # (B, K, C) decoder output queries of that frame
    reference_points: torch.Tensor  # (B, K, 3) metres, in the CURRENT camera frame (carried by camera motion)
    scores: torch.Tensor  # (B, K) max class probability
    motion: torch.Tensor  # (B, 4, 4) T_current_from_that_frame (identity when unknown)
    age: int  # frames since it was stored (0 right after the push, 1 at the next frame)


class MemoryQueue:
    """Holds at most `num_frames` frames of `top_k` entries each; the oldest frame is forgotten first."""

    def __init__(self, num_frames, top_k, batch_size=None, frames=()):
        if num_frames < 0 or top_k < 1:
            raise ValueError(f'memory needs num_frames >= 0 and top_k >= 1, got {num_frames}, {top_k}')
        self.num_frames = int(num_frames)
        self.top_k = int(top_k)
        self.batch_size = batch_size
        self.frames = tuple(frames)[: self.num_frames]  # newest first

    # --- inspection ---------------------------------------------------------------------------------------
    def __len__(self):
        """Number of stored query entries per sample (<= num_frames * top_k)."""
        return sum(frame.features.shape[1] for frame in self.frames)

    def is_empty(self):
        return not self.frames

    def __repr__(self):
        return (
            f'MemoryQueue(frames={len(self.frames)}/{self.num_frames}, top_k={self.top_k}, '
            f'entries={len(self)}, batch_size={self.batch_size})'
        )

    def _cat(self, frames, attribute):
        return torch.cat([getattr(f, attribute) for f in frames], dim=1) if frames else None

    @property
    def features(self):
        """(B, n, C) all stored queries, newest frame first (None when empty)."""
        return self._cat(self.frames, 'features')

    @property
    def reference_points(self):
        """(B, n, 3) metres, current camera frame."""
        return self._cat(self.frames, 'reference_points')

    @property
    def scores(self):
        return self._cat(self.frames, 'scores')

    @property
    def ages(self):
        """(B, n) float ages in frames."""
        if not self.frames:
            return None
        return torch.cat([torch.full_like(f.scores, float(f.age)) for f in self.frames], dim=1)

    @property
    def motions(self):
        """(B, n, 4, 4) per-entry T_current_from_origin."""
        if not self.frames:
            return None
        return torch.cat([f.motion[:, None].expand(-1, f.features.shape[1], -1, -1) for f in self.frames], dim=1)

    def latest(self):
        """The newest stored frame (its queries are propagated as current queries, eq. 6), or None."""
        return self.frames[0] if self.frames else None

    def older(self):
        """A queue of the frames before the newest (the temporal attention's extra keys), maybe empty."""
        return MemoryQueue(self.num_frames, self.top_k, self.batch_size, self.frames[1:])

    # --- updates (each returns a new queue) ---------------------------------------------------------------
    def cleared(self):
        return MemoryQueue(self.num_frames, self.top_k, self.batch_size)

    def advanced(self, camera_motion=None):
        """The queue as seen from the next frame: ages + 1 and, when the camera motion T_cur_from_prev
        (B, 4, 4) is known, reference points carried into the new camera frame; otherwise left as they are."""
        frames = []
        for frame in self.frames:
            if camera_motion is not None:
                motion = camera_motion.to(frame.reference_points)
                frame = replace(
                    frame,
                    reference_points=transform_points(motion, frame.reference_points),
                    motion=motion @ frame.motion,
                )
            frames.append(replace(frame, age=frame.age + 1))
        return MemoryQueue(self.num_frames, self.top_k, self.batch_size, frames)

    def pushed(self, features, reference_points, scores):
        """Keep the top-K (by score) of this frame's queries; the oldest frame drops out beyond N frames.

        features (B, Q, C), reference_points (B, Q, 3) metres, scores (B, Q)."""
        if self.num_frames == 0:
            return self
        batch, num_queries = scores.shape
        if self.batch_size is not None and batch != self.batch_size:
            raise ValueError(f'memory was made for batch size {self.batch_size}, got {batch}')
        k = min(self.top_k, num_queries)
        index = scores.detach().topk(k, dim=1).indices  # (B, K)
        frame = MemoryFrame(
            features=features.detach().gather(1, index[..., None].expand(-1, -1, features.shape[-1])),
            reference_points=reference_points.detach().gather(1, index[..., None].expand(-1, -1, 3)),
            scores=scores.detach().gather(1, index),
            motion=torch.eye(4, dtype=reference_points.dtype, device=reference_points.device).expand(batch, 4, 4),
            age=0,
        )
        return MemoryQueue(self.num_frames, self.top_k, batch, (frame,) + self.frames)

    def to(self, device):
        frames = [
            MemoryFrame(
                f.features.to(device), f.reference_points.to(device), f.scores.to(device), f.motion.to(device), f.age
            )
            for f in self.frames
        ]
        return MemoryQueue(self.num_frames, self.top_k, self.batch_size, frames)

    def decoder_view(self):
        """What the decoder reads (MemoryView), or None when empty."""
        previous = self.latest()
        if previous is None:
            return None
        batch, count = previous.scores.shape
        rest = self.older()
        return MemoryView(
            previous.features,
            previous.reference_points,
            previous.motion[:, None].expand(-1, count, -1, -1),
            torch.full((batch, count), float(previous.age), device=previous.scores.device, dtype=previous.scores.dtype),
            None,
            *(
                (rest.features, rest.reference_points, rest.motions, rest.ages, None)
                if not rest.is_empty()
                else (None,) * 5
            ),
        )

    def check_batch(self, batch):
        if self.frames and self.frames[0].features.shape[0] != batch:
            raise ValueError(
                f'memory holds batch size {self.frames[0].features.shape[0]}, images have {batch}; '
                'start a new memory (model.init_memory(batch)) at a sequence start'
            )


@dataclass(frozen=True)
class MemoryView:
    """The memory as the decoder reads it (eq. 6 and 7): the newest frame's entries, propagated as current queries,
    and the older frames' entries, extra keys of the temporal attention. A padding mask (True: no entry there) is
    None when every entry is real (MemoryQueue); PaddedMemory has fixed-size slots and masks the empty ones."""

    previous_features: torch.Tensor  # (B, K, C)
    previous_reference_points: torch.Tensor  # (B, K, 3) metres, current camera frame
    previous_motions: torch.Tensor  # (B, K, 4, 4) T_current_from_origin
    previous_ages: torch.Tensor  # (B, K) frames
    previous_padding: Optional[torch.Tensor]  # (B, K) bool or None
    rest_features: Optional[torch.Tensor]  # (B, M, C) or None (no older frames)
    rest_reference_points: Optional[torch.Tensor]  # (B, M, 3)
    rest_motions: Optional[torch.Tensor]  # (B, M, 4, 4)
    rest_ages: Optional[torch.Tensor]  # (B, M)
    rest_padding: Optional[torch.Tensor]  # (B, M) bool or None


PADDED_MEMORY_FIELDS = ('features', 'reference_points', 'scores', 'motions', 'ages', 'valid')


@dataclass(frozen=True)
class PaddedMemory:
    """The memory queue as fixed-shape tensors, what an exported graph (model.graph.FrameGraph) takes and returns:
    N frame slots of K entries each, newest first; `valid` marks the slots that hold a frame. The same arithmetic as
    MemoryQueue on the valid slots; the empty ones are masked out of the attention and never pushed from."""

    features: torch.Tensor  # (B, N, K, C)
    reference_points: torch.Tensor  # (B, N, K, 3) metres, in the camera frame of the frame being processed
    scores: torch.Tensor  # (B, N, K)
    motions: torch.Tensor  # (B, N, 4, 4) T_current_from_that_frame
    ages: torch.Tensor  # (B, N) frames
    valid: torch.Tensor  # (B, N) bool

    @classmethod
    def empty(cls, batch, num_frames, top_k, channels, device=None, dtype=torch.float32):
        eye = torch.eye(4, device=device, dtype=dtype)
        return cls(
            torch.zeros(batch, num_frames, top_k, channels, device=device, dtype=dtype),
            torch.zeros(batch, num_frames, top_k, 3, device=device, dtype=dtype),
            torch.zeros(batch, num_frames, top_k, device=device, dtype=dtype),
            eye.expand(batch, num_frames, 4, 4).clone(),
            torch.zeros(batch, num_frames, device=device, dtype=dtype),
            torch.zeros(batch, num_frames, device=device, dtype=torch.bool),
        )

    @classmethod
    def from_queue(cls, queue: MemoryQueue, batch, channels, device=None, dtype=torch.float32):
        """The slots of a MemoryQueue (its frames first, the rest empty)."""
        padded = cls.empty(batch, queue.num_frames, queue.top_k, channels, device, dtype)
        tensors = {name: getattr(padded, name).clone() for name in PADDED_MEMORY_FIELDS}
        for slot, frame in enumerate(queue.frames):
            count = frame.features.shape[1]
            tensors['features'][:, slot, :count] = frame.features
            tensors['reference_points'][:, slot, :count] = frame.reference_points
            tensors['scores'][:, slot, :count] = frame.scores
            tensors['motions'][:, slot] = frame.motion
            tensors['ages'][:, slot] = float(frame.age)
            tensors['valid'][:, slot] = True
        return cls(**tensors)

    def tensors(self):
        return tuple(getattr(self, name) for name in PADDED_MEMORY_FIELDS)

    def to(self, device):
        return PaddedMemory(*(tensor.to(device) for tensor in self.tensors()))

    def check_batch(self, batch):
        if self.scores.shape[0] != batch:
            raise ValueError(f'memory holds batch size {self.scores.shape[0]}, images have {batch}')

    def query_valid(self, num_queries):
        """(B, num_queries) bool: which of a forward's queries were real; the first K were propagated from slot 0
        (eq. 6) and exist only when it holds a frame."""
        batch, _, top_k = self.scores.shape
        current = torch.ones(batch, num_queries - top_k, dtype=torch.bool, device=self.valid.device)
        return torch.cat([self.valid[:, :1].expand(batch, top_k), current], dim=1)

    def advanced(self, camera_motion=None):
        """As MemoryQueue.advanced: ages + 1 and, with the camera motion (B, 4, 4), the points carried along."""
        if camera_motion is None:
            return replace(self, ages=self.ages + 1)
        motion = camera_motion.to(self.reference_points)[:, None]  # (B, 1, 4, 4)
        return replace(
            self,
            reference_points=transform_points(motion, self.reference_points),
            motions=motion @ self.motions,
            ages=self.ages + 1,
        )

    def pushed(self, features, reference_points, scores):
        """As MemoryQueue.pushed: the top-K of this forward's real queries (query_valid) in the newest slot, the
        oldest slot dropped. features (B, Q, C), reference_points (B, Q, 3), scores (B, Q)."""
        batch, num_frames, top_k = self.scores.shape
        query_valid = self.query_valid(scores.shape[1])
        ranking = torch.where(query_valid, scores, torch.full_like(scores, -1.0))
        index = ranking.detach().topk(top_k, dim=1).indices  # (B, K)
        newest = (
            features.detach().gather(1, index[..., None].expand(-1, -1, features.shape[-1])),
            reference_points.detach().gather(1, index[..., None].expand(-1, -1, 3)),
            scores.detach().gather(1, index),
            torch.eye(4, dtype=self.motions.dtype, device=self.motions.device).expand(batch, 4, 4),
            torch.zeros(batch, dtype=self.ages.dtype, device=self.ages.device),
            torch.ones(batch, dtype=torch.bool, device=self.valid.device),
        )
        # (B, N, ...): the new frame first, then the N - 1 newest of the old ones
        return PaddedMemory(
            *(torch.cat([new[:, None], old[:, : num_frames - 1]], dim=1) for new, old in zip(newest, self.tensors()))
        )

    def decoder_view(self):
        """What the decoder reads (MemoryView): slot 0 propagated, slots 1.. as keys, empty slots padded."""
        batch, num_frames, top_k = self.scores.shape
        slot_padding = ~self.valid[..., None].expand(batch, num_frames, top_k)  # (B, N, K)
        rest = (None,) * 5
        if num_frames > 1:
            rest = (
                self.features[:, 1:].flatten(1, 2),  # (B, (N-1)*K, C)
                self.reference_points[:, 1:].flatten(1, 2),
                self.motions[:, 1:, None].expand(-1, -1, top_k, -1, -1).flatten(1, 2),
                self.ages[:, 1:, None].expand(-1, -1, top_k).flatten(1, 2),
                slot_padding[:, 1:].flatten(1, 2),
            )
        return MemoryView(
            self.features[:, 0],
            self.reference_points[:, 0],
            self.motions[:, 0, None].expand(-1, top_k, -1, -1),
            self.ages[:, 0, None].expand(-1, top_k),
            slot_padding[:, 0],
            *rest,
        )
