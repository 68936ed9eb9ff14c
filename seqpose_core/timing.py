"""Per-stage wall time for benchmarks: `model.stage_timer = StageTimer()` and every stage of a forward pass
(and the runner's pre- and post-processing) accumulates its seconds."""

import time
from collections import defaultdict
from contextlib import contextmanager

import torch


class StageTimer:
    """Accumulates wall time per stage; synchronises CUDA at stage boundaries so GPU times are real."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)

    @contextmanager
    def stage(self, name):
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1

    def reset(self):
        self.seconds.clear()
        self.calls.clear()


@contextmanager
def timed_stage(timer, name):
    """`timer.stage(name)`, or nothing when no timer is attached (the normal case)."""
    if timer is None:
        yield
    else:
        with timer.stage(name):
            yield
