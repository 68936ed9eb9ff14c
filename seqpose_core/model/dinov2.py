"""DINOv2 ViT encoder (eq. 1): patch-14 transformer returning the 4 intermediate levels s_i.

Parameter names follow the official checkpoints (`dinov2_vit{s,b,l}14_pretrain.pth`, and the `pretrained.`
part of `depth_anything_v2_vit{s,b,l}.pth`) so they load strictly: patch_embed.proj, cls_token, pos_embed,
mask_token, blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}, norm.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

PATCH_SIZE = 14
PRETRAIN_GRID = 37  # 518 / 14: the pretrain position-embedding grid
# Position-embedding interpolation: DINOv2 (and Depth-Anything-V2) pass scale_factor=(grid + 0.1) / 37 to a
# bicubic resize rather than the target size; the offset keeps floor(37 * scale) == grid despite rounding.
# The scale factor (not the size) decides where bicubic samples, so we reproduce it exactly.
INTERPOLATE_OFFSET = 0.1

# name -> (embed_dim, depth, heads, blocks whose outputs Depth-Anything-V2 uses)
ENCODER_SIZES = {
    'vits': (384, 12, 6, (2, 5, 8, 11)),
    'vitb': (768, 12, 12, (2, 5, 8, 11)),
    'vitl': (1024, 24, 16, (4, 11, 17, 23)),
}


PATCH_STEMS = ('linear', 'conv')


def stem_widths(embed_dim):
    """Channels of the convolutional stem's two 3x3 layers (flops.py counts with the same)."""
    return max(embed_dim // 4, 8), max(embed_dim // 2, 8)


def convolutional_stem(embed_dim):
    """A small convolutional stem with the patch embedding's stride (2 x 7 = 14): 3x3 convolutions see edges and
    corners before the patches are cut (Xiao et al. 2021, "Early convolutions help transformers see better"),
    which a ViT trained from scratch on little data needs; DINOv2's own stem is one linear 14x14 projection."""
    quarter, half = stem_widths(embed_dim)
    return nn.Sequential(
        nn.Conv2d(3, quarter, 3, stride=2, padding=1),
        nn.BatchNorm2d(quarter),
        nn.ReLU(inplace=True),
        nn.Conv2d(quarter, half, 3, stride=1, padding=1),
        nn.BatchNorm2d(half),
        nn.ReLU(inplace=True),
        nn.Conv2d(half, embed_dim, 7, stride=7),
    )


class PatchEmbed(nn.Module):
    """(B, 3, H, W) -> (B, h*w, C) with a stride-14 convolution (or `stem='conv'`: convolutional_stem, for
    encoders trained from scratch); H, W must be multiples of 14."""

    def __init__(self, embed_dim, patch_size=PATCH_SIZE, stem='linear'):
        super().__init__()
        if stem not in PATCH_STEMS:
            raise ValueError(f'model.patch_stem {stem!r}: expected one of {PATCH_STEMS}')
        self.patch_size = patch_size
        if stem == 'conv':
            if patch_size != PATCH_SIZE:
                raise ValueError(f'the convolutional stem has stride {PATCH_SIZE}, not {patch_size}')
            self.proj = convolutional_stem(embed_dim)
        else:
            self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images):
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f'image size {height}x{width} is not a multiple of the patch size {self.patch_size}')
        return self.proj(images).flatten(2).transpose(1, 2)  # (B, h*w, C)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'encoder width {dim} is not divisible by its {num_heads} heads')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # (B, N, C)
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel residual scale (CaiT); DINOv2 checkpoints store it as `gamma`."""

    def __init__(self, dim, init_value=1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT (no register tokens). `get_intermediate_layers` is what the DPT head consumes."""

    def __init__(
        self, embed_dim=384, depth=12, num_heads=6, layer_indices=(2, 5, 8, 11), mlp_ratio=4.0, patch_stem='linear'
    ):
        super().__init__()
        if len(layer_indices) != 4 or not all(0 <= i < depth for i in layer_indices):
            raise ValueError(f'need 4 intermediate block indices in [0, {depth}), got {tuple(layer_indices)}')
        self.embed_dim = embed_dim
        self.patch_size = PATCH_SIZE
        self.layer_indices = tuple(int(i) for i in layer_indices)
        self.patch_embed = PatchEmbed(embed_dim, stem=patch_stem)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, PRETRAIN_GRID * PRETRAIN_GRID + 1, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))  # unused here; kept so checkpoints load strictly
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self):
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def interpolate_pos_encoding(self, grid_h, grid_w):
        """Position embedding for a grid_h x grid_w patch grid: (1, 1 + grid_h*grid_w, C)."""
        pretrain = PRETRAIN_GRID
        if grid_h == pretrain and grid_w == pretrain:
            return self.pos_embed
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        patch_pos = patch_pos.reshape(1, pretrain, pretrain, -1).permute(0, 3, 1, 2)  # (1, C, 37, 37)
        scale = ((grid_h + INTERPOLATE_OFFSET) / pretrain, (grid_w + INTERPOLATE_OFFSET) / pretrain)
        patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode='bicubic', antialias=False)
        if patch_pos.shape[-2:] != (grid_h, grid_w):
            raise RuntimeError(
                f'position embedding resized to {tuple(patch_pos.shape[-2:])}, expected {(grid_h, grid_w)}'
            )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat([cls_pos, patch_pos], dim=1).to(self.pos_embed.dtype)

    def prepare_tokens(self, images):
        """(B, 3, H, W) -> (B, 1 + h*w, C): cls token + patch tokens + position embedding."""
        grid_h, grid_w = images.shape[-2] // PATCH_SIZE, images.shape[-1] // PATCH_SIZE
        tokens = self.patch_embed(images)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return tokens + self.interpolate_pos_encoding(grid_h, grid_w).to(tokens.dtype)

    def get_intermediate_layers(self, images, layer_indices=None, reshape=True, return_class_token=True, norm=True):
        """Outputs of the chosen blocks (after the final norm, as Depth-Anything-V2 takes them).

        Returns a tuple of 4 (patch_tokens, cls_token): patch tokens (B, C, h, w) if `reshape` else
        (B, h*w, C); cls token (B, C).
        """
        layer_indices = self.layer_indices if layer_indices is None else tuple(layer_indices)
        grid_h, grid_w = images.shape[-2] // PATCH_SIZE, images.shape[-1] // PATCH_SIZE
        x = self.prepare_tokens(images)
        taken = []
        last = max(layer_indices)
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in layer_indices:
                taken.append(x)
            if index == last:
                break  # later blocks feed nothing
        outputs = []
        for tokens in taken:
            if norm:
                tokens = self.norm(tokens)
            cls_token, patches = tokens[:, 0], tokens[:, 1:]
            if reshape:
                # (B, C, h, w) as a channels-last view (no copy): the DPT convolutions and the decoder's
                # grid_sample run several times faster on channels-last activations on CPU (values unchanged).
                patches = patches.reshape(patches.shape[0], grid_h, grid_w, -1).permute(0, 3, 1, 2)
            outputs.append((patches, cls_token) if return_class_token else patches)
        return tuple(outputs)

    def forward(self, images):
        return self.get_intermediate_layers(images)


