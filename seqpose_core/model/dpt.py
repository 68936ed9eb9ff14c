"""Depth-Anything-V2 DPT head (eq. 2): reassembles the 4 encoder levels and fuses them coarse-to-fine.

Parameter names follow `depth_head.*` of the official `depth_anything_v2_vit{s,b,l}.pth` (projects,
resize_layers, scratch.layer{1..4}_rn, scratch.refinenet{1..4}.{resConfUnit1,resConfUnit2,out_conv},
scratch.output_conv1, scratch.output_conv2) so it loads strictly.

Level order of the returned lists: index 0 is the finest. With a patch grid h x w (input 14h x 14w):
  s_i (reassembled semantic features, `features` channels): 4h x 4w, 2h x 2w, h x w, ceil(h/2) x ceil(w/2)
  g_i (geometry features, eq. 2):                            8h x 8w, 4h x 4w, 2h x 2w, h x w
g_3 = FUSE_3(s_3), g_i = FUSE_i(ADD(g_{i+1}, s_i)); each FUSE ends by upsampling to the next finer level.
"""

import torch.nn.functional as F
from torch import nn

# name -> (features, out_channels) of the official heads
DPT_SIZES = {
    'vits': (64, (48, 96, 192, 384)),
    'vitb': (128, (96, 192, 384, 768)),
    'vitl': (256, (256, 512, 1024, 1024)),
}


def conv1x1(conv, x):
    """A 1x1 nn.Conv2d applied as one matmul over the pixels of channels-last `x`; returns a (B, C_out, h, w)
    channels-last view. The same result as conv(x) (its weights, within float rounding), but PyTorch sends 1x1
    convolutions to its slow reference path when single-threaded, and that path is very slow on channels-last."""
    if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.padding != (0, 0) or conv.groups != 1:
        return conv(x)
    out = F.linear(x.permute(0, 2, 3, 1), conv.weight.flatten(1), conv.bias)
    return out.permute(0, 3, 1, 2)


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))), 3x3 convolutions."""

    def __init__(self, features):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.activation = nn.ReLU(inplace=False)  # the input is also the skip: no in-place

    def forward(self, x):
        return x + self.conv2(self.activation(self.conv1(self.activation(x))))


class FeatureFusionBlock(nn.Module):
    """FUSE_i: optional skip through a residual unit, a residual unit, bilinear upsampling, 1x1 conv."""

    def __init__(self, features):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, coarser, skip=None, size=None):
        x = coarser if skip is None else coarser + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        # align_corners=True as the official head (its weights were trained with it)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=True)
        return conv1x1(self.out_conv, x)


class Scratch(nn.Module):
    """Container so names read scratch.layerN_rn / scratch.refinenetN / scratch.output_convN as officially."""

    def __init__(self, in_channels, features):
        super().__init__()
        for i, channels in enumerate(in_channels, start=1):
            setattr(self, f'layer{i}_rn', nn.Conv2d(channels, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self, f'refinenet{i}', FeatureFusionBlock(features))
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(True), nn.Conv2d(32, 1, 1), nn.ReLU(True), nn.Identity()
        )


class DPTHead(nn.Module):
    def __init__(self, in_channels, features=64, out_channels=(48, 96, 192, 384)):
        super().__init__()
        self.features = features
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, c, 1) for c in out_channels)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),  # x4
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),  # x2
                nn.Identity(),  # x1
                nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1),  # x1/2
            ]
        )
        self.scratch = Scratch(out_channels, features)

    def reassemble(self, levels):
        """Encoder levels [(B, C_enc, h, w), ...] (finest first) -> s_i [(B, features, *, *)] (finest first)."""
        semantic = []
        for i, tokens in enumerate(levels):
            x = self.resize_layers[i](conv1x1(self.projects[i], tokens))
            semantic.append(getattr(self.scratch, f'layer{i + 1}_rn')(x))
        return semantic

    def fuse(self, semantic):
        """s_i -> g_i (eq. 2), finest first."""
        s1, s2, s3, s4 = semantic
        g4 = self.scratch.refinenet4(s4, size=s3.shape[-2:])
        g3 = self.scratch.refinenet3(g4, s3, size=s2.shape[-2:])
        g2 = self.scratch.refinenet2(g3, s2, size=s1.shape[-2:])
        g1 = self.scratch.refinenet1(g2, s1)
        return [g1, g2, g3, g4]

    def predict_depth(self, finest_geometry, image_hw):
        """The official output convolutions: (B, 1, H, W), non-negative (relative disparity for the
        relative-depth checkpoints; not metric, which is why the fusion module has its own metric depth head)."""
        x = self.scratch.output_conv1(finest_geometry)
        x = F.interpolate(x, size=tuple(image_hw), mode='bilinear', align_corners=True)
        return self.scratch.output_conv2(x)

    def forward(self, levels, image_hw=None):
        """levels: 4 x (B, C_enc, h, w). Returns (semantic s_i, geometry g_i, depth or None)."""
        semantic = self.reassemble(levels)
        geometry = self.fuse(semantic)
        depth = self.predict_depth(geometry[0], image_hw) if image_hw is not None else None
        return semantic, geometry, depth


def dpt_dimensions(cfg):
    """(features, out_channels) for a ModelConfig."""
    if cfg.encoder in DPT_SIZES:
        features, out_channels = DPT_SIZES[cfg.encoder]
    else:
        features, out_channels = 0, ()
    features = cfg.dpt_features or features
    out_channels = tuple(cfg.dpt_out_channels) or out_channels
    if not features or len(out_channels) != 4:
        raise ValueError(f'model.encoder {cfg.encoder!r}: set dpt_features and 4 dpt_out_channels')
    return features, out_channels


def build_dpt_head(cfg, encoder_dim):
    features, out_channels = dpt_dimensions(cfg)
    return DPTHead(encoder_dim, features, out_channels)
