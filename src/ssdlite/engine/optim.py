"""Optimizer and learning-rate schedule.

Following torchvision's detection reference, weight decay is not applied to normalization layers
(``--norm-weight-decay 0``); biases are excluded too, as is usual since they do not scale with the
weights. The schedule is a pure function of the optimizer step, so resuming restores it exactly from
the step counter alone (and, for a run whose length was re-planned, the warp below, kept in the checkpoint).

A ``--time-budget`` run may change its total number of steps on the way (``ssdlite.engine.budget``). Building the
schedule again for the new total would make the learning rate jump (the cosine's progress ``step / total``
changes at once). Instead the schedule planned at the start is read through a *warp*: a piecewise-linear map from
the training step to the step of the planned schedule, with a point ``(step, where the schedule is now)`` at every
re-plan and a last point ``(new total, planned total)``. The learning rate is continuous at the re-plan, follows
the planned curve's shape (warm-up, cosine, milestones) compressed or stretched over the steps left, and reaches
the planned final value at the new last step.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

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


#: ``[(training step, planned schedule step), ...]``, steps increasing; empty: the schedule as planned.
Warp = Sequence[Sequence[float]]


def schedule_step(step: float, warp: Warp) -> float:
    """Where training step ``step`` is on the planned schedule: as planned up to the first point of ``warp``,
    linear between its points, and on at the planned rate after its last."""
    if not warp or step <= warp[0][0]:
        return float(step)
    for (s0, v0), (s1, v1) in zip(warp, warp[1:]):
        if step <= s1:
            return v0 + (v1 - v0) * (step - s0) / (s1 - s0)
    last_step, last_value = warp[-1]
    return last_value + step - last_step


def restretch(warp: Warp, step: int, total: int, planned_total: int) -> list[list[float]]:
    """``warp`` after a re-plan at ``step`` (steps done) to ``total`` steps: unchanged up to ``step`` (so the
    learning rate does not jump), then linear to the planned schedule's end at ``total``."""
    if total <= step:
        raise ValueError(f"a re-planned total ({total}) must leave steps after the current one ({step})")
    here = schedule_step(step, warp)
    kept = [list(p) for p in warp if p[0] < step]
    return [*kept, [step, here], [total, planned_total]]


def warped_total(steps_per_epoch: int, epochs: int, warp: Warp) -> int:
    """The run's total steps: the warp's last point, or the planned ``steps_per_epoch * epochs``."""
    return int(warp[-1][0]) if warp else steps_per_epoch * epochs


def lr_factor(cfg: OptimConfig, steps_per_epoch: int, epochs: int, warp: Warp = ()) -> Callable[[float], float]:
    """``step -> multiplier of cfg.lr``: linear warm-up, then cosine, SGDR or multi-step, planned for ``epochs``
    and read through ``warp`` (see the module docstring)."""
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

    if warp:
        return lambda step: factor(schedule_step(step, warp))
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


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int, epochs: int, warp: Warp = ()):
    """A per-step ``LambdaLR``; its state is just the step counter (the warp is kept beside it)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch, epochs, warp))


def rewarp(scheduler: torch.optim.lr_scheduler.LambdaLR, cfg: OptimConfig, steps_per_epoch: int, epochs: int, warp: Warp) -> None:
    """Read ``scheduler``'s planned schedule through ``warp`` from its next step on. The learning rate of the step
    about to be taken is left as it is: :func:`restretch` keeps the schedule's value there."""
    factor = lr_factor(cfg, steps_per_epoch, epochs, warp)
    scheduler.lr_lambdas = [factor] * len(scheduler.lr_lambdas)
