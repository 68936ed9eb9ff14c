"""Hungarian matching between the queries of one frame and its ground-truth objects (DETR / DETR3D).

The cost of assigning query q to object g is
    match_cost_class       * focal classification cost of q for g's class
  + match_cost_translation * |t_q - t_g|_1        (metres)
  + match_cost_rotation    * |r6d_q - r6d_g|_1    (closest symmetric GT rotation for symmetric objects)
  + match_cost_size        * |s_q - s_g|_1        (metres)
and scipy's linear_sum_assignment gives the minimum-cost one-to-one assignment per frame.
"""

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from seqpose_core.train.targets import closest_symmetric_rotation6d


def focal_class_cost(logits, labels, alpha=0.25, gamma=2.0):
    """(Q, C) logits, (n,) labels 0..C-1 -> (Q, n): the focal loss of calling q positive for labels[g] minus
    that of calling it negative (Deformable DETR), so only the relative evidence for the class counts."""
    prob = logits.sigmoid()
    negative = (1 - alpha) * prob.pow(gamma) * -(1 - prob + 1e-8).log()
    positive = alpha * (1 - prob).pow(gamma) * -(prob + 1e-8).log()
    return positive[:, labels] - negative[:, labels]


TRANSLATION_SPACES = ('ray', 'metric')


def ray_coordinates(points):
    """(..., 3) camera-frame points -> (..., 3) viewing direction (x/z, y/z) and log depth."""
    depth = points[..., 2:3].clamp_min(1e-3)
    return torch.cat([points[..., :2] / depth, depth.log()], dim=-1)


def translation_cost(predicted, target, space):
    """(Q, 3) predicted and (n, 3) GT translations -> (Q, n) L1 distances in `space` ('ray' or 'metric')."""
    if space == 'ray':
        return torch.cdist(ray_coordinates(predicted), ray_coordinates(target), p=1)
    return torch.cdist(predicted, target, p=1)


class HungarianMatcher(nn.Module):
    def __init__(
        self,
        cost_class=2.0,
        cost_translation=5.0,
        cost_rotation=1.0,
        cost_size=2.0,
        focal_alpha=0.25,
        focal_gamma=2.0,
        translation_space='ray',
    ):
        super().__init__()
        if translation_space not in TRANSLATION_SPACES:
            raise ValueError(f'match_translation_space {translation_space!r}: expected one of {TRANSLATION_SPACES}')
        self.translation_space = translation_space
        if min(cost_class, cost_translation, cost_rotation, cost_size) < 0:
            raise ValueError('matching costs must be >= 0')
        if cost_class == cost_translation == cost_rotation == cost_size == 0:
            raise ValueError('all matching costs are 0: the assignment would be arbitrary')
        self.cost_class = cost_class
        self.cost_translation = cost_translation
        self.cost_rotation = cost_rotation
        self.cost_size = cost_size
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @classmethod
    def from_config(cls, train_cfg):
        return cls(
            train_cfg.match_cost_class,
            train_cfg.match_cost_translation,
            train_cfg.match_cost_rotation,
            train_cfg.match_cost_size,
            train_cfg.focal_alpha,
            train_cfg.focal_gamma,
            train_cfg.match_translation_space,
        )

    def cost_matrix(self, outputs, index, targets):
        """(Q, n) assignment costs of frame `index` of `outputs` to its `targets` dict."""
        logits = outputs['pred_logits'][index].float()
        translation = outputs['pred_translation'][index].float()
        rotation6d = outputs['pred_rotation6d'][index].float()
        size = outputs['pred_size'][index].float()
        cost = self.cost_class * focal_class_cost(logits, targets['labels'], self.focal_alpha, self.focal_gamma)
        cost = cost + self.cost_translation * translation_cost(
            translation, targets['translation'].float(), self.translation_space
        )
        cost = cost + self.cost_size * torch.cdist(size, targets['size'].float(), p=1)
        # (Q, 1, 6) against (1, n, 6): each pair gets its own symmetric target
        rotation_target = closest_symmetric_rotation6d(
            rotation6d[:, None], targets['rotation6d'][None].float(), targets['symmetric'][None]
        )
        cost = cost + self.cost_rotation * (rotation6d[:, None] - rotation_target).abs().sum(-1)
        return cost

    @torch.no_grad()
    def forward(self, outputs, targets):
        """outputs: the model's dict (pred_* (B, Q, ...)); targets: B dicts (`targets.frame_targets`).
        Returns B pairs (query_indices, target_indices) of int64 tensors, sorted by query index."""
        matches = []
        for index, frame_targets in enumerate(targets):
            if len(frame_targets['labels']) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                matches.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(outputs, index, frame_targets).cpu()
            if not torch.isfinite(cost).all():
                raise FloatingPointError('non-finite matching cost: the model produced NaN/inf predictions')
            query_indices, target_indices = linear_sum_assignment(cost.numpy())
            matches.append(
                (
                    torch.as_tensor(query_indices, dtype=torch.int64),
                    torch.as_tensor(np.asarray(target_indices), dtype=torch.int64),
                )
            )
        return matches
