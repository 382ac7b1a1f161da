"""Optimizer and learning-rate schedule.

Following torchvision's detection reference, weight decay is not applied to normalization layers
(``--norm-weight-decay 0``); biases are excluded too, as is usual since they do not scale with the
weights. The schedule is a pure function of the optimizer step, so resuming restores it exactly from
the step counter alone.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

import torch
from torch import nn

from ssdlite.engine.config import OptimConfig

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: convolution/linear weights with weight decay, norm parameters and biases without."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if isinstance(module, _NORM_TYPES) or name == "bias":
                no_decay.append(param)
            else:
                decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def lr_factor(cfg: OptimConfig, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """``step -> multiplier of cfg.lr``: linear warm-up, then cosine, SGDR or multi-step."""
    total = max(1, steps_per_epoch * epochs)
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total - 1)

    def cosine(progress: float) -> float:
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def after_warmup(step: int) -> float:
        t = step - warmup  # steps since the end of warm-up
        if cfg.schedule == "cosine":
            return cosine(t / max(1, total - warmup))
        if cfg.schedule == "sgdr":
            # Loshchilov & Hutter (2017): cosine cycles, each sgdr_mult times longer, restarting at lr.
            t, period = _sgdr_position(t, max(1.0, cfg.sgdr_period * steps_per_epoch), cfg.sgdr_mult)
            return cosine(t / period)
        if cfg.schedule == "multistep":
            boundaries = sorted(int(m * total) for m in cfg.milestones)
            return cfg.gamma ** bisect.bisect_right(boundaries, step)
        raise ValueError(f"unknown schedule {cfg.schedule!r}")

    def factor(step: int) -> float:
        if step < warmup:
            alpha = step / warmup
            return (cfg.warmup_factor * (1 - alpha) + alpha) * after_warmup(warmup)
        return after_warmup(step)

    return factor


def _sgdr_position(t: float, first: float, mult: float) -> tuple[float, float]:
    """``(steps into the current cycle, its length)`` at ``t`` steps after the warm-up, for cycles of ``first``,
    ``first * mult``, ``first * mult**2``, ... steps (``mult >= 1``). In closed form, so the cost does not grow with
    the step (a loop over the cycles never ends for a ``mult`` below 1, whose cycles shrink to nothing)."""
    if mult < 1:
        raise ValueError(f"sgdr_mult must be >= 1, got {mult}")
    if mult == 1:
        cycle = t // first
        return t - cycle * first, first
    cycle = math.floor(math.log1p(t * (mult - 1) / first) / math.log(mult))
    start, period = first * (mult**cycle - 1) / (mult - 1), first * mult**cycle
    if t - start >= period:  # the logarithm's rounding at a cycle boundary: at most one cycle off either way
        start, period = start + period, period * mult
    elif t < start:
        period /= mult
        start -= period
    return t - start, period


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int, epochs: int):
    """A per-step ``LambdaLR``; its state is just the step counter."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch, epochs))
