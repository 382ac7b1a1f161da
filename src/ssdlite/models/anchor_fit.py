"""Default-box coverage search: the share of boxes a set of default boxes can match, and the settings that maximize it.

SSD matches a ground truth to default boxes with IoU >= 0.5 (SSD paper, section 2.2); a box whose best
default box overlaps it less is matched only through the "best default box" rule, to a poorly fitting box.
These functions measure that share at the model's input size (:func:`best_ious`, :func:`coverage_table`)
and grid-search the default-box settings (:func:`fit_anchors`). ``ssdlite doctor`` reports it, ``ssdlite
anchors fit`` and the training recipe (:mod:`ssdlite.engine.recipe`) search it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from ssdlite.errors import DataError
from ssdlite.models.anchors import DefaultBoxes
from ssdlite.models.config import ModelConfig
from ssdlite.models.factory import default_boxes_for

SIZE_BINS = (("small", 0, 32**2), ("medium", 32**2, 96**2), ("large", 96**2, float("inf")))
ASPECT_BINS = (("tall <1:2.5", 0, 1 / 2.5), ("tall 1:2.5-1:1.5", 1 / 2.5, 1 / 1.5), ("square-ish", 1 / 1.5, 1.5),
               ("wide 1.5-2.5:1", 1.5, 2.5), ("wide >2.5:1", 2.5, float("inf")))


def normalized_boxes(annotations: Sequence[dict[str, Any]]) -> torch.Tensor:
    """All boxes of ``annotations`` (``get_annotation`` dicts) divided by their image size: ``(B, 4)`` in [0, 1]."""
    boxes = []
    for ann in annotations:
        b = torch.as_tensor(np.asarray(ann["boxes"], dtype=np.float32)).reshape(-1, 4)
        scale = torch.tensor([ann["width"], ann["height"], ann["width"], ann["height"]], dtype=torch.float32)
        boxes.append(b / scale)
    return torch.cat(boxes) if boxes else torch.zeros(0, 4)


def sample_boxes(boxes: torch.Tensor, max_boxes: int | None) -> torch.Tensor:
    """At most ``max_boxes`` of ``(B, 4)`` boxes: a fixed random sample (the same for the same boxes), since a
    coverage search costs boxes x default boxes x settings and 2000 boxes measure a share to about 1 point."""
    if max_boxes is None or len(boxes) <= max_boxes:
        return boxes
    return boxes[torch.randperm(len(boxes), generator=torch.Generator().manual_seed(0))[:max_boxes]]


def best_ious(boxes: torch.Tensor, default_boxes: DefaultBoxes, chunk: int = 4096) -> torch.Tensor:
    """``(B,)`` best IoU of each normalized box with any default box.

    Where every location of a map has the same box shapes (clipping ``none`` or ``size``), only the cells next to
    the box's centre are measured: for one shape the overlap is ``ox(|dx|) * oy(|dy|)``, each factor non-increasing
    in its own distance, and the two areas are fixed, so the IoU is largest at the nearest centre in x and in y. The
    3 x 3 cells around it (against rounding) give the maximum over every default box (to float rounding, 2e-7, where
    several cells tie) at about 1% of the work: about 300 IoUs per box against 25k default boxes at 448 with a
    stride-8 map. Clipping to the image changes the shapes at the border: there every default box is measured.
    """
    if len(boxes) == 0:
        return boxes.new_zeros(0)
    anchors = default_boxes.xyxy()
    if default_boxes.clip == "image":
        return torch.cat([box_iou(part, anchors).max(dim=1).values for part in boxes.split(chunk)])
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (N, 2) as (x, y)
    near = torch.arange(-1, 2)  # the nearest cell and one either side of it
    best = boxes.new_zeros(len(boxes))
    start = 0
    for level, ((h, w), per_cell) in enumerate(zip(default_boxes.feature_sizes, default_boxes.boxes_per_location)):
        fy, fx = default_boxes.cells_per_unit(level)  # centres at (i + 0.5) / f
        col = ((centre[:, 0:1] * fx).floor().long() + near).clamp(0, w - 1)  # (N, 3)
        row = ((centre[:, 1:2] * fy).floor().long() + near).clamp(0, h - 1)  # (N, 3)
        cells = (row[:, :, None] * w + col[:, None, :]).reshape(-1, 9)  # (N, 9)
        index = start + cells[:, :, None] * per_cell + torch.arange(per_cell)  # (N, 9, per_cell)
        best = torch.maximum(best, _paired_iou(boxes[:, None, :], anchors[index.reshape(len(boxes), -1)]).amax(dim=1))
        start += h * w * per_cell
    return best


def _paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of ``(..., 4)`` xyxy boxes ``a`` and ``b`` element by element (broadcast), as :func:`box_iou` computes it."""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter)


