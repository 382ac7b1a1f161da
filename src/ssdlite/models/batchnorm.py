"""The model's BatchNorm layers outside plain training: frozen for small batches, recomputed before evaluating.

**Freezing** (:func:`freeze_batchnorm`). With small batches, batch statistics are noisy; keeping the
ImageNet statistics of a pretrained backbone is the usual remedy, but only for weights trained with
those statistics: on weights with folded BatchNorm it lets channel means drift until the features stop
depending on the image (docs/training.md).

**Precise BN** (:func:`recompute_bn_stats`). SSDLite's BatchNorm layers follow the TensorFlow reference
(momentum 0.03 in PyTorch's terms), so their running statistics average the batch statistics of the
last ~30 steps of *changing* weights, and start from mean 0 / variance 1. On long runs that does not
matter; on short ones (a demo, a few hundred steps on a small dataset) the running statistics can be
far from the statistics of the final weights, and an eval-mode model that trained well scores near
zero. The EMA weights have the same problem in a stronger form: their running statistics were never
computed with them at all. The remedy of Wu & Johnson, "Rethinking 'Batch' in BatchNorm" (2021),
section 3: before evaluating, recompute the statistics as an exact average over a number of training
batches with the final weights (BN layers in train mode with ``momentum=None``, no gradient, no
weight change).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ssdlite.models.modes import evaluating


def freeze_batchnorm(model: nn.Module, which: str) -> None:
    """Put BatchNorm layers of ``which`` ("backbone", "all"; "none" does nothing) in eval mode with
    fixed affine parameters.

    ``model.train()`` puts them back in train mode, so call this after every ``model.train()``;
    :func:`ssdlite.models.modes.in_mode` and :func:`recompute_bn_stats` leave them frozen.
    """
    if which == "none":
        return
    root = model.core.backbone if which == "backbone" else model
    for module in root.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for p in module.parameters(recurse=False):
                p.requires_grad_(False)


@torch.no_grad()
def recompute_bn_stats(
    model: nn.Module, batches: Iterable, device: torch.device, max_batches: int, skip: nn.Module | None = None
) -> int:
    """Replace the BatchNorm running means and variances by their average over ``batches``.

    Args:
        model: an SSDLite (``preprocess`` + ``core``); the mode of each of its layers is restored
            afterwards (BatchNorm frozen by :func:`freeze_batchnorm` stays frozen).
        batches: ``(images, targets, ...)`` as the training loader yields them (only images are used).
        device: where to run.
        max_batches: use at most this many batches.
        skip: a submodule whose BatchNorm layers keep their statistics (a frozen backbone).

    Returns:
        The number of batches used (0 leaves the statistics as they were).
    """
    kept = set(skip.modules()) if skip is not None else set()
    norms = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m not in kept
    ]
    if not norms or max_batches <= 0:
        return 0
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum) for m in norms]
    used = 0
    with evaluating(model):  # dropout and the like off; only the recomputed norms in train mode
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: the exact mean over the batches seen
            m.train()
        try:
            for images, *_ in batches:
                if used >= max_batches:
                    break
                images = images.to(device) if isinstance(images, torch.Tensor) else [im.to(device) for im in images]
                x, _ = model.preprocess(images)  # (N, 3, S, S)
                model.core(x)
                used += 1
        finally:
            for m, (mean, var, count, momentum) in zip(norms, saved):
                m.momentum = momentum
                if used == 0:
                    m.running_mean.copy_(mean)
                    m.running_var.copy_(var)
                    m.num_batches_tracked.copy_(count)
    return used
