"""Semantic-geometry fusion (eq. 3) and the dense prediction heads (eq. 4).

z_i = CONV_i(CAT(s_i, g_i)) with a 1x1 convolution per level. In the DPT head each FUSE_i ends by upsampling,
so g_i is twice as fine as s_i (g_3 matches the patch grid, s_3 is half of it); s_i is resized bilinearly to
g_i's grid before the concatenation. z_i has `hidden_dim` channels: it is the key/value of eq. (8).

Dense heads P(z_0, g_0) predict at the finest level and are upsampled to the input size:
depth (metres, positive via softplus), surface normal (unit vectors), segmentation (7 logits: background + 6).
"""

import torch
import torch.nn.functional as F
from torch import nn

from seqpose_core import NUM_CLASSES
from seqpose_core.model.dpt import conv1x1


class FeatureFusion(nn.Module):
    """[s_i], [g_i] (finest first, `features` channels) -> [z_i] (hidden_dim channels, at g_i's grid)."""

    def __init__(self, features, hidden_dim, num_levels=4):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(2 * features, hidden_dim, 1) for _ in range(num_levels))

    def forward(self, semantic, geometry):
        resized = []
        for s, g in zip(semantic, geometry):
            if s.shape[-2:] != g.shape[-2:]:
                s = F.interpolate(s, size=g.shape[-2:], mode='bilinear', align_corners=False)
            resized.append(s)
        if torch.is_grad_enabled() or geometry[0].device.type != 'cpu':
            # training (autograd cannot flow through out=), and GPUs (autocast; grid_sample is fast there)
            return [
                conv1x1(conv, torch.cat([s, g], dim=1))  # (B, hidden, h_i, w_i)
                for conv, s, g in zip(self.convs, resized, geometry)
            ]
        return self._fuse_into_table(resized, geometry)

    def _fuse_into_table(self, semantic, geometry):
        """Inference: every level's 1x1 convolution written straight into one (B, sum h_i w_i, hidden) table;
        the returned levels are (B, hidden, h_i, w_i) channels-last views of it, and the list carries the table
        (`.table`) so the decoder samples all levels with one gather (geometry_attention.sample_level_table). The
        concatenation is never built: W [s; g] + b = W_s s + (W_g g + b), two matmuls into the same rows."""
        batch = geometry[0].shape[0]
        sizes = [tuple(g.shape[-2:]) for g in geometry]
        dtype = torch.result_type(geometry[0], self.convs[0].weight)
        table = torch.empty(
            batch, sum(h * w for h, w in sizes), self.convs[0].out_channels, device=geometry[0].device, dtype=dtype
        )
        levels, offset = FusedLevels(), 0
        for conv, s, g, (h, w) in zip(self.convs, semantic, geometry, sizes):
            weight = conv.weight.flatten(1).to(dtype)
            split = s.shape[1]
            s_rows = s.permute(0, 2, 3, 1).reshape(batch, h * w, split).to(dtype)
            g_rows = g.permute(0, 2, 3, 1).reshape(batch, h * w, -1).to(dtype)
            for b in range(batch):
                rows = table[b, offset : offset + h * w]
                torch.addmm(conv.bias.to(dtype), g_rows[b], weight[:, split:].t(), out=rows)
                rows.addmm_(s_rows[b], weight[:, :split].t())
            levels.append(table[:, offset : offset + h * w].view(batch, h, w, -1).permute(0, 3, 1, 2))
            offset += h * w
        levels.table = table
        return levels


class FusedLevels(list):
    """The fused levels z_i (a plain list of (B, hidden, h_i, w_i) tensors) plus, at inference, `table`: the
    (B, sum h_i w_i, hidden) tensor they are views of (finest level first, rows in raster order)."""

    table = None


def _conv_head(in_channels, hidden, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, out_channels, 1)
    )


def metric_depth(logits):
    """Depth head logits -> metres, > 0."""
    return F.softplus(logits) + 1e-3


class DenseHeads(nn.Module):
    """(z_0, g_0) -> depth (B,1,H,W) metres, normal (B,3,H,W) unit, seg_logits (B,1+6,H,W)."""

    def __init__(self, hidden_dim, features, head_dim=None):
        super().__init__()
        in_channels = hidden_dim + features
        head_dim = head_dim or max(16, features // 2)
        self.depth = _conv_head(in_channels, head_dim, 1)
        self.normal = _conv_head(in_channels, head_dim, 3)
        self.segmentation = _conv_head(in_channels, head_dim, NUM_CLASSES + 1)
        # Start the depth near 1 m (softplus(0.54) ~ 1), the middle of table-top scenes.
        nn.init.constant_(self.depth[-1].bias, 0.54)

    def coarse_depth(self, fused_finest, geometry_finest):
        """(B, 1, h_0, w_0) metres at the finest fused level's grid: what the decoder's depth-guided attention
        compares its sampling points with (no upsampling: it samples the map bilinearly anyway)."""
        return metric_depth(self.depth(torch.cat([fused_finest, geometry_finest], dim=1)))

    def forward(self, fused_finest, geometry_finest, image_hw):
        """The three maps at image_hw, plus coarse_depth (B, 1, h_0, w_0): `coarse_depth` from the same depth
        logits, so the depth-guided decoder needs no second run of the depth head."""
        x = torch.cat([fused_finest, geometry_finest], dim=1)

        def upsample(t):
            return F.interpolate(t, size=tuple(image_hw), mode='bilinear', align_corners=False)

        depth_logits = self.depth(x)  # (B, 1, h_0, w_0)
        depth = metric_depth(upsample(depth_logits))  # (B, 1, H, W) metres, > 0
        normal = F.normalize(upsample(self.normal(x)), dim=1, eps=1e-6)  # (B, 3, H, W) unit
        seg_logits = upsample(self.segmentation(x))  # (B, 7, H, W)
        return {'depth': depth, 'normal': normal, 'seg_logits': seg_logits, 'coarse_depth': metric_depth(depth_logits)}
