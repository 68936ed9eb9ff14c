"""The stages in the order the runner applies them, and what each may read of the frame (the contract:
seqpose_core.stages)."""

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from seqpose_core.stages.covariance import CovarianceStage
from seqpose_core.stages.crop_scoring import CropScoringStage
from seqpose_core.stages.refiner import RefinerStage
from seqpose_core.stages.support_plane import SupportPlaneStage
from seqpose_core.stages.tracks import TrackStage
from seqpose_core.stages.world_fusion import WorldFusionStage

# in the order the runner applies them
STAGES = (
    RefinerStage,  # a second look at each detection's rotation (and box) in a full-resolution crop
    CropScoringStage,  # a second opinion on what each box holds, fused into its score
    TrackStage,  # track ids; in video mode scores that remember
    SupportPlaneStage,  # objects standing on one surface share its up
    # video with camera motion: each track's centre from its rays across frames, its rotation the mode of the
    # views' (after the support plane: the views it fuses are levelled, and what it publishes stays so)
    WorldFusionStage,
    CovarianceStage,  # the pose covariance of what is published: the model's measured error (last)
)


@dataclass
class FrameContext:
    """What a stage may read of the frame being processed."""

    image_rgb: np.ndarray  # (H, W, 3) uint8, the camera's full-resolution image
    K: np.ndarray  # (3, 3) intrinsics of image_rgb
    # (4, 4) T_current_from_previous since the previous processed frame of this sequence (odometry); None:
    # unknown, or the first frame of a sequence
    camera_motion: Optional[np.ndarray]
    mode: str  # 'video' or 'single'
    device: torch.device

    @functools.cached_property
    def image_float(self):
        """(3, H, W) float 0..255 on the device: made once per frame for every stage that crops the image."""
        return torch.as_tensor(self.image_rgb, device=self.device).permute(2, 0, 1).float()


def build_stages(model, inference):
    """The stages of `model` under the settings `inference` (an InferenceConfig), in order: STAGES, with the crop
    scorer before the refiner under crop_scoring.before_refiner (score the decoder boxes, refine what stays)."""
    order = list(STAGES)
    if inference.crop_scoring.before_refiner:
        order.remove(CropScoringStage)
        order.insert(order.index(RefinerStage), CropScoringStage)
    return tuple(stage(model, inference) for stage in order)
