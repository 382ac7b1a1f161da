"""Recomputing BatchNorm statistics ("precise BN").

Running statistics are an exponential average (momentum 0.03 here) of batch statistics taken
while the weights were changing; after fast training, or for EMA weights that were never run
forward, they lag the weights and eval-mode outputs degrade, sometimes to a constant.
Wu & Johnson, "Rethinking 'Batch' in BatchNorm" (2021), section 3: recompute them with the final
weights as a plain average over a few batches.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def recompute_batch_norm(model: nn.Module, batches: Iterable[list[torch.Tensor]], max_batches: int = 50) -> int:
    """Reset every BatchNorm's running statistics and average them over ``batches`` of images.

    ``model`` must have ``preprocess`` and ``core`` (an :class:`~ssdlite.models.SSDLite`). Returns the
    number of batches used. The model's train/eval state and the BN momenta are restored.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    used = 0
    try:
        for images in batches:
            if used >= max_batches:
                break
            x, _ = model.preprocess(images)  # (N, 3, S, S)
            model.core(x)
            used += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return used
