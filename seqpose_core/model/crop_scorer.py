"""What the crop around a published box holds: background or one of the classes (not in the paper).

A second opinion from the full-resolution crop, as the second stage of a two-stage detector: a small head on the
pose refiner's pooled crop features (model.pose_refiner.PoseRefiner.crop_features), without the class embedding,
so it is an opinion of its own. The runner fuses it into the detection's score
(seqpose_core.stages.crop_scoring); `seqpose train-crop-scorer` trains it on the model's own detections with the
refiner frozen (seqpose_core.train.crop_scorer).
"""

from torch import nn


class CropScorer(nn.Module):
    """(n, F) pooled crop features of the refiner -> (n, 1 + classes) logits: background (0) and the class ids."""

    def __init__(self, feature_width, num_classes=6, hidden=256):
        super().__init__()
        self.head = nn.Sequential(
            nn.Linear(feature_width, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, num_classes + 1)
        )

    def forward(self, features):
        return self.head(features)


class SecondStage(nn.Module):
    """The refiner and, when the model has one, the crop scorer on the same crops, in one pass of the refiner's
    CNN: the refiner's outputs (PoseRefiner) plus 'class_logits' (n, 1 + classes). Called as the refiner is
    (`box`, `num_bins`, `rotations`); no weights of its own (`SeqPose.second_stage`)."""

    def __init__(self, refiner, scorer=None):
        super().__init__()
        self.refiner = refiner
        self.scorer = scorer
        self.box = refiner.box
        self.num_bins = refiner.num_bins

    def forward(self, crops, class_ids):
        outputs = self.refiner(crops, class_ids)
        if self.scorer is not None:
            outputs['class_logits'] = self.scorer(outputs['crop_features'])
        return outputs

    @property
    def scores(self):
        """Whether it gives class logits (the model has a crop scorer)."""
        return self.scorer is not None

    def rotations(self, outputs):
        return self.refiner.rotations(outputs)


def build_crop_scorer(cfg):
    """The crop scorer of a ModelConfig (model.refiner_scoring, on a refiner of model.refiner_width), or None."""
    if cfg.refiner_width <= 0 or not cfg.refiner_scoring:
        return None
    return CropScorer(8 * cfg.refiner_width)
