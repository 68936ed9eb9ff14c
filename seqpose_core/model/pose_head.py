"""9-DoF pose head (eq. 9): translation (3), 6D rotation (6), metric size (3) and 6 class logits per query.

The translation is the refined reference point (DETR3D box refinement): the head predicts a delta in the
inverse-sigmoid space of the normalised position range, so the next decoder layer samples around the better
estimate. Sizes are exp(log-residual) around a category-agnostic prior (positive by construction).
Class logits are sigmoid/focal style (no "no object" logit) with the bias set to a 0.01 prior.
"""
import math

import torch
from torch import nn

from seqpose_core import NUM_CLASSES

IDENTITY_ROTATION_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)   # first two columns of I
CLASS_PRIOR = 0.01


def inverse_sigmoid(x, eps=1e-5):
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


class PositionRange(nn.Module):
    """Maps metric camera-frame points to [0, 1]^3 of a box (x_min, y_min, z_min, x_max, y_max, z_max)."""

    def __init__(self, position_range):
        super().__init__()
        bounds = torch.as_tensor(position_range, dtype=torch.float32).reshape(2, 3)
        self.register_buffer('low', bounds[0], persistent=False)
        self.register_buffer('extent', bounds[1] - bounds[0], persistent=False)

    def normalize(self, points):
        return (points - self.low) / self.extent

    def denormalize(self, normalized):
        return normalized * self.extent + self.low


class PoseHead(nn.Module):
    """(B, Q, C) queries + (B, Q, 3) normalised references -> predictions of one decoder layer."""

    def __init__(self, hidden_dim, size_prior=(0.15, 0.15, 0.15), num_classes=NUM_CLASSES):
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, num_classes))
        self.regressor = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, 3 + 6 + 3))   # [reference delta, rotation 6D, log size residual]
        self.register_buffer('log_size_prior', torch.log(torch.as_tensor(size_prior, dtype=torch.float32)),
                             persistent=False)
        nn.init.constant_(self.classifier[-1].bias, -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR))
        # Start from "no move, identity rotation, prior size" so early training is well conditioned.
        last = self.regressor[-1]
        nn.init.normal_(last.weight, std=1e-3)
        with torch.no_grad():
            last.bias.zero_()
            last.bias[3:9] = torch.tensor(IDENTITY_ROTATION_6D)

    def forward(self, queries, reference_normalized, position_range: PositionRange):
        regression = self.regressor(queries)                                        # (B, Q, 12)
        refined = torch.sigmoid(inverse_sigmoid(reference_normalized) + regression[..., 0:3])   # (B, Q, 3)
        return {
            'pred_logits': self.classifier(queries),                                # (B, Q, 6)
            'pred_translation': position_range.denormalize(refined),                # (B, Q, 3) metres
            'pred_rotation6d': regression[..., 3:9],                                # (B, Q, 6)
            'pred_size': torch.exp(self.log_size_prior + regression[..., 9:12].clamp(max=5.0)),  # (B, Q, 3) m
            'reference_normalized': refined,
        }
