"""A second opinion on what each published box holds (inference.crop_scoring): the refiner's crop scorer gives
the probabilities of background and of each class for the crop of the full-resolution image around the box, and
a detection's score s becomes s^(1 - w) p^w, p the probability of its class, w the setting `weight` (as the second
stage of a two-stage detector). The score before stays in extras['decoder_score'].

It sees only the detections the decoder scored at or above the threshold: it can lower or raise a kept box,
not bring back one the decoder dropped (its cost grows with the boxes it reads; measured that way).

The crop goes through the model's second stage (model.crop_scorer.SecondStage: the refiner's CNN, its pooled
features to the scorer's head), one pass for refiner and scorer. With `before_refiner` the runner puts this stage
before the refiner (stages.pipeline.build_stages): the crop is then around the decoder's box, its refiner outputs
ride on the detection (extras[FIRST_LOOK]) as the refiner's first pass, and the refiner reads only the boxes that
stay above the threshold. Off by default: the scorer learned on refined boxes, and reads decoder boxes worse
(docs/experiments/2026-12-08-deploy.md).
"""

import numpy as np
import torch

from seqpose_core.model.pose_refiner import object_crops
from seqpose_core.stages import Stage
from seqpose_core.stages.refiner import FIRST_LOOK


class CropScoringStage(Stage):
    name = 'crop_scoring'
    changes_scores = True

    def __init__(self, model, inference):
        # crops, class ids -> the refiner's outputs and the class logits, one CNN pass (model.crop_scorer.SecondStage)
        second_stage = getattr(model, 'second_stage', None)
        self.second_stage = second_stage if second_stage is not None and second_stage.scores else None
        self.settings = inference.crop_scoring
        refiner = inference.refiner
        # scoring first: the refiner's first pass is this crop, kept on the detections it will refine
        self.first_look_classes = refiner.classes if self.settings.before_refiner and refiner.rotation else ()
        if self.second_stage is not None:
            self.crop_size, self.crop_margin = model.cfg.refiner_crop_size, model.cfg.refiner_crop_margin

    def apply(self, detections, context, state):
        if self.second_stage is None or not self.settings.enabled or not detections:
            return detections, state
        device = context.device
        as_tensor = lambda values: torch.as_tensor(values, dtype=torch.float32, device=device)  # noqa: E731
        crops = object_crops(
            context.image_float,
            as_tensor(context.K),
            as_tensor(np.stack([d.translation for d in detections])),
            as_tensor(np.stack([d.size for d in detections])),
            self.crop_size,
            self.crop_margin,
        )
        outputs = self.second_stage(crops, torch.as_tensor([d.class_id for d in detections], device=device))
        probabilities = torch.softmax(outputs['class_logits'].float(), dim=-1).cpu().numpy()  # (n, 1 + classes)
        weight = self.settings.weight
        for index, (detection, row) in enumerate(zip(detections, probabilities)):
            detection.extras['decoder_score'] = detection.score
            detection.score = float(detection.score ** (1 - weight) * float(row[detection.class_id]) ** weight)
            if detection.class_name in self.first_look_classes:
                detection.extras[FIRST_LOOK] = {name: value[index] for name, value in outputs.items()}
        return detections, state
