"""The detection confusion matrix: which classes a box was detected as, or that it was missed.

It reads the error types of :mod:`ssdlite.metrics.errors`, so it agrees with AP and with the error table
on what a hit is. Confident detections (score >= ``score_threshold``) count: a box counts at
``[true class, predicted class]`` once for each class it is detected as (a VOC true positive of its own
class, or a classification error at it, IoU >= ``iou_threshold``), so a card boxed both as a jack and as
a queen counts in both columns; a box detected as nothing counts at ``[true class, background]``; every
other confident detection (a duplicate, a badly placed box, one on background) counts at
``[background, predicted class]``. Difficult and crowd boxes, and detections on them, are not counted,
as in the VOC metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssdlite.metrics.annotations import ImageDetections, ImageGroundTruth
from ssdlite.metrics.errors import CONFIDENT_SCORE, classify_image, image_confusion


def confusion_matrix(
    ground_truths: Sequence[ImageGroundTruth],
    detections: Sequence[ImageDetections],
    num_classes: int,
    iou_threshold: float = 0.5,
    score_threshold: float = CONFIDENT_SCORE,
) -> np.ndarray:
    """``(K + 1, K + 1)`` int64 counts; rows are true classes, columns predicted classes.

    Row/column ``k - 1`` is label ``k``; the last row and column are "background" (no box / no detection).
    """
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for gt, det in zip(ground_truths, detections):
        image_confusion(gt, det, classify_image(gt, det, t_f=iou_threshold), det.scores >= score_threshold, matrix)
    return matrix
