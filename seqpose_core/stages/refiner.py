"""A second look at each detection (inference.refiner): the model's pose refiner reads a crop of the
full-resolution image around the detection's box and replaces the decoder's rotation of the detections of
`classes`, and of `box_classes` their translation and size too (model.pose_refiner.refine_poses). The
decoder's values stay in extras['decoder_rotation'] / ['decoder_translation'] / ['decoder_size'].

Boxes that moved may now coincide on one object where the decoder had them apart: the stage then suppresses
duplicates again (inference.suppression), as the runner did after the decoder.
"""

import numpy as np
import torch

from seqpose_core.config_schema import ConfigError
from seqpose_core.model.pose_refiner import refine_poses_with_outputs
from seqpose_core.stages import Stage
from seqpose_core.suppression import suppress_duplicates

# extras key: the second stage's outputs on the crop around a detection's decoder box (crop_scoring.before_refiner)
FIRST_LOOK = 'refiner_first_look'


class RefinerStage(Stage):
    name = 'refiner'

    def __init__(self, model, inference):
        # the refiner and the crop scorer in one CNN pass (model.crop_scorer.SecondStage, or an exported graph)
        self.refiner = getattr(model, 'second_stage', None)
        self.settings = inference.refiner
        self.suppression = inference.suppression
        self.max_detections = inference.max_detections
        model_cfg = getattr(model, 'cfg', None)
        if self.refiner is not None:
            self.crop_size, self.crop_margin = model_cfg.refiner_crop_size, model_cfg.refiner_crop_margin
            if self.settings.box_classes and not model_cfg.refiner_box:
                raise ConfigError(
                    f"inference.refiner.box_classes {list(self.settings.box_classes)}: this model's "
                    'refiner does not re-estimate boxes (model.refiner_box false)'
                )

    def apply(self, detections, context, state):
        # the crop scorer's look at the decoder boxes, when it ran first (crop_scoring.before_refiner)
        first_looks = [d.extras.pop(FIRST_LOOK, None) for d in detections]
        if self.refiner is None or not self.settings.rotation:
            return detections, state
        chosen = [(d, look) for d, look in zip(detections, first_looks) if d.class_name in self.settings.classes]
        if not chosen:
            return detections, state
        chosen, looks = [d for d, _ in chosen], [look for _, look in chosen]
        first_outputs = None
        if all(look is not None for look in looks):
            first_outputs = {name: torch.stack([look[name] for look in looks]) for name in looks[0]}
        device = context.device
        boxes = [self.settings.box and d.class_name in self.settings.box_classes for d in chosen]
        as_tensor = lambda values: torch.as_tensor(values, dtype=torch.float32, device=device)  # noqa: E731
        rotations, translations, sizes, _ = refine_poses_with_outputs(
            self.refiner,
            context.image_float,
            as_tensor(context.K),
            torch.as_tensor([d.class_id for d in chosen], device=device),
            as_tensor(np.stack([d.translation for d in chosen])),
            as_tensor(np.stack([d.size for d in chosen])),
            self.crop_size,
            self.crop_margin,
            boxes=torch.as_tensor(boxes, device=device),
            depth_weight=self.settings.depth_weight,
            passes=self.settings.passes,
            first_outputs=first_outputs,
        )
        rotations, translations, sizes = (
            tensor.cpu().numpy().astype(np.float64) for tensor in (rotations, translations, sizes)
        )
        for index, detection in enumerate(chosen):
            detection.extras['decoder_rotation'] = detection.rotation
            detection.rotation = rotations[index]
            if boxes[index]:
                detection.extras['decoder_translation'] = detection.translation
                detection.extras['decoder_size'] = detection.size
                detection.translation, detection.size = translations[index], sizes[index]
        if any(boxes):
            detections = suppress_duplicates(
                detections,
                context.K,
                self.suppression.method,
                self.suppression.iou,
                self.suppression.distance,
                self.max_detections,
            )
        return detections, state