def evenly_spaced_layers(depth):
    """4 block indices ending at the last block, as the official S/B choice (2,5,8,11) does for depth 12."""
    step = depth / 4
    return tuple(int(math.ceil(step * (i + 1))) - 1 for i in range(4))


def encoder_dimensions(cfg):
    """(embed_dim, depth, heads, layer_indices) for a ModelConfig."""
    if cfg.encoder == 'custom':
        if not (cfg.embed_dim and cfg.encoder_depth and cfg.encoder_heads):
            raise ValueError("model.encoder 'custom' needs embed_dim, encoder_depth and encoder_heads")
        if cfg.encoder_depth < 4:
            raise ValueError(f'model.encoder_depth must be >= 4 (4 levels are taken), got {cfg.encoder_depth}')
        dims = (cfg.embed_dim, cfg.encoder_depth, cfg.encoder_heads, evenly_spaced_layers(cfg.encoder_depth))
    elif cfg.encoder in ENCODER_SIZES:
        dims = ENCODER_SIZES[cfg.encoder]
    else:
        raise ValueError(f"model.encoder {cfg.encoder!r}: expected one of {sorted(ENCODER_SIZES)} or 'custom'")
    if cfg.intermediate_layers:
        dims = dims[:3] + (tuple(cfg.intermediate_layers),)
    return dims


def build_encoder(cfg):
    embed_dim, depth, heads, layers = encoder_dimensions(cfg)
    if cfg.patch_stem != 'linear' and cfg.encoder != 'custom':
        raise ValueError(
            f"model.patch_stem {cfg.patch_stem!r} is for encoder 'custom' only: the official "
            f'{cfg.encoder} weights have the linear patch embedding'
        )
    return DinoVisionTransformer(embed_dim, depth, heads, layers, patch_stem=cfg.patch_stem)
