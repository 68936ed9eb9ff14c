"""Data section of the configuration (owned by seqpose_core.data)."""

from dataclasses import dataclass
from typing import Optional


@dataclass
class DataConfig:
    root: str = ''  # NOCS-layout root (CAMERA/, Real/, ...) or a `seqpose synth` output
    input_height: int = 238  # network input size, multiples of 14 (the paper: 238x322)
    input_width: int = 322
    clip_length: int = 4  # frames per training clip: 3 history frames + the current one
    frame_stride: int = 1  # frames between consecutive frames of a clip (2 = every other frame)
    clip_stride: int = 1  # frames between the starts of consecutive clips of a scene
    augment: bool = True  # photometric augmentation in training
    geometry: str = 'resize'  # 'resize' (stretch, as the runner at inference) or 'crop' (keep aspect)
    brightness: float = 0.3  # photometric jitter strengths (factors in [1 - x, 1 + x])
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.03  # hue shift, fraction of a full turn
    use_image_lists: bool = True  # restrict frames to object-deformnet's <subset>_list.txt when present
    min_pixels: Optional[int] = None  # derived GT: drop instances with fewer valid-depth pixels (None: 64 at 640x480)
