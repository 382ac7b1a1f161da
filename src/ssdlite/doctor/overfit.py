"""Overfit one batch: the shortest end-to-end proof that model, loss, matching and data fit together.

A healthy detector drives the loss on four images down by an order of magnitude in a couple of
hundred steps and then finds their boxes. When it does not, which part fails says where to look:
a loss that does not fall points at the model or optimizer (see the gradient check), a
classification loss that stays while the box loss falls points at the labels, and a falling loss
without recovered boxes points at matching, box coding or the postprocess.
"""

from __future__ import annotations

import copy
import time

import torch
from torchvision.ops import box_iou

from ssdlite.doctor.report import FAIL, PASS, Check
from ssdlite.models.batchnorm import recompute_bn_stats


def check_overfit(
    model: torch.nn.Module,
    images: list[torch.Tensor],
    targets: list[dict],
    steps: int = 200,
    lr: float = 3e-3,
    min_drop: float = 0.9,
    iou: float = 0.5,
    max_seconds: float | None = None,
) -> Check:
    """Train a copy of ``model`` on one batch and check the loss drop and the recovered boxes.

    The original model is untouched. Adam with a cosine schedule; BatchNorm statistics are
    recomputed on the batch before evaluating (fast training leaves the running averages behind).
    """
    model = copy.deepcopy(model).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    history = []
    start = time.perf_counter()
    for step in range(steps):
        losses = model(images, targets)
        loss = sum(losses.values())
        history.append({k: float(v.detach()) for k, v in losses.items()})
        if not torch.isfinite(loss):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    seconds = time.perf_counter() - start
    total = [sum(h.values()) for h in history]
    first, last = total[0], min(total[-5:])
    drop = 1 - last / first if first > 0 else 0.0

    recompute_bn_stats(model, [(images, targets)], next(model.parameters()).device, max_batches=1)
    model.eval()
    with torch.no_grad():
        detections = model(images)
    missed = []
    found = 0
    for i, (det, target) in enumerate(zip(detections, targets)):
        gt_boxes = torch.as_tensor(target["boxes"]).as_subclass(torch.Tensor).float()
        for box, label in zip(gt_boxes, target["labels"]):
            keep = (det["labels"] == label) & (det["scores"] >= 0.3)
            best = box_iou(box[None], det["boxes"][keep]).max().item() if keep.any() else 0.0
            if best >= iou:
                found += 1
            else:
                missed.append(f"image {i}: box {[round(v) for v in box.tolist()]} label {int(label)} (best IoU {best:.2f})")
    total_boxes = found + len(missed)
    data = {"history": history, "drop": drop, "found": found, "boxes": total_boxes, "steps": len(history), "seconds": seconds}
    summary = (
        f"{len(history)} steps in {seconds:.0f} s: loss {first:.3f} -> {last:.3f} ({drop:.0%} lower), "
        f"{found}/{total_boxes} boxes recovered (IoU >= {iou}, right label)"
    )
    if drop >= min_drop and not missed:
        return Check("overfit one batch", PASS, summary, data=data)
    first_parts, last_parts = history[0], history[-1]
    cls_drop = 1 - last_parts["classification"] / max(first_parts["classification"], 1e-12)
    box_drop = 1 - last_parts["bbox_regression"] / max(first_parts["bbox_regression"], 1e-12)
    if not all(map(lambda t: t == t and abs(t) != float("inf"), total)):
        cause = "the loss became non-finite: check the boxes (degenerate or outside the image) and lower the learning rate"
    elif drop < min_drop and box_drop >= min_drop and cls_drop < min_drop:
        cause = "the box loss falls but the classification loss does not: likely the labels (check the labels result)"
    elif drop < min_drop:
        cause = "the loss does not fall enough: likely the model or the loss (check gradient flow and registration)"
    else:
        cause = "the loss falls but boxes are not recovered: likely matching, box coding or the postprocess (check default-box coverage)"
    return Check("overfit one batch", FAIL, summary, missed, cause, data)
