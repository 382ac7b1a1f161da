"""Model checks shared by the registration, overfit and variant tests: every layer learns and is saved; the model can overfit.

A plain module, not ``conftest`` (see tests/shared_paths.py for why).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import box_iou

from ssdlite.doctor.gradients import wiring_gradients
from ssdlite.models.batchnorm import recompute_bn_stats
from ssdlite.models.registration import find_unregistered


def training_step_gradients(model: nn.Module) -> dict[str, torch.Tensor | None]:
    """A wiring check, not training: the doctor's :func:`wiring_gradients` (every default box a positive, BatchNorm
    fixed), so no level escapes because no box of these two images matches there or a normalization cancels it."""
    images = [torch.rand(3, 120, 100), torch.rand(3, 128, 128)]
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 90.0], [50.0, 5.0, 95.0, 40.0]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[0.0, 0.0, 127.0, 127.0], [30.0, 40.0, 50.0, 60.0]]), "labels": torch.tensor([3, 1])},
    ]
    return wiring_gradients(model, images, targets)


def all_layers_learn(model: nn.Module) -> list[str]:
    """Names of problems: a layer used in forward that gets no gradient or is not saved."""
    problems = []
    grads = training_step_gradients(model)
    for name, grad in grads.items():
        if grad is None or not torch.isfinite(grad).all() or grad.abs().sum() == 0:
            problems.append(f"{name}: no finite non-zero gradient")
    state = model.state_dict()
    problems += [f"{name}: not in the state dict" for name in grads if name not in state]
    # A layer that runs in forward but is invisible to parameters() never gets here: count them directly.
    problems += [f"unregistered: {item}" for item in find_unregistered(model)]
    return problems


def synthetic_pair(size=160):
    """Two noise images with a few flat-coloured shapes: (images, targets) with labels 1..3."""
    g = torch.Generator().manual_seed(0)
    images, targets = [], []
    layouts = [
        [(1, (12, 14, 70, 80)), (2, (90, 30, 150, 100)), (3, (40, 110, 120, 150))],
        [(3, (20, 20, 140, 90)), (1, (100, 100, 150, 150))],
    ]
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for layout in layouts:
        image = torch.rand(3, size, size, generator=g) * 0.4
        for label, (x1, y1, x2, y2) in layout:
            colour = torch.rand(3, 1, generator=g) * 0.5 + 0.5
            inside = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
            if label == 2:  # an ellipse inscribed in the box
                cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
                inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            if label == 3:  # a frame
                border = 6
                inner = (xx >= x1 + border) & (xx < x2 - border) & (yy >= y1 + border) & (yy < y2 - border)
                inside = inside & ~inner
            image[:, inside] = colour
        images.append(image)
        targets.append(
            {
                "boxes": torch.tensor([box for _, box in layout], dtype=torch.float32),
                "labels": torch.tensor([label for label, _ in layout]),
            }
        )
    return images, targets


def overfit_problems(model: nn.Module, images, targets, steps: int = 150, lr: float = 3e-3, min_iou: float = 0.7) -> list[str]:
    """Train on ``images`` alone; the problems left: loss not down 10x, or a box not found with IoU >= ``min_iou``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    first = None
    for _ in range(steps):
        losses = model(images, targets)
        loss = sum(losses.values())
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    problems = []
    if loss.item() > 0.1 * first:
        problems.append(f"loss only went from {first:.3f} to {loss.item():.3f}")
    # Fast steps leave the running BN statistics behind the weights: recompute them once.
    recompute_bn_stats(model, [(images, targets)], torch.device("cpu"), max_batches=1)
    model.eval()
    with torch.no_grad():
        detections = model(images)
    for det, target in zip(detections, targets):
        for box, label in zip(target["boxes"], target["labels"]):
            found = det["boxes"][(det["labels"] == label) & (det["scores"] > 0.5)]
            iou = box_iou(box[None], found)
            if not iou.numel() or iou.max() < min_iou:
                problems.append(f"box {box.tolist()} of class {int(label)} not found (best IoU {float(iou.max()) if iou.numel() else 0:.2f})")
    return problems
