"""Data section of the configuration (owned by seqpose_core.data)."""
from dataclasses import dataclass


@dataclass
class DataConfig:
    root: str = ''                    # NOCS-layout root (CAMERA/, Real/, ...) or a `seqpose synth` output
    input_height: int = 238           # network input size, multiples of 14 (the paper: 238x322)
    input_width: int = 322
    clip_length: int = 4              # frames per training clip: 3 history frames + the current one
    augment: bool = True              # photometric augmentation in training
