"""Model section of the configuration (owned by seqpose_core.model)."""
from dataclasses import dataclass


@dataclass
class ModelConfig:
    encoder: str = 'vits'             # DINOv2 size: vits / vitb / vitl, or 'custom' with the fields below
    num_queries: int = 600            # learnable 3D query anchors
    memory_frames: int = 3            # N: history frames in the memory queue
    memory_top_k: int = 64            # K: queries kept per frame
    decoder_layers: int = 6
