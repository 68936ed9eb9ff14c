"""Training section of the configuration (owned by seqpose_core.train)."""
from dataclasses import dataclass


@dataclass
class TrainConfig:
    epochs: int = 24
    batch_size: int = 16
    lr: float = 4e-4
