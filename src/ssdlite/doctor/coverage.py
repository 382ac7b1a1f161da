"""Default-box coverage: can the default boxes match the training boxes at all?

SSD matches a ground truth to default boxes with IoU >= 0.5 (SSD paper, section 2.2). A box
whose best default box overlaps it less than that is matched only through the "best default
box" rule, to a poorly fitting box, and small objects with no default box of their size are the
known weak spot of SSDLite. This check measures, at the model's input size, the share of
training boxes with a default box of IoU >= 0.5 and the mean best IoU, by size (COCO's small /
medium / large at the input size) and by aspect ratio. :func:`fit_anchors` searches the default
box settings that maximize that share.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from ssdlite.doctor.report import FAIL, PASS, WARN, Check
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


def best_ious(boxes: torch.Tensor, default_boxes: DefaultBoxes, chunk: int = 4096) -> torch.Tensor:
    """``(B,)`` best IoU of each normalized box with any default box."""
    anchors = default_boxes.xyxy()
    return torch.cat([box_iou(part, anchors).max(dim=1).values for part in boxes.split(chunk)]) if len(boxes) else boxes.new_zeros(0)


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


def check_coverage(
    annotations: Sequence[dict[str, Any]],
    default_boxes: DefaultBoxes,
    size: int,
    min_covered: float = 0.9,
    fail_below: float = 0.5,
) -> Check:
    """Share of training boxes with a default box of IoU >= 0.5: WARN below ``min_covered``, FAIL below ``fail_below``."""
    boxes = normalized_boxes(annotations)
    if boxes.shape[0] == 0:
        return Check("default-box coverage", WARN, "no training boxes to measure", suggestion="check the dataset")
    ious = best_ious(boxes, default_boxes)
    table = coverage_table(boxes, ious, size)
    evidence = [
        f"{group} {name}: {s['count']} boxes, {s['covered']:.0%} covered, mean best IoU {s['mean_best_iou']:.2f}"
        for group, bins in (("size", table["by_size"]), ("aspect", table["by_aspect"]))
        for name, s in bins.items()
        if s["count"]
    ]
    overall = table["all"]
    summary = f"{overall['covered']:.1%} of {overall['count']} boxes have a default box with IoU >= 0.5 at input {size} (mean best IoU {overall['mean_best_iou']:.2f})"
    data = {"table": table, "ious": ious.tolist(), "areas": ((boxes[:, 2:] - boxes[:, :2]).prod(dim=1) * size * size).tolist()}
    if overall["covered"] < min_covered:
        weakest = min(
            ((name, s) for name, s in {**table["by_size"], **table["by_aspect"]}.items() if s["count"]),
            key=lambda item: item[1]["covered"],
        )
        return Check(
            "default-box coverage",
            FAIL if overall["covered"] < fail_below else WARN,
            summary,
            evidence,
            f"weakest group: {weakest[0]} ({weakest[1]['covered']:.0%} covered); run `ssdlite anchors fit --data ...` to "
            "search scales and aspect ratios, or raise the input size for small objects",
            data,
        )
    return Check("default-box coverage", PASS, summary, evidence, data=data)


def fit_anchors(
    annotations: Sequence[dict[str, Any]],
    feature_sizes: Sequence[tuple[int, int]],
    base: ModelConfig,
    min_scales: Sequence[float] = (0.05, 0.1, 0.15, 0.2),
    max_scales: Sequence[float] = (0.6, 0.75, 0.95),
    aspect_ratio_sets: Sequence[tuple[float, ...]] = ((2.0,), (2.0, 3.0), (1.5, 3.0), (2.0, 4.0)),
    reduce_lowest: Sequence[bool] = (True, False),
) -> list[dict[str, Any]]:
    """Grid search of default-box settings; returns every setting with its coverage, best first.

    Each setting is ``base`` (the model's resolved configuration: its clipping and lowest scale) with
    ``min_scale``, ``max_scale``, ``aspect_ratios`` and ``reduce_lowest`` replaced and explicit
    scales and steps dropped (they would override the searched ones).

    Ranked by the share of boxes with IoU >= 0.5, then mean best IoU, then fewer default boxes
    (a cheaper head).
    """
    boxes = normalized_boxes(annotations)
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


def plot_coverage(check: Check, handle) -> None:
    """Best IoU against box size (input pixels), with the 0.5 matching threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ious, areas = np.asarray(check.data.get("ious", [])), np.asarray(check.data.get("areas", []))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.scatter(np.sqrt(areas), ious, s=4, alpha=0.5)
    ax1.axhline(0.5, color="red", lw=1, label="matching threshold 0.5")
    ax1.set_xscale("log")
    ax1.set_xlabel("box size sqrt(area), input pixels")
    ax1.set_ylabel("best IoU with a default box")
    ax1.legend()
    ax2.hist(ious, bins=40, range=(0, 1))
    ax2.axvline(0.5, color="red", lw=1)
    ax2.set_xlabel("best IoU")
    ax2.set_ylabel("boxes")
    fig.suptitle(check.summary, fontsize=9)
    fig.tight_layout()
    fig.savefig(handle, format="png", dpi=100)
    if hasattr(handle, "close"):
        handle.close()
    plt.close(fig)
