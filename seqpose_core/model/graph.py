"""The model as graphs of tensors only: what `seqpose export` writes as ONNX and an exported backend runs.

Two graphs, each a thin wrapper that calls the model's own code (so eager and exported arithmetic are one):
- FrameGraph: one frame through the network (encoder .. pose heads), the query memory in and out as fixed-shape
  tensors (model.memory.PaddedMemory: N slots of K entries and a validity flag each, so the first frame, a half
  full memory and a full one are one graph);
- RefinerGraph: the second stage on a batch of crops (n dynamic): the pose refiner and the crop scorer's class
  logits in one pass of its CNN (model.crop_scorer.SecondStage).

Cropping the camera image (model.pose_refiner.object_crops) and decoding the refiner's outputs stay outside the
graphs: they are a few hundred operations on small tensors, and the runner's stages own them.
"""

import torch
from torch import nn

from seqpose_core.model.memory import PADDED_MEMORY_FIELDS, PaddedMemory

FRAME_INPUTS = ('image', 'K', 'camera_motion') + tuple(f'memory_{name}' for name in PADDED_MEMORY_FIELDS)
FRAME_OUTPUTS = ('detection_probabilities', 'pred_translation', 'pred_rotation6d', 'pred_size') + tuple(
    f'next_memory_{name}' for name in PADDED_MEMORY_FIELDS
)
REFINER_INPUTS = ('crops', 'class_ids')
REFINER_OUTPUTS = ('up', 'logits', 'residual', 'centre_offset', 'log_scale', 'log_size')
SCORER_OUTPUTS = ('class_logits',)


class FrameGraph(nn.Module):
    """(image (1, 3, H, W) normalised, K (1, 3, 3) of the input, camera_motion (1, 4, 4) T_current_from_memory
    (identity: unknown), the six PaddedMemory tensors) -> (detection_probabilities (1, K+Q, 6), pred_translation
    (1, K+Q, 3), pred_rotation6d (1, K+Q, 6), pred_size (1, K+Q, 3), the next memory's six tensors).

    The first K queries are the ones propagated from the memory's newest slot: real only when that slot holds a
    frame (PaddedMemory.query_valid), which the caller knows before the call."""

    def __init__(self, model, score_fusion):
        super().__init__()
        model.check_score_fusion(score_fusion)
        self.model = model
        self.score_fusion = score_fusion

    def forward(self, image, K, camera_motion, *memory_tensors):
        memory = PaddedMemory(*memory_tensors)
        outputs, next_memory = self.model(
            image, K, memory=memory, camera_motion=camera_motion, dense=False, score_fusion=self.score_fusion
        )
        predictions = tuple(outputs[name] for name in FRAME_OUTPUTS[:4])
        return predictions + next_memory.tensors()

    def example_inputs(self, input_hw):
        """Inputs of the graph's shapes (for tracing): a blank image, a plausible K, an empty memory."""
        cfg = self.model.cfg
        height, width = input_hw
        K = torch.tensor([[[0.9 * width, 0.0, width / 2], [0.0, 0.9 * width, height / 2], [0.0, 0.0, 1.0]]])
        memory = PaddedMemory.empty(1, cfg.memory_frames, cfg.memory_top_k, cfg.hidden_dim)
        return (torch.zeros(1, 3, height, width), K, torch.eye(4)[None]) + memory.tensors()


class RefinerGraph(nn.Module):
    """(crops (n, 3, S, S) 0..255, class_ids (n,) int64 1..6) -> the second stage's outputs as a tuple
    (`output_names`: the refiner's, without a box part the box ones absent, and the crop scorer's class_logits
    when the model has one: model.crop_scorer.SecondStage)."""

    def __init__(self, second_stage):
        super().__init__()
        self.second_stage = second_stage

    @property
    def output_names(self):
        names = REFINER_OUTPUTS if self.second_stage.box else REFINER_OUTPUTS[:3]
        return names + (SCORER_OUTPUTS if self.second_stage.scorer is not None else ())

    def forward(self, crops, class_ids):
        outputs = self.second_stage(crops, class_ids)
        return tuple(outputs[name] for name in self.output_names)
