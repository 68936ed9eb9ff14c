"""The sparse query memory queue (section 3.3 a, eq. 5): top-K queries of each of the last N frames.

A `MemoryQueue` is a small immutable value: the model takes one and returns a new one, so a training loop can
keep or drop it freely. Everything it holds is detached (no gradient flows into the past, as StreamPETR).

Per stored frame (newest first): query features (B, K, C), reference points (B, K, 3) in metres in the camera
frame of the frame being processed, confidence scores (B, K), the accumulated camera motion from the frame
where the entries were produced to the current one (B, 4, 4), and the age in frames.
"""

from dataclasses import dataclass, replace

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

    def check_batch(self, batch):
        if self.frames and self.frames[0].features.shape[0] != batch:
            raise ValueError(
                f'memory holds batch size {self.frames[0].features.shape[0]}, images have {batch}; '
                'start a new memory (model.init_memory(batch)) at a sequence start'
            )
