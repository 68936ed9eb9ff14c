"""9-DoF pose head (eq. 9): translation (3), 6D rotation (6), metric size (3) and 6 class logits per query.

The translation is the refined reference point (DETR3D box refinement): the head predicts a delta in the
inverse-sigmoid space of the normalised position range, so the next decoder layer samples around the better
estimate. Sizes are exp(log-residual) around a category-agnostic prior (positive by construction).
Class logits are sigmoid/focal style (no "no object" logit) with the bias set to a 0.01 prior.

With `azimuth_bins` > 0 the rotation's x column comes from the azimuth classifier (model.viewpoint) instead of
the regressed 6D: the regressor's y column is kept (the up axis, which L1 learns well) and the x column is the
best bin's azimuth about it, measured from the viewing ray to the predicted centre. The regressor still has its
x outputs, unused then, so a checkpoint of either kind warm-starts the other.
"""

import math

import torch
from torch import nn

from seqpose_core import NUM_CLASSES
from seqpose_core.model.viewpoint import AzimuthBins, x_column_of

IDENTITY_ROTATION_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # first two columns of I
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

    def __init__(self, hidden_dim, size_prior=(0.15, 0.15, 0.15), num_classes=NUM_CLASSES, azimuth_bins=0):
        super().__init__()
        self.azimuth_bins = AzimuthBins(hidden_dim, azimuth_bins) if azimuth_bins else None
        self.classifier = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, num_classes),
        )
        self.regressor = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, 3 + 6 + 3),
        )  # [reference delta, rotation 6D, log size residual]
        self.register_buffer(
            'log_size_prior', torch.log(torch.as_tensor(size_prior, dtype=torch.float32)), persistent=False
        )
        nn.init.constant_(self.classifier[-1].bias, -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR))
        # Start from "no move, identity rotation, prior size" so early training is well conditioned.
        last = self.regressor[-1]
        nn.init.normal_(last.weight, std=1e-3)
        with torch.no_grad():
            last.bias.zero_()
            last.bias[3:9] = torch.tensor(IDENTITY_ROTATION_6D)

    def forward(self, queries, reference_normalized, position_range: PositionRange):
        regression = self.regressor(queries)  # (B, Q, 12)
        refined = torch.sigmoid(inverse_sigmoid(reference_normalized) + regression[..., 0:3])  # (B, Q, 3)
        translation = position_range.denormalize(refined)  # (B, Q, 3) metres
        outputs = {
            'pred_logits': self.classifier(queries),  # (B, Q, 6)
            'pred_translation': translation,
            'pred_rotation6d': regression[..., 3:9],  # (B, Q, 6)
            'pred_size': torch.exp(self.log_size_prior + regression[..., 9:12].clamp(max=5.0)),  # (B, Q, 3) m
            'reference_normalized': refined,
        }
        if self.azimuth_bins is not None:
            logits, residual = self.azimuth_bins(queries)  # (B, Q, n) each
            up = regression[..., 6:9]
            # the basis only places the angle: the up axis and the centre are trained by their own terms
            x_column = x_column_of(
                self.azimuth_bins.azimuth(logits.detach(), residual), up.detach(), translation.detach()
            )  # (B, Q, 3)
            outputs['pred_rotation6d'] = torch.cat([x_column, up], dim=-1)
            outputs['pred_azimuth_logits'] = logits
            outputs['pred_azimuth_residual'] = residual
        return outputs
