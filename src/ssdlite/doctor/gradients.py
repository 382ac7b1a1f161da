"""Gradient flow: one forward/backward on a real batch reaches every trainable parameter."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from ssdlite.doctor.report import FAIL, PASS, WARN, Check
from ssdlite.models.modes import in_mode


def part_of(name: str, depth: int = 3) -> str:
    """``core.head.classification.predictors.0.1.weight`` -> ``core.head.classification``."""
    return ".".join(name.split(".")[:depth])


def _regression_level(name: str) -> int | None:
    """``core.head.regression.predictors.3.1.weight`` -> 3; None for anything else."""
    marker = "head.regression.predictors."
    if marker not in name:
        return None
    return int(name.split(marker)[1].split(".")[0])


@torch.no_grad()
def _levels_without_positives(model: nn.Module, targets: list[dict], images: list[torch.Tensor]) -> set[int]:
    """Feature levels with no positive default box for this batch (their box regression gets no gradient)."""
    if not hasattr(model, "encode_targets"):
        return set()
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    cls_targets, _ = model.encode_targets(targets, sizes)  # (N, A)
    positives = (cls_targets > 0).any(dim=0)  # (A,)
    idle, start = set(), 0
    for level, count in enumerate(model.default_boxes.boxes_per_level):
        if not positives[start : start + count].any():
            idle.add(level)
        start += count
    return idle


def wiring_gradients(model: nn.Module, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor | None]:
    """``{name: grad}`` of the training loss with every default box a positive (IoU threshold 0) and BatchNorm a fixed
    affine map (eval mode): a gradient for every parameter wired into the loss, whatever this batch's boxes.

    The training loss itself can leave wired parameters at exactly zero: on an untrained model and a few boxes,
    hard-negative mining may pick no default box of the coarse levels, so their classification branch (and the neck
    layers that feed only them) get nothing; and a per-channel shift before a train-mode BatchNorm on a 1x1 map is
    removed by it. The model's modes and threshold are restored; the gradients are left in ``.grad``.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    threshold = model.iou_threshold
    model.zero_grad(set_to_none=True)
    with in_mode(model, training=True), in_mode(*norms, training=False):
        model.iou_threshold = 0.0
        try:
            sum(model(images, targets).values()).backward()
        finally:
            model.iou_threshold = threshold
    return {name: p.grad for name, p in model.named_parameters()}


def _usable(grad: torch.Tensor | None) -> bool:
    return grad is not None and bool(torch.isfinite(grad).all()) and bool(grad.abs().sum() > 0)


def check_gradient_flow(model: nn.Module, images: list[torch.Tensor], targets: list[dict]) -> Check:
    """Backpropagate the training loss once and name parameters with no, zero or non-finite gradients.

    Parameters with ``requires_grad=False`` are reported as frozen (WARN: fine when intended). The
    model is left as it was: weights untouched, gradients cleared, and the BatchNorm running statistics
    that the train-mode forward updates are put back (a check must not change what it checks).
    """
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    with in_mode(model, training=True):  # the training loss needs train mode
        model.zero_grad(set_to_none=True)
        losses = model(images, targets)
        loss = sum(losses.values())
        idle_levels = _levels_without_positives(model, targets, images)
        evidence, frozen, idle, zero, norms = [], [], [], [], defaultdict(float)
        if not torch.isfinite(loss):
            evidence.append(f"the loss itself is not finite: { {k: float(v) for k, v in losses.items()} }")
        else:
            loss.backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            frozen.append(name)
            continue
        if p.grad is None:
            evidence.append(f"{name}: no gradient (its output never reaches the loss: detached or unused)")
        elif not torch.isfinite(p.grad).all():
            evidence.append(f"{name}: non-finite gradient")
        elif p.grad.abs().sum() == 0:
            if _regression_level(name) in idle_levels:
                idle.append(name)  # no positive default box on its level in this batch: zero is right
            else:
                zero.append(name)
        else:
            norms[part_of(name)] += float(p.grad.float().norm() ** 2)
    model.zero_grad(set_to_none=True)
    unused: set[str] = set()  # wired, idle for this batch
    if zero and hasattr(model, "iou_threshold"):
        wired = wiring_gradients(model, images, targets)
        unused = {name for name in zero if _usable(wired[name])}
        model.zero_grad(set_to_none=True)
    evidence += [f"{name}: gradient exactly zero" for name in zero if name not in unused]
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    part_norms = {part: value**0.5 for part, value in norms.items()}
    data = {
        "grad_norm_per_part": part_norms,
        "frozen": frozen,
        "idle_regression_levels": sorted(idle_levels),
        "idle_parameters": sorted(unused),
        "loss": {k: float(v.detach()) for k, v in losses.items()},
    }
    norms_text = ", ".join(f"{part} {value:.3g}" for part, value in part_norms.items())
    if unused:
        norms_text += (f"; {len(unused)} parameters ({', '.join(sorted({part_of(n) for n in unused}))}) get no gradient from "
                       "this batch's matched and mined default boxes but do when every default box counts: wired, idle "
                       "for these images")
    if idle:
        norms_text += (
            f"; box regression of levels {sorted(idle_levels)} has no positive default box in this batch, so its"
            " zero gradient is expected"
        )
    if evidence:
        parts = sorted({part_of(e.split(":")[0]) for e in evidence if ":" in e})
        return Check(
            "gradient flow",
            FAIL,
            f"{len(evidence)} trainable parameters get no usable gradient (in {', '.join(parts) or 'the loss'})",
            evidence,
            "look for .detach(), .data, torch.no_grad() or numpy round-trips in those layers' forward, and for layers "
            "that are built but never called",
            data,
        )
    if frozen:
        return Check(
            "gradient flow",
            WARN,
            f"every trainable parameter gets a gradient; {len(frozen)} are frozen (requires_grad=False)",
            [f"frozen: {', '.join(sorted({part_of(n) for n in frozen}))}", f"gradient norms: {norms_text}"],
            "frozen on purpose (e.g. a frozen backbone) is fine; otherwise set requires_grad=True",
            data,
        )
    summary = "every parameter gets a finite, non-zero gradient" if not unused else "every parameter is wired to the loss"
    return Check("gradient flow", PASS, f"{summary}; norms: {norms_text}", data=data)
