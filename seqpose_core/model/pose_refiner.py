"""A second look at a detected object in a crop of the camera image: its rotation and, with a box part, its box.

The query decoder reads features on a grid of 14-px patches: on the embedded CPU-trained model a
camera 30 px wide is two patches, and its azimuth comes out as good as random although the lens is plainly
visible (weights/README.md, "Where the rotation fails"). A small CNN on a crop of the full-resolution image sees
the lens, the handle and the hinge. It predicts the rotation allocentrically, relative to the viewing ray
through the detection's centre, because that is what a crop shows: the same appearance anywhere in the image
has the same label, and the camera rotation follows from the ray (Kundu et al., 3D-RCNN, CVPR 2018):

    R_camera = R_ray @ R_allocentric,   R_ray: the rotation taking the optical axis z to the ray

The allocentric rotation is its up axis y (a regressed unit vector) and the azimuth about it, measured from the
ray (model.viewpoint: 12 bins + a residual), because a camera seen from behind, or a mug whose handle is half
hidden, has several likely azimuths and a regression would average them (Mousavian et al., CVPR 2017).

The crop is a square of side `crop_margin` x the box diagonal projected at the centre's depth, resampled to
`crop_size`. The runner applies the refiner to the detections of inference.refiner.classes after duplicate
suppression (seqpose_core.stages.refiner); training (train.pose_refiner) uses ground-truth boxes jittered by the
errors of predicted ones.

With `box` (model.refiner_box) it also re-estimates the box from the crop, as the scale-invariant translation of
CDPN (Li et al., ICCV 2019): where the true centre projects relative to the crop's centre and how large the object
looks relative to the crop (both in crop sides, so the same at any distance), and the object's metric size
(classes have typical sizes; the crop shows the proportions). The depth follows from the pinhole model,
z = f |size| / (projected diagonal) (`decode_boxes`). A crop cannot know an object's absolute scale any better
than the whole image, but it sees its outline at eight times the decoder's resolution.

Its pooled crop features also feed the crop scorer (model.crop_scorer), which says what the crop around a
published box holds.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqpose_core.geometry import backproject, project_points
from seqpose_core.model.viewpoint import bin_centres, bin_width, x_column_of

# ImageNet statistics in 0..255 (the crops are resampled from the uint8 camera image)
_MEAN = (123.675, 116.28, 103.53)
_STD = (58.395, 57.12, 57.375)
OPTICAL_AXIS = (0.0, 0.0, 1.0)
_IMAGE_UP = (0.0, -1.0, 0.0)  # OpenCV camera frame: y points down the image
_BOX_OUTPUTS = 6  # centre offset (2), log scale (1), log size (3)
_TYPICAL_SIZE = 0.15  # metres: where the log size starts (model.size_prior's value)


def ray_rotation(centres):
    """(n, 3) object centres -> (n, 3, 3): the rotation about the axis z x ray taking the optical axis z onto the
    ray through each centre (identity on the axis)."""
    ray = F.normalize(centres.float(), dim=-1)
    z = ray.new_tensor(OPTICAL_AXIS).expand_as(ray)
    axis = torch.cross(z, ray, dim=-1)
    sine = axis.norm(dim=-1).clamp_min(1e-9)[:, None, None]
    cosine = (z * ray).sum(-1)[:, None, None]
    k = axis / sine[:, 0]
    zero = torch.zeros_like(k[:, 0])
    cross = torch.stack([zero, -k[:, 2], k[:, 1], k[:, 2], zero, -k[:, 0], -k[:, 1], k[:, 0], zero], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=ray.dtype, device=ray.device)
    return eye + sine * cross + (1 - cosine) * cross @ cross  # Rodrigues


def object_crops(image, K, centres, sizes, crop_size, margin, shift=None, zoom=None):
    """Square crops around objects.

    image (3, H, W) float 0..255, K (3, 3), centres (n, 3) metres, sizes (n, 3) metric box extents ->
    (n, 3, crop_size, crop_size) float 0..255, zeros outside the image. shift (n, 2) in crop sides and zoom (n,)
    move and scale each crop (training: the errors of predicted boxes)."""
    _, height, width = image.shape
    centres, sizes, K = centres.float(), sizes.float(), K.float().to(image.device)
    uv = project_points(centres, K)  # (n, 2) pixels
    side = _crop_side(K, centres, sizes, margin)  # (n,) pixels
    if shift is not None:
        uv = uv + shift * side[:, None]
    if zoom is not None:
        side = side * zoom
    steps = (torch.arange(crop_size, dtype=image.dtype, device=image.device) + 0.5) / crop_size - 0.5
    grid_y, grid_x = torch.meshgrid(steps, steps, indexing='ij')  # (S, S)
    u = uv[:, 0, None, None] + grid_x * side[:, None, None]  # (n, S, S)
    v = uv[:, 1, None, None] + grid_y * side[:, None, None]
    grid = torch.stack([(u + 0.5) / width * 2 - 1, (v + 0.5) / height * 2 - 1], dim=-1)  # (n, S, S, 2)
    images = image[None].expand(len(centres), -1, -1, -1)
    return F.grid_sample(images, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


def _crop_side(K, centres, sizes, margin):
    """(n,) pixels: `margin` x the box diagonal projected at the centre's depth."""
    return margin * K[0, 0] * sizes.norm(dim=-1) / centres[:, 2].clamp_min(1e-6)


