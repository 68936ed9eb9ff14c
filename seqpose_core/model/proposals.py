"""Object-centre proposals: queries initialised where the fused features see objects (two-stage query selection).

Not in the paper, whose queries start from learnable anchors only (`proposal_queries: 0`, the default). A query
decoder trained from scratch (no pretrained DINOv2 / Depth-Anything, as the embedded CPU model is) barely moves
its anchors towards objects in a short schedule, while a dense per-pixel head learns in a few hundred steps
(the segmentation loss does). So, as the two-stage Deformable DETR and CenterNet do, a small convolutional head
on one fused level z_l predicts for every cell
    6 class logits (sigmoid, focal loss)            is this cell on an object of class c?
    (du, dv) in cells                               where the object's centre projects, relative to the cell
    log z                                           the depth of that centre (metres)
and the `proposal_queries` highest-scoring cells (local maxima first) become extra queries: the centre
back-projected with the level's intrinsics is the reference point (detached: selection is not differentiable),
the cell's feature (projected) is the content. The decoder then refines them like any other query.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqpose_core import NUM_CLASSES
from seqpose_core.geometry import backproject, project_points, scale_intrinsics
from seqpose_core.model.pose_head import CLASS_PRIOR

INITIAL_DEPTH = 0.9  # metres: table-top scenes; the head's depth starts here


def cell_grid(level_hw, device, dtype=torch.float32):
    """(h*w, 2) (u, v) pixel coordinates of a level's cells in raster order."""
    height, width = level_hw
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype), indexing='ij'
    )
    return torch.stack([u.flatten(), v.flatten()], dim=-1)


def centre_points(centre, K_level, level_hw):
    """(B, h*w, 3) per-cell predictions (du, dv, log z) -> (B, h*w, 3) metric centres in the camera frame."""
    uv = cell_grid(level_hw, centre.device, centre.dtype)[None] + centre[..., 0:2]  # (B, h*w, 2)
    return backproject(uv, centre[..., 2].clamp(max=5.0).exp(), K_level)


def select_cells(scores, level_hw, count):
    """(B, h*w) cell scores -> (B, count) cell indices: local maxima (3x3) by score first, then the rest,
    so each object gets a proposal before any object gets a second one."""
    batch = scores.shape[0]
    grid = scores.view(batch, 1, *level_hw)
    peaks = (grid == F.max_pool2d(grid, 3, stride=1, padding=1)).view(batch, -1)
    rank = scores + peaks.to(scores.dtype)  # scores are in [0, 1]: +1 puts every peak first
    return rank.topk(min(count, scores.shape[1]), dim=1).indices


class ObjectCentreHead(nn.Module):
    """(B, C, h, w) fused level -> class logits (B, h*w, 6) and centre predictions (B, h*w, 3)."""

    def __init__(self, hidden_dim, num_classes=NUM_CLASSES):
        super().__init__()
        self.tower = nn.Sequential(nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(hidden_dim, num_classes, 1)
        self.centre = nn.Conv2d(hidden_dim, 3, 1)
        nn.init.constant_(self.classifier.bias, -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR))
        nn.init.normal_(self.centre.weight, std=1e-3)
        with torch.no_grad():
            self.centre.bias.copy_(torch.tensor([0.0, 0.0, math.log(INITIAL_DEPTH)]))

    def forward(self, level):
        x = self.tower(level)
        logits = self.classifier(x).flatten(2).transpose(1, 2)  # (B, h*w, 6)
        centre = self.centre(x).flatten(2).transpose(1, 2)  # (B, h*w, 3)
        return logits, centre


class ProposalQueries(nn.Module):
    """Fused levels -> `num_proposals` queries (content, metric reference) and the head's dense outputs."""

    def __init__(self, hidden_dim, num_proposals, level_index):
        super().__init__()
        self.num_proposals = num_proposals
        self.level_index = level_index
        self.head = ObjectCentreHead(hidden_dim)
        self.content = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim))

    def forward(self, levels, K, image_hw):
        """Returns content (B, k, C), reference points (B, k, 3) metres (detached) and a dict for the loss:
        proposal_logits (B, h*w, 6), proposal_centre (B, h*w, 3), proposal_level_hw (h, w)."""
        level = levels[self.level_index]  # (B, C, h, w)
        level_hw = tuple(level.shape[-2:])
        logits, centre = self.head(level)
        K_level = scale_intrinsics(K, image_hw, level_hw)
        with torch.no_grad():
            scores = logits.detach().sigmoid().amax(-1)  # (B, h*w)
            cells = select_cells(scores, level_hw, self.num_proposals)  # (B, k)
            points = centre_points(centre.detach(), K_level, level_hw)  # (B, h*w, 3)
            reference = points.gather(1, cells[..., None].expand(-1, -1, 3))
        features = level.flatten(2).transpose(1, 2)  # (B, h*w, C)
        features = features.gather(1, cells[..., None].expand(-1, -1, features.shape[-1]))
        dense = {'proposal_logits': logits, 'proposal_centre': centre, 'proposal_level_hw': level_hw}
        return self.content(features), reference, dense


def centre_evidence(outputs, K, image_hw):
    """(B, Q, 6) class probabilities of the proposal head at the cell under each query's predicted centre.

    outputs: the model's dict (pred_translation (B, Q, 3) metres and the proposal head's proposal_logits /
    proposal_level_hw); K (B, 3, 3) for the network input image_hw. Centres behind the camera or outside the image
    get 0. This is dense evidence the query decoder did not produce itself: multiplying it in (the runner's
    inference.score_fusion 'proposal') ranks a query that sits on an object the dense head sees above one that
    does not, where a decoder trained briefly from scratch scores both alike."""
    level_hw = outputs['proposal_level_hw']
    height, width = level_hw
    probabilities = outputs['proposal_logits'].float().sigmoid()  # (B, h*w, 6)
    maps = probabilities.transpose(1, 2).reshape(probabilities.shape[0], -1, height, width)  # (B, 6, h, w)
    centres = outputs['pred_translation'].float()
    uv = project_points(centres, scale_intrinsics(K.float(), image_hw, level_hw))  # (B, Q, 2) level pixels
    grid = torch.stack([(uv[..., 0] + 0.5) / width, (uv[..., 1] + 0.5) / height], dim=-1) * 2 - 1
    sampled = F.grid_sample(maps, grid[:, :, None], mode='bilinear', padding_mode='zeros', align_corners=False)
    evidence = sampled[..., 0].transpose(1, 2)  # (B, Q, 6)
    return evidence * (centres[..., 2:3] > 1e-3).to(evidence.dtype)
