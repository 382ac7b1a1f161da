"""The detection confusion matrix: which class a box was detected as, or that it was missed.

Per image, confident detections (score >= ``score_threshold``) are taken best first and each
claims the unclaimed ground-truth box it overlaps most, whatever its class, when the IoU reaches
``iou_threshold``. A claimed pair counts at ``[true class, predicted class]``; a detection that
claims nothing counts at ``[background, predicted class]`` (a false alarm); a box nobody claims
counts at ``[true class, background]`` (a miss). A detection whose best box is difficult or crowd
is not counted, and such boxes are never counted as missed, as in the VOC metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssdlite.metrics.annotations import ImageDetections, ImageGroundTruth
from ssdlite.metrics.iou import box_iou


def confusion_matrix(
    ground_truths: Sequence[ImageGroundTruth],
    detections: Sequence[ImageDetections],
    num_classes: int,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.25,
) -> np.ndarray:
    """``(K + 1, K + 1)`` int64 counts; rows are true classes, columns predicted classes.

    Row/column ``k - 1`` is label ``k``; the last row and column are "background" (no box / no detection).
    """
    background = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for gt, det in zip(ground_truths, detections):
        confident = np.flatnonzero(det.scores >= score_threshold)
        confident = confident[np.argsort(-det.scores[confident], kind="stable")]  # (C,) best first
        iou = box_iou(det.boxes[confident], gt.boxes)  # (C, M)
        ignore = gt.ignore
        claimed = np.zeros(gt.labels.shape[0], dtype=bool)  # (M,)
        for row, d in enumerate(confident):
            predicted = int(det.labels[d]) - 1
            overlaps = np.where(claimed, -1.0, iou[row])  # (M,) claimed boxes are out of reach
            box = int(overlaps.argmax()) if overlaps.size else -1
            if box < 0 or overlaps[box] < iou_threshold:
                matrix[background, predicted] += 1
            elif not ignore[box]:
                claimed[box] = True
                matrix[int(gt.labels[box]) - 1, predicted] += 1
        missed = ~claimed & ~ignore
        np.add.at(matrix, (gt.labels[missed] - 1, background), 1)
    return matrix
