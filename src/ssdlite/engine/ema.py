"""Exponential moving average of the weights, used for validation, ``best.pt`` and the exported model.

Averaging the weights over the last few thousand steps smooths the noise of small-batch SGD and
usually validates better than the raw weights (Polyak averaging; the EMA of timm and YOLOv5).
The decay is warmed up, ``decay * (1 - exp(-updates / tau))``, so the average does not remember
the random initialization on short runs. BatchNorm running statistics are averaged like weights.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of ``model`` whose state follows ``model``'s with an exponential moving average.

    Args:
        model: the (unwrapped) model being trained.
        decay: the asymptotic decay.
        tau: warm-up constant of the decay, in updates.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, tau: float = 2000.0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = 0

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        ema_state, state = self.module.state_dict(), model.state_dict()
        floats = [k for k, v in ema_state.items() if v.is_floating_point()]
        torch._foreach_lerp_([ema_state[k] for k in floats], [state[k].detach() for k in floats], 1 - d)
        for k, v in ema_state.items():
            if not v.is_floating_point():
                v.copy_(state[k])  # counters such as BatchNorm's num_batches_tracked
