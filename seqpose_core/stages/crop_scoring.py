"""A second opinion on what each published box holds (inference.crop_scoring): the refiner's crop scorer gives
the probabilities of background and of each class for the crop of the full-resolution image around the box, and
a detection's score s becomes s^(1 - w) p^w, p the probability of its class, w the setting `weight` (as the second
stage of a two-stage detector). The score before stays in extras['decoder_score'].

It sees only the detections the decoder scored at or above the threshold: it can lower or raise a kept box,
not bring back one the decoder dropped (its cost grows with the boxes it reads; measured that way).
"""

import numpy as np
import torch

from seqpose_core.model.crop_scorer import crop_class_probabilities


class CropScoringStage:
    name = 'crop_scoring'
    changes_scores = True

    def __init__(self, model, inference):
        self.classifier = getattr(model, 'crop_classifier', None)  # crops -> class logits, or None
        self.settings = inference.crop_scoring
        if self.classifier is not None:
            self.crop_size, self.crop_margin = model.cfg.refiner_crop_size, model.cfg.refiner_crop_margin

    def initial_state(self):
        return None

    def reset(self, state):
        return None

    def apply(self, detections, context, state):
        if self.classifier is None or not self.settings.enabled or not detections:
            return detections, state
        # detections the refiner already read a crop of carry its class logits (crop_scoring.reuse_refiner_crop)
        reused = [d for d in detections if 'crop_class_logits' in d.extras]
        probabilities = {id(d): _softmax(d.extras.pop('crop_class_logits')) for d in reused}
        cropped = [d for d in detections if id(d) not in probabilities]
        if cropped:
            as_tensor = lambda values: torch.as_tensor(values, dtype=torch.float32, device=context.device)  # noqa: E731
            rows = (
                crop_class_probabilities(
                    self.classifier,
                    context.image_float,
                    as_tensor(context.K),
                    as_tensor(np.stack([d.translation for d in cropped])),
                    as_tensor(np.stack([d.size for d in cropped])),
                    self.crop_size,
                    self.crop_margin,
                )
                .cpu()
                .numpy()
            )  # (n, 1 + classes)
            probabilities.update((id(d), row) for d, row in zip(cropped, rows))
        weight = self.settings.weight
        for detection in detections:
            row = probabilities[id(detection)]
            detection.extras['decoder_score'] = detection.score
            detection.score = float(detection.score ** (1 - weight) * float(row[detection.class_id]) ** weight)
        return detections, state


def _softmax(logits):
    exponentials = np.exp(logits - logits.max())
    return exponentials / exponentials.sum()