def coverage_table(boxes: torch.Tensor, ious: torch.Tensor, size: int, threshold: float = 0.5) -> dict[str, Any]:
    """Share with IoU >= ``threshold`` and mean best IoU, overall and per size and aspect bin."""
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-9) * size  # (B, 2) in input pixels
    area = wh[:, 0] * wh[:, 1]
    aspect = wh[:, 0] / wh[:, 1]

    def stats(mask: torch.Tensor) -> dict[str, float]:
        n = int(mask.sum())
        if n == 0:
            return {"count": 0, "covered": float("nan"), "mean_best_iou": float("nan")}
        return {"count": n, "covered": float((ious[mask] >= threshold).float().mean()), "mean_best_iou": float(ious[mask].mean())}

    return {
        "all": stats(torch.ones_like(ious, dtype=torch.bool)),
        "by_size": {name: stats((area >= lo) & (area < hi)) for name, lo, hi in SIZE_BINS},
        "by_aspect": {name: stats((aspect >= lo) & (aspect < hi)) for name, lo, hi in ASPECT_BINS},
    }


def fit_anchors(
    annotations: Sequence[dict[str, Any]],
    feature_sizes: Sequence[tuple[int, int]],
    base: ModelConfig,
    min_scales: Sequence[float] = (0.05, 0.1, 0.15, 0.2),
    max_scales: Sequence[float] = (0.6, 0.75, 0.95),
    aspect_ratio_sets: Sequence[tuple[float, ...]] = ((2.0,), (2.0, 3.0), (1.5, 3.0), (2.0, 4.0)),
    reduce_lowest: Sequence[bool] = (True, False),
    max_boxes: int | None = None,
) -> list[dict[str, Any]]:
    """Grid search of default-box settings; returns every setting with its coverage, best first.

    Each setting is ``base`` (the model's resolved configuration: its clipping and lowest scale) with
    ``min_scale``, ``max_scale``, ``aspect_ratios`` and ``reduce_lowest`` replaced and explicit
    scales and steps dropped (they would override the searched ones).

    Ranked by the share of boxes with IoU >= 0.5, then mean best IoU, then fewer default boxes
    (a cheaper head). ``max_boxes`` measures on a fixed random sample of that many boxes.
    """
    boxes = sample_boxes(normalized_boxes(annotations), max_boxes)
    if len(boxes) == 0:
        # Every coverage would be 0/0: a "best" setting ranked on NaNs means nothing.
        raise DataError(f"no boxes in the {len(annotations)} annotations: default boxes are fitted to a dataset's boxes")
    results = []
    for min_scale, max_scale, ratios, reduce in itertools.product(min_scales, max_scales, aspect_ratio_sets, reduce_lowest):
        if min_scale >= max_scale:
            continue
        setting = base.replace(min_scale=min_scale, max_scale=max_scale, aspect_ratios=ratios, reduce_lowest=reduce, scales=None, steps=None)
        db = default_boxes_for(setting, list(feature_sizes))
        ious = best_ious(boxes, db)
        results.append(
            {
                "min_scale": min_scale,
                "max_scale": max_scale,
                "aspect_ratios": list(ratios),
                "reduce_lowest": reduce,
                "num_anchors": int(db.boxes.shape[0]),
                "covered": float((ious >= 0.5).float().mean()) if len(ious) else 0.0,
                "mean_best_iou": float(ious.mean()) if len(ious) else 0.0,
            }
        )
    results.sort(key=lambda r: (-r["covered"], -r["mean_best_iou"], r["num_anchors"]))
    return results
