"""Pascal VOC average precision at IoU 0.5, with the VOC2007 11-point and the VOC2010+ all-point rule.

The algorithm is the VOC devkit's (``VOCevaldet.m``, ``VOCap.m``):

* per class, all detections are ranked by score; a detection is a true positive when its
  highest-overlap ground-truth box of that class in its image has IoU >= 0.5 (the devkit's
  ``ovmax >= minoverlap``) and was not claimed by a higher-scored detection; otherwise it is a
  false positive (a duplicate or a miss);
* a detection whose best box is ``difficult`` is neither (it is dropped from the ranking);
  difficult boxes are not counted in the recall denominator. COCO ``iscrowd`` boxes are treated
  exactly like difficult ones;
* VOC2007: mean over recall levels ``np.arange(0, 1.1, 0.1)`` (the devkit's Python port, so
  numbers match the repositories built on it bit for bit) of the highest precision at recall >=
  that level; VOC2010+: area under the precision envelope at every recall change.

Conventions where the devkit is silent or unusable for float boxes: IoU in continuous coordinates
(see :func:`ssdlite.metrics.iou.box_iou`), score ties ranked in input order (a stable sort, as
MATLAB's ``sort``), and a class without (non-difficult) ground truth has no AP (NaN) and is left
out of the mean, as COCO does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssdlite.metrics.annotations import ImageDetections, ImageGroundTruth
from ssdlite.metrics.iou import box_iou

TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1
VOC07_RECALL_LEVELS = np.arange(0.0, 1.1, 0.1)  # (11,) exactly as the devkit's Python port builds them


def average_precision(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """AP from a ranked list's ``recall (P,)`` and ``precision (P,)``; 0.0 for an empty list."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        best = [precision[recall >= level].max(initial=0.0) for level in VOC07_RECALL_LEVELS]  # (11,)
        return float(np.sum(best) / 11.0)  # summed before dividing, so a perfect list gives exactly 1.0
    mrec = np.concatenate(([0.0], recall, [1.0]))  # (P + 2,)
    mpre = np.concatenate(([0.0], precision, [0.0]))  # (P + 2,)
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope: best precision at any higher recall
    change = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1  # indices where recall steps up
    return float(np.sum((mrec[change] - mrec[change - 1]) * mpre[change]))


def match_image(gt: ImageGroundTruth, det: ImageDetections, iou_threshold: float = 0.5) -> np.ndarray:
    """Outcome of each detection of one image: ``(D,)`` int8, TRUE_POSITIVE / FALSE_POSITIVE / IGNORED.

    Only the order of an image's own detections matters to its matching, so images are matched
    one at a time and the outcomes ranked globally afterwards; this equals the devkit's single
    global pass.
    """
    outcome = np.full(len(det), FALSE_POSITIVE, dtype=np.int8)  # (D,)
    if len(det) == 0 or gt.labels.size == 0:
        return outcome
    order = np.argsort(-det.scores, kind="stable")  # (D,) best first
    iou = box_iou(det.boxes[order], gt.boxes)  # (D, M)
    iou[det.labels[order][:, None] != gt.labels[None, :]] = -np.inf  # only boxes of the same class compete
    best = iou.argmax(axis=1)  # (D,) first maximum, as the devkit's strict ``ov > ovmax``
    best_iou = iou[np.arange(len(order)), best]  # (D,)
    ignore = gt.ignore
    claimed = np.zeros(gt.labels.shape[0], dtype=bool)  # (M,)
    for rank in np.flatnonzero(best_iou >= iou_threshold):
        box = best[rank]
        if ignore[box]:
            outcome[order[rank]] = IGNORED
        elif not claimed[box]:
            outcome[order[rank]] = TRUE_POSITIVE
            claimed[box] = True
    return outcome


@dataclass(frozen=True)
class VOCClassResult:
    """One class's ranked detections and AP.

    Attributes:
        num_gt: ground-truth boxes that count (not difficult, not crowd).
        scores: ``(P,)`` scores of the ranked detections, best first (ignored ones dropped).
        recall, precision: ``(P,)`` after each ranked detection; the precision-recall curve.
        ap: VOC2010+ all-point AP; ap07: VOC2007 11-point AP. NaN when ``num_gt == 0``.
    """

    num_gt: int
    scores: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    ap: float
    ap07: float


def evaluate_voc(
    ground_truths: Sequence[ImageGroundTruth],
    detections: Sequence[ImageDetections],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> list[VOCClassResult]:
    """Per-class VOC results for labels ``1..num_classes`` (entry ``k - 1`` is label ``k``)."""
    if len(ground_truths) != len(detections):
        raise ValueError(f"got ground truth for {len(ground_truths)} images but detections for {len(detections)}")
    outcomes = [match_image(gt, det, iou_threshold) for gt, det in zip(ground_truths, detections)]
    # Concatenated in image order, so a stable sort ranks score ties in input order.
    all_outcomes = np.concatenate([np.zeros(0, np.int8), *outcomes])  # (T,)
    all_scores = np.concatenate([np.zeros(0), *(d.scores for d in detections)])  # (T,)
    all_labels = np.concatenate([np.zeros(0, np.int64), *(d.labels for d in detections)])  # (T,)
    counted_labels = np.concatenate([np.zeros(0, np.int64), *(g.labels[~g.ignore] for g in ground_truths)])
    num_gt = np.bincount(counted_labels, minlength=num_classes + 1)  # (K + 1,)

    results = []
    for label in range(1, num_classes + 1):
        keep = (all_labels == label) & (all_outcomes != IGNORED)
        scores = all_scores[keep]  # (P,)
        order = np.argsort(-scores, kind="stable")
        scores = scores[order]
        tp = np.cumsum(all_outcomes[keep][order] == TRUE_POSITIVE)  # (P,)
        precision = tp / np.arange(1, tp.size + 1)  # (P,) no ignored entries, so never 0 / 0
        npos = int(num_gt[label])
        if npos == 0:
            recall = np.zeros_like(precision)
            ap = ap07 = float("nan")
        else:
            recall = tp / npos
            ap = average_precision(recall, precision)
            ap07 = average_precision(recall, precision, use_07_metric=True)
        results.append(VOCClassResult(npos, scores, recall, precision, ap, ap07))
    return results


def mean_average_precision(results: Sequence[VOCClassResult], use_07_metric: bool = False) -> float:
    """Mean AP over classes that have ground truth; NaN when none has."""
    aps = [r.ap07 if use_07_metric else r.ap for r in results if r.num_gt > 0]
    return float(np.mean(aps)) if aps else float("nan")
