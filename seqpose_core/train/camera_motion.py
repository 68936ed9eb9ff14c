"""What camera motion the model sees in training.

A deployed camera may have odometry (the node's `odom_frame`) or not, so one checkpoint must work both ways:
`train.camera_motion_dropout` of the video sequences (clips, or streamed sequences) are trained with their
camera motion withheld, and wherever a frame's `has_camera_motion` is False (a sequence start, frames with no
object in common, a withheld sequence) the model is not given its `camera_motion`.

The model takes one (B, 4, 4) motion for the whole batch, or None. A batch where no frame has a motion gets
None; in a batch with some, the others get the identity, which the memory treats exactly as "no motion"
(`MemoryQueue.advanced`: reference points and accumulated motions left as they are).
"""

import numpy as np
import torch

# Mixed into the draw's seed so that it never coincides with another draw from the same (seed, epoch, batch)
_DROPOUT_STREAM = 0x6D6F74


def withheld_sequences(seed, epoch, position, batch_size, fraction):
    """(B,) bool: which sequences of batch `position` of `epoch` train without camera motion. A draw of its own
    per batch (never from the global RNG), so a resumed run withholds the same sequences."""
    if fraction <= 0:
        return torch.zeros(batch_size, dtype=torch.bool)
    rng = np.random.default_rng([int(seed), _DROPOUT_STREAM, int(epoch), int(position)])
    return torch.from_numpy(rng.random(batch_size) < fraction)


def withhold_camera_motion(frames, withheld):
    """Collated frame batches of B sequences (list over time) with the camera motion of the `withheld` (B,)
    sequences removed: `has_camera_motion` False and `camera_motion` identity, as for unknown motion."""
    if not bool(withheld.any()):
        return frames
    for frame in frames:
        frame['has_camera_motion'] = frame['has_camera_motion'] & ~withheld
        frame['camera_motion'] = torch.where(
            withheld[:, None, None], torch.eye(4).expand_as(frame['camera_motion']), frame['camera_motion']
        )
    return frames


def model_camera_motion(frame, device):
    """The `camera_motion` argument for the model from a collated frame batch: T_cur_from_prev (B, 4, 4) with
    identity rows where `has_camera_motion` is False, or None when no frame of the batch has one."""
    known = frame.get('has_camera_motion')
    if known is None or frame.get('camera_motion') is None or not bool(known.any()):
        return None
    known = known.to(device)
    motion = frame['camera_motion'].to(device).float()
    identity = torch.eye(4, device=device, dtype=motion.dtype).expand_as(motion)
    return torch.where(known[:, None, None], motion, identity)
