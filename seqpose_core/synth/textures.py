"""Procedural textures (backgrounds, table tops) and users' background images, as RGB uint8 arrays.

Everything is drawn from a numpy Generator so a seed reproduces the same images. The procedural kinds are
value noise, stripes, checker, gradients and wood-like grain, each with noise on top so no surface is flat.
"""

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')


def random_color(rng, saturation=(0.2, 0.9), value=(0.2, 0.95)):
    """An RGB colour in [0, 1] drawn in HSV so saturation and brightness stay plausible."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64) / 255


def value_noise(rng, size, octaves=4, base_cells=4):
    """Fractal value noise in [0, 1], (size, size) float32: random grids upsampled smoothly and summed."""
    total = np.zeros((size, size), np.float32)
    weight_sum = 0.0
    cells, weight = base_cells, 1.0
    for _ in range(octaves):
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        total += weight * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        weight_sum += weight
        cells *= 2
        weight *= 0.5
    total /= weight_sum
    low, high = total.min(), total.max()
    return (total - low) / max(high - low, 1e-6)


def _blend(mask, color_a, color_b):
    mask = mask.astype(np.float32)[..., None]
    return mask * color_a.astype(np.float32) + (1 - mask) * color_b.astype(np.float32)


def procedural_texture(rng, size=256, kind=None):
    """A random texture (size, size, 3) uint8 RGB of one of the procedural kinds."""
    kinds = ('noise', 'stripes', 'checker', 'gradient', 'wood')
    kind = kind or kinds[int(rng.integers(len(kinds)))]
    color_a, color_b = random_color(rng), random_color(rng)
    v, u = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 'noise':
        image = _blend(
            value_noise(rng, size, octaves=int(rng.integers(3, 6)), base_cells=int(rng.integers(2, 8))),
            color_a,
            color_b,
        )
    elif kind == 'stripes':
        angle = rng.uniform(0, np.pi)
        frequency = rng.uniform(3, 20)
        phase = (u * np.cos(angle) + v * np.sin(angle)) * frequency
        duty = rng.uniform(0.2, 0.8)
        image = _blend((np.mod(phase, 1.0) < duty).astype(np.float32), color_a, color_b)
    elif kind == 'checker':
        cells = int(rng.integers(2, 12))
        image = _blend(((np.floor(u * cells) + np.floor(v * cells)) % 2).astype(np.float32), color_a, color_b)
    elif kind == 'gradient':
        if rng.random() < 0.5:
            angle = rng.uniform(0, 2 * np.pi)
            ramp = (u - 0.5) * np.cos(angle) + (v - 0.5) * np.sin(angle) + 0.5
        else:
            cu, cv = rng.uniform(0.2, 0.8, 2)
            ramp = np.hypot(u - cu, v - cv) * rng.uniform(1, 2)
        image = _blend(np.clip(ramp, 0, 1), color_a, color_b)
    elif kind == 'wood':
        warp = value_noise(rng, size, octaves=3, base_cells=3) * rng.uniform(2, 6)
        grain = 0.5 + 0.5 * np.sin((v * rng.uniform(10, 40) + warp) * 2 * np.pi)
        wood_a = np.array([0.55, 0.38, 0.22]) * rng.uniform(0.6, 1.3)
        wood_b = wood_a * rng.uniform(0.55, 0.8)
        image = _blend(grain ** rng.uniform(0.5, 2), np.clip(wood_a, 0, 1), np.clip(wood_b, 0, 1))
    else:
        raise ValueError(f'unknown texture kind {kind!r}; expected one of {kinds}')
    # fine grain so flat colours still carry texture for the network to latch on to
    grain = value_noise(rng, size, octaves=2, base_cells=size // 8)[..., None] - np.float32(0.5)
    image = image * (1 + np.float32(rng.uniform(0.02, 0.12)) * grain)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


class BackgroundSource:
    """Background images: a random user image from `folder` (when given, with probability `user_fraction`)
    or a procedural texture."""

    def __init__(self, folder=None, user_fraction=0.8, size=256):
        self.size = size
        self.user_fraction = user_fraction
        self.files = []
        self._cache = {}
        if folder is not None:
            folder = Path(folder)
            if not folder.is_dir():
                raise ValueError(f'--backgrounds {folder}: not a directory')
            self.files = sorted(p for p in folder.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise ValueError(f'--backgrounds {folder}: no images ({", ".join(IMAGE_SUFFIXES)}) found')

    def _load(self, path, max_side=1024):
        if path not in self._cache:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f'{path}: cannot read background image')
            scale = max_side / max(image.shape[:2])
            if scale < 1:
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            # keep a bounded cache: user folders can hold thousands of images
            if len(self._cache) > 64:
                self._cache.pop(next(iter(self._cache)))
            self._cache[path] = np.ascontiguousarray(image[..., ::-1])
        return self._cache[path]

    def draw(self, rng):
        """RGB uint8 image; user images keep their aspect ratio (the renderer crops to fill)."""
        if self.files and rng.random() < self.user_fraction:
            image = self._load(self.files[int(rng.integers(len(self.files)))])
            if rng.random() < 0.5:
                image = image[:, ::-1]
            return np.ascontiguousarray(image)
        return procedural_texture(rng, self.size)