class _ResidualBlock(nn.Module):
    """Two 3x3 convolutions, the first with stride 2, and a strided 1x1 shortcut."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 2, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, 2, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class PoseRefiner(nn.Module):
    """(n, 3, S, S) crops (0..255) + (n,) class ids 1..6 -> dict: 'up' (n, 3) unit, 'logits' and 'residual'
    (n, bins) of the azimuth (residuals in half-bin units); with `box` also 'centre_offset' (n, 2) and 'log_scale'
    (n,) in crop sides and 'log_size' (n, 3) metres; 'crop_features' (n, 8w), the pooled features (what the crop
    scorer reads). `rotations` turns them into allocentric rotations (n, 3, 3)."""

    def __init__(self, width, num_bins, num_classes=6, box=False):
        super().__init__()
        self.num_bins = num_bins
        self.box = box
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.stages = nn.Sequential(
            _ResidualBlock(width, 2 * width), _ResidualBlock(2 * width, 4 * width), _ResidualBlock(4 * width, 8 * width)
        )
        self.class_embedding = nn.Embedding(num_classes + 1, 8 * width)  # index 0 unused (ids start at 1)
        self.head = nn.Sequential(
            nn.Linear(8 * width, 256), nn.ReLU(), nn.Linear(256, 3 + 2 * num_bins + (_BOX_OUTPUTS if box else 0))
        )
        self.register_buffer('mean', torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def crop_features(self, crops):
        """(n, 3, S, S) crops 0..255 -> (n, 8w) pooled features of the residual stages."""
        return self.stages(self.stem((crops.float() - self.mean) / self.std)).mean(dim=(2, 3))

    def forward(self, crops, class_ids):
        crop_features = self.crop_features(crops)  # (n, 8w)
        out = self.head(crop_features + self.class_embedding(class_ids))
        # the up axis as an offset from image-up, where an object on a table seen from above-front points
        outputs = {'up': F.normalize(out[:, :3] + out.new_tensor(_IMAGE_UP), dim=-1), 'crop_features': crop_features}
        logits, residual = out[:, 3 : 3 + 2 * self.num_bins].split(self.num_bins, dim=-1)
        outputs.update(logits=logits, residual=torch.tanh(residual))
        if self.box:
            box = out[:, 3 + 2 * self.num_bins :]  # (n, 6)
            outputs.update(centre_offset=box[:, :2], log_scale=box[:, 2], log_size=box[:, 3:] + math.log(_TYPICAL_SIZE))
        return outputs

    def rotations(self, outputs):
        """Allocentric rotations (n, 3, 3) of its outputs (allocentric_rotations)."""
        return allocentric_rotations(outputs, self.num_bins)


def allocentric_rotations(outputs, num_bins):
    """Allocentric rotations (n, 3, 3) from a refiner's outputs: columns x, y = up, z; x from the best of the
    `num_bins` azimuth bins and its residual."""
    up, logits, residual = outputs['up'], outputs['logits'], outputs['residual']
    best = logits.argmax(-1, keepdim=True)  # (n, 1)
    azimuth = (
        bin_centres(num_bins, logits.device, logits.dtype)[best[:, 0]]
        + residual.gather(-1, best)[:, 0] * bin_width(num_bins) / 2
    )
    ray = up.new_tensor(OPTICAL_AXIS).expand_as(up)
    x = x_column_of(azimuth, up, ray)
    return torch.stack([x, up, torch.cross(x, up, dim=-1)], dim=-1)


def box_targets(sizes, shift, zoom):
    """What a crop moved by `shift` (n, 2) crop sides and scaled by `zoom` (n,) from the ground-truth box should
    read (the inverse of the jitter): the true centre at -shift / zoom crop sides from the crop's centre, the
    object's projected diagonal log(1 / zoom) of the crop's nominal one, and the metric sizes (n, 3)."""
    return {'centre_offset': -shift / zoom[:, None], 'log_scale': -torch.log(zoom), 'log_size': torch.log(sizes)}


def decode_boxes(outputs, K, centres, sizes, margin, depth_weight=1.0):
    """(translations (n, 3), sizes (n, 3)) from the box outputs of crops made around `centres` / `sizes` (the
    decoder's boxes) with `margin`: the centre's pixel moved by the offset and the projected diagonal scaled; the
    depth is the crop's (where the predicted metric size has that diagonal) and the decoder's, averaged in log
    space with `depth_weight` on the crop's, and the size is scaled to keep the diagonal the crop measured."""
    centres, K = centres.float(), K.float()
    side = _crop_side(K, centres, sizes.float(), margin)  # (n,) pixels
    uv = project_points(centres, K) + outputs['centre_offset'] * side[:, None]  # (n, 2)
    diagonal = side * torch.exp(outputs['log_scale']) / margin  # (n,) pixels
    refined_sizes = torch.exp(outputs['log_size'])
    crop_depth = K[0, 0] * refined_sizes.norm(dim=-1) / diagonal
    # two cues with independent errors (the object's own look, and its place among the others): a weighted
    # geometric mean; sizes follow the depth, so the box still projects to what the crop saw
    depth = torch.exp(
        depth_weight * torch.log(crop_depth) + (1 - depth_weight) * torch.log(centres[:, 2].clamp_min(1e-6))
    )
    return backproject(uv, depth, K), refined_sizes * (depth / crop_depth)[:, None]


def refine_poses(
    refiner, image, K, class_ids, centres, sizes, crop_size, margin, boxes=None, depth_weight=1.0, passes=1
):
    """The refiner's view of detections: image (3, H, W) float 0..255 with its K, class ids (n,) 1..6, centres
    and sizes (n, 3) in that camera's frame -> (rotations (n, 3, 3), translations (n, 3), sizes (n, 3)) in the
    camera frame. `boxes` (n,) bool: the detections whose box the refiner replaces (None: none; needs a refiner
    with a box part; `depth_weight`: decode_boxes); the others keep the translation and size given. With
    `passes` > 1 the refiner looks again at the crop around the box it gave (as DeepIM iterates), each pass's
    depth blended with the one before. `refiner`: a PoseRefiner, or anything called as one (SecondStage, an
    exported graph); refine_poses_with_outputs also gives the last pass's outputs."""
    return refine_poses_with_outputs(
        refiner, image, K, class_ids, centres, sizes, crop_size, margin, boxes, depth_weight, passes
    )[:3]


def refine_poses_with_outputs(
    refiner,
    image,
    K,
    class_ids,
    centres,
    sizes,
    crop_size,
    margin,
    boxes=None,
    depth_weight=1.0,
    passes=1,
    first_outputs=None,
):
    """refine_poses, and the refiner's outputs of the last pass (dict) as a fourth value. `first_outputs`: the
    refiner's outputs on the crops around the given boxes when a caller has them already (the first pass is then
    not run again)."""
    if passes < 1:
        raise ValueError(f'refine_poses: passes {passes}: expected at least 1')
    if boxes is not None and bool(boxes.any()) and not refiner.box:
        raise ValueError('refine_poses: boxes asked of a refiner without a box part (model.refiner_box false)')
    centres, sizes = centres.float(), sizes.float()
    for index in range(passes):
        if index == 0 and first_outputs is not None:
            outputs = first_outputs
        else:
            outputs = refiner(object_crops(image, K, centres, sizes, crop_size, margin), class_ids)
        if boxes is not None and bool(boxes.any()):
            decoded_centres, decoded_sizes = decode_boxes(outputs, K, centres, sizes, margin, depth_weight)
            centres = torch.where(boxes[:, None], decoded_centres, centres)
            sizes = torch.where(boxes[:, None], decoded_sizes, sizes)
    # the allocentric rotation is relative to the ray through the centre (training: the true one)
    return ray_rotation(centres) @ refiner.rotations(outputs), centres, sizes, outputs


def build_pose_refiner(cfg):
    """The refiner of a ModelConfig, or None (model.refiner_width == 0)."""
    if cfg.refiner_width <= 0:
        return None
    return PoseRefiner(cfg.refiner_width, cfg.refiner_azimuth_bins, box=cfg.refiner_box)
