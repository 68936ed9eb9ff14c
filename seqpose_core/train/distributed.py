"""The processes of a run: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) or a single process."""

import os

import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel

from seqpose_core.train.errors import TrainingError


class ProcessGroup:
    def __init__(self, device_request=None):
        self.world_size = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        self.local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        if device_request:
            device = torch.device(device_request)
            if device.type == 'cuda' and device.index is None:
                device = torch.device('cuda', self.local_rank)
        else:
            device = torch.device('cuda', self.local_rank) if torch.cuda.is_available() else torch.device('cpu')
        if device.type == 'cuda':
            if not torch.cuda.is_available():
                raise TrainingError(f'--device {device_request}: CUDA is not available on this machine')
            torch.cuda.set_device(device)
        self.device = device
        self.distributed = self.world_size > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo')

    @property
    def is_main(self):
        return self.rank == 0

    def barrier(self):
        if self.distributed:
            dist.barrier()

    def gather(self, obj):
        if not self.distributed:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def close(self):
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def wrap_model(model, group):
    """The module the training step calls: DDP around `model` under torchrun, `model` itself otherwise."""
    if not group.distributed:
        return model
    device_ids = [group.device] if group.device.type == 'cuda' else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
