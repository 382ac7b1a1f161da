"""Default-box coverage: can the default boxes match the training boxes at all?

SSD matches a ground truth to default boxes with IoU >= 0.5 (SSD paper, section 2.2). A box
whose best default box overlaps it less than that is matched only through the "best default
box" rule, to a poorly fitting box, and small objects with no default box of their size are the
known weak spot of SSDLite. This check measures, at the model's input size, the share of
training boxes with a default box of IoU >= 0.5 and the mean best IoU, by size (COCO's small /
medium / large at the input size) and by aspect ratio. :func:`ssdlite.models.anchor_fit.fit_anchors` searches the default
box settings that maximize that share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ssdlite.doctor.report import FAIL, PASS, WARN, Check
from ssdlite.models.anchor_fit import best_ious, coverage_table, normalized_boxes
from ssdlite.models.anchors import DefaultBoxes


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
