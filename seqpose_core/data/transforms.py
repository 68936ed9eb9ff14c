"""Geometric and photometric transforms of frames to the network input (pure numpy / torch).

Pixel convention: pixel centres sit at integer coordinates (u = 0 is the centre of the first column), as in
`geometry.backproject_depth_map` and cv2.resize. Resizing an image of width W to w therefore maps a
continuous coordinate u to u' = (u + 0.5) * w / W - 0.5, so fx' = fx * w / W and cx' = (cx + 0.5) * w / W - 0.5
(likewise for y with the heights); cropping at (top, left) subtracts left from cx and top from cy. With this
a 3D point projects to the same relative image location before and after (test_data_transforms).

Two geometric modes:
- 'resize': stretch to the network size (what `runner.StreamRunner` does at inference; the default, so that
  training sees what inference sees; 640x480 -> 322x238 changes the aspect ratio by 1.5%).
- 'crop': scale uniformly until the image covers the network size, then crop (centre, or random in
  training) - no aspect change, loses a border.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH_SIZE = 14
GEOMETRY_MODES = ('resize', 'crop')


def check_input_size(height, width):
    if height <= 0 or width <= 0 or height % PATCH_SIZE or width % PATCH_SIZE:
        raise ValueError(
            f'network input size {height}x{width} (HxW): both must be positive multiples of '
            f'{PATCH_SIZE} (the ViT patch size)'
        )


@dataclass(frozen=True)
class GeometryPlan:
    """Scale the source (source_hw) by scale_hw = (sy, sx) to resized_hw, then keep rows top..top+out_h and
    columns left..left+out_w. In 'resize' mode scale = out / source per axis; in 'crop' mode one scale for both
    axes (resized_hw is then rounded down to whole pixels, the scale is kept exact)."""

    source_hw: tuple
    resized_hw: tuple
    scale_hw: tuple
    top: int
    left: int
    out_hw: tuple

    def intrinsics(self, K):
        """K of the source image -> K of the output image (pixel centres at integers)."""
        scale_y, scale_x = self.scale_hw
        K = np.array(K, np.float64, copy=True)
        K[0, 0] *= scale_x
        K[0, 1] *= scale_x
        K[0, 2] = (K[0, 2] + 0.5) * scale_x - 0.5 - self.left
        K[1, 1] *= scale_y
        K[1, 2] = (K[1, 2] + 0.5) * scale_y - 0.5 - self.top
        return K


def plan_geometry(source_hw, out_hw, mode='resize', rng=None):
    """How to bring an image of source_hw to out_hw. `rng` (numpy Generator) picks a random crop in 'crop'
    mode; without it the crop is centred."""
    if mode not in GEOMETRY_MODES:
        raise ValueError(f'geometry mode {mode!r}: expected one of {GEOMETRY_MODES}')
    source_hw, out_hw = tuple(int(v) for v in source_hw), tuple(int(v) for v in out_hw)
    if mode == 'resize':
        return GeometryPlan(source_hw, out_hw, (out_hw[0] / source_hw[0], out_hw[1] / source_hw[1]), 0, 0, out_hw)
    # a hair above the covering scale so that rounding never leaves the resized image a pixel short
    scale = max(out_hw[0] / source_hw[0], out_hw[1] / source_hw[1]) * (1 + 1e-9)
    resized_hw = (int(math.floor(source_hw[0] * scale)), int(math.floor(source_hw[1] * scale)))
    spare_h, spare_w = resized_hw[0] - out_hw[0], resized_hw[1] - out_hw[1]
    if rng is None:
        top, left = spare_h // 2, spare_w // 2
    else:
        top, left = int(rng.integers(0, spare_h + 1)), int(rng.integers(0, spare_w + 1))
    return GeometryPlan(source_hw, resized_hw, (scale, scale), top, left, out_hw)


def apply_to_image(image_rgb, plan):
    """uint8 (H, W, 3) -> float32 tensor (3, h, w) in [0, 1]: bilinear, antialiased when shrinking (the same
    resampling as `runner.preprocess_image`)."""
    image = torch.from_numpy(np.ascontiguousarray(image_rgb)).permute(2, 0, 1)[None].float() / 255.0  # (1,3,H,W)
    if plan.resized_hw != plan.source_hw:
        shrinking = plan.resized_hw[0] < plan.source_hw[0] or plan.resized_hw[1] < plan.source_hw[1]
        if plan.resized_hw == plan.out_hw and (plan.top, plan.left) == (0, 0):
            # the plain resize, exactly as the runner does it
            image = F.interpolate(
                image, size=plan.resized_hw, mode='bilinear', align_corners=False, antialias=shrinking
            )
        else:
            image = F.interpolate(
                image,
                scale_factor=plan.scale_hw,
                mode='bilinear',
                align_corners=False,
                antialias=shrinking,
                recompute_scale_factor=False,
            )
    image = image[0, :, plan.top : plan.top + plan.out_hw[0], plan.left : plan.left + plan.out_hw[1]]
    return image.clamp(0.0, 1.0).contiguous()


def apply_nearest(array, plan):
    """Nearest-neighbour resample + crop of (H, W[, C]) numpy arrays (depth, masks): the source pixel whose
    centre is nearest to each output pixel centre, src = floor((dst + 0.5) * H / h) - consistent with the
    half-pixel convention above (cv2's INTER_NEAREST is not: it drops the +0.5 and shifts by half a pixel)."""
    source_h, source_w = plan.source_hw
    scale_y, scale_x = plan.scale_hw
    rows = np.arange(plan.top, plan.top + plan.out_hw[0])
    cols = np.arange(plan.left, plan.left + plan.out_hw[1])
    source_rows = np.minimum(((rows + 0.5) / scale_y).astype(np.int64), source_h - 1)
    source_cols = np.minimum(((cols + 0.5) / scale_x).astype(np.int64), source_w - 1)
    return array[source_rows[:, None], source_cols[None, :]]


@dataclass
class PhotometricJitter:
    """Colour jitter on float (3, H, W) RGB in [0, 1], factors drawn uniformly from [1 - x, 1 + x]
    (hue: a shift in [-hue, hue] of a full turn), applied in a random order as the common ColorJitter.
    Hue is rotated in the YIQ chroma plane (a linear approximation of an HSV hue shift that needs no colour-space
    conversion)."""

    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.03

    def __call__(self, image, rng):
        operations = [self._brightness, self._contrast, self._saturation, self._hue]
        for index in rng.permutation(len(operations)):
            image = operations[index](image, rng)
        return image.clamp(0.0, 1.0)

    def _brightness(self, image, rng):
        return image * float(rng.uniform(1 - self.brightness, 1 + self.brightness))

    def _contrast(self, image, rng):
        factor = float(rng.uniform(1 - self.contrast, 1 + self.contrast))
        mean = grey(image).mean()
        return ((image - mean) * factor + mean).clamp(0.0, 1.0)

    def _saturation(self, image, rng):
        factor = float(rng.uniform(1 - self.saturation, 1 + self.saturation))
        luminance = grey(image)[None]
        return ((image - luminance) * factor + luminance).clamp(0.0, 1.0)

    def _hue(self, image, rng):
        angle = float(rng.uniform(-self.hue, self.hue)) * 2 * math.pi
        rotation = torch.tensor(
            [[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]],
            dtype=image.dtype,
        )
        mix = _YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ  # (3, 3): RGB -> rotated RGB
        return torch.einsum('ij,jhw->ihw', mix.to(image.dtype), image).clamp(0.0, 1.0)


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def grey(image):
    """(3, H, W) RGB -> (H, W) luma (ITU-R 601)."""
    return 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]


def normalize_image(image):
    """(3, H, W) float in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype).view(3, 1, 1)
    return (image - mean) / std
