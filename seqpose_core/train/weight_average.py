"""An exponential moving average of the model's weights (Polyak averaging), what validation and model.pt use.

With a few clips per step the weights wander: on this project's CPU runs the validation moved by 5-15 points
between neighbouring checkpoints (weights/README.md). The average over the last ~1 / (1 - decay) steps sits
nearer the middle of the basin the optimiser circles in, as in DETR-family and YOLO training:

    average <- d * average + (1 - d) * weights,   d = min(decay, (1 + n) / (10 + n)) after the n-th update

The ramp keeps the first updates from leaning on the initialisation. Floating-point parameters and buffers
are averaged (BatchNorm statistics included); integer buffers follow the model.
"""

import contextlib

import torch


class WeightAverage:
    """The average of `model`'s state; `update` after each optimiser step, `applied` to evaluate with it."""

    def __init__(self, model, decay):
        if not 0.0 < decay < 1.0:
            raise ValueError(f'train.ema_decay: expected 0 < decay < 1 (or 0 for off), got {decay}')
        self.decay = float(decay)
        self.updates = 0
        self.state = {name: value.detach().clone() for name, value in model.state_dict().items()}

    def current_decay(self):
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model):
        self.updates += 1
        decay = self.current_decay()
        for name, value in model.state_dict().items():
            average = self.state[name]
            if average.is_floating_point():
                average.mul_(decay).add_(value.detach(), alpha=1.0 - decay)
            else:
                average.copy_(value)

    @contextlib.contextmanager
    def applied(self, model):
        """`model` holds the averaged weights inside the block and its own again after it."""
        own = {name: value.detach().clone() for name, value in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield model
        finally:
            model.load_state_dict(own)

    def state_dict(self):
        return {'decay': self.decay, 'updates': self.updates, 'state': self.state}

    def load_state_dict(self, saved):
        if set(saved['state']) != set(self.state):
            raise ValueError("the checkpoint's weight average does not fit the model")
        self.decay = float(saved['decay'])
        self.updates = int(saved['updates'])
        self.state = {name: value.to(self.state[name].device).clone() for name, value in saved['state'].items()}
