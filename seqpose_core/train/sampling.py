"""Data order that can be resumed mid-epoch, and augmentation that does not depend on who loads a sample.

`ResumableDistributedSampler` is torch's DistributedSampler (a per-epoch shuffle seeded by seed + epoch,
every process its own share) that can start part-way into an epoch, and yields (epoch, index) pairs.
`SeededSamples` wraps a dataset so that a sample's random augmentation is seeded from (seed, epoch, index):
the same sample gets the same augmentation whether loaded in the training process or a worker, in an
uninterrupted run or after a resume. In the training process the global RNG states are put back afterwards,
so loading data never perturbs the model's random stream (dropout).
"""

import random

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


class ResumableDistributedSampler(DistributedSampler):
    def __init__(self, dataset, num_replicas=1, rank=0, shuffle=True, seed=0, drop_last=True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start_index = 0

    def set_position(self, epoch, start_index):
        """Iterate epoch `epoch` from its `start_index`-th sample (of this process's share)."""
        self.set_epoch(epoch)
        self.start_index = int(start_index)

    def __iter__(self):
        indices = list(super().__iter__())[self.start_index :]
        return iter([(self.epoch, index) for index in indices])

    def __len__(self):
        return max(self.num_samples - self.start_index, 0)


def _sample_seed(seed, epoch, index):
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededSamples(Dataset):
    def __init__(self, dataset, seed=0):
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        sample_seed = _sample_seed(self.seed, epoch, index)
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        torch.random.default_generator.manual_seed(sample_seed)  # CPU only: CUDA dropout stays untouched
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])
