"""Why detections fail: each detection and each missed box typed as in TIDE, with the AP each type costs.

Bolya et al., "TIDE: A General Toolbox for Identifying Object Detection Errors" (ECCV 2020), sec. 2.2-2.3,
at the VOC metric's IoU: foreground threshold ``t_f = 0.5`` (:mod:`ssdlite.metrics.voc`'s match), background
threshold ``t_b = 0.1``. Difficult and crowd boxes are ignore regions, as in the VOC metric.

Every detection of an image gets one type (:func:`classify_image`):

* ``tp``: a VOC true positive (:func:`ssdlite.metrics.voc.match_image`, so the same detections AP counts).
* ``dupe``: IoU >= t_f with a box of its class, but a higher-scored detection already claimed that box.
* ``cls``: IoU >= t_f with a box of another class: the right place, the wrong class.
* ``loc``: IoU in [t_b, t_f) with a box of its class: the right class, the box off.
* ``both``: IoU in [t_b, t_f) with a box of another class.
* ``bkg``: IoU < t_b with every box.

Where two definitions hold, the one in this order wins, so the better overlap decides: a queen box at IoU 0.8
on a jack is a ``cls`` error even if it also touches a queen at 0.2. A detection VOC ignores (its best box of
its class is difficult or crowd), or one that would be ``cls`` on an ignored box, gets no type. A box is
*missed* when no detection is ``tp`` or ``cls`` at it or ``loc`` near it (TIDE: "not already covered by a
classification or localization error").

The counts (:class:`ErrorAnalysis`) take the confident detections (``score >= score_threshold``, as the
confusion matrix): a detection's type depends only on higher-scored ones, so thresholding changes no type,
only which detections are counted and which boxes are missed. The AP each type costs takes every detection,
as AP does; it is TIDE's oracle (sec. 2.3), each type fixed alone with everything else left as it is:

* ``cls``: relabelled to the class of its box; suppressed when that box already has a true positive (it
  would be a duplicate);
* ``loc``: its box replaced by the ground-truth box; suppressed when that box already has a true positive;
* ``both``, ``dupe``, ``bkg``: suppressed;
* ``missed``: the missed boxes removed from the ground truth (fewer boxes to find).

``dap`` is the VOC2010+ all-point AP50 (``voc_ap50``) after the fix minus before, per class; NaN where AP is
undefined before or after (a class without boxes, or one whose every box is missed). The types' gains
overlap, so they need not add up to ``1 - AP``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssdlite.metrics.annotations import ImageDetections, ImageGroundTruth
from ssdlite.metrics.iou import box_iou
from ssdlite.metrics.voc import IGNORED, TRUE_POSITIVE, VOCClassResult, evaluate_voc, match_image

#: TIDE's thresholds (sec. 2.2): at ``FOREGROUND_IOU`` a box is found (VOC's 0.5), under ``BACKGROUND_IOU`` a
#: detection is on background.
FOREGROUND_IOU, BACKGROUND_IOU = 0.5, 0.1
#: The default score from which a detection counts as "detected" in the counts and the confusion matrix.
CONFIDENT_SCORE = 0.25
#: Detection types: their codes in :attr:`ImageErrors.kind` are their positions here.
TYPES = ("tp", "cls", "loc", "both", "dupe", "bkg")
TP, CLS, LOC, BOTH, DUPE, BKG = range(len(TYPES))
UNTYPED = -1
#: False-positive types, and the errors the oracle fixes (the false positives and the missed boxes).
FALSE_POSITIVES = TYPES[1:]
ERRORS = (*FALSE_POSITIVES, "missed")


@dataclass(frozen=True)
class ImageErrors:
    """The types of one image's detections.

    Attributes:
        kind: ``(D,)`` int8, an index into :data:`TYPES`, or :data:`UNTYPED` for a detection on an ignore region.
        box: ``(D,)`` int64, the ground-truth box the type refers to (``tp``/``dupe``: the box it claims or would;
            ``cls``/``both``: the other class's box it overlaps most; ``loc``: its class's box it overlaps most);
            -1 for ``bkg`` and untyped ones.
    """

    kind: np.ndarray
    box: np.ndarray


def classify_image(
    gt: ImageGroundTruth, det: ImageDetections, t_f: float = FOREGROUND_IOU, t_b: float = BACKGROUND_IOU
) -> ImageErrors:
    """Each detection's type (module docstring); ``t_f`` is also the VOC match threshold."""
    n = len(det)
    if n == 0 or gt.labels.size == 0:
        return ImageErrors(np.full(n, BKG, np.int8), np.full(n, -1, np.int64))
    outcome = match_image(gt, det, t_f)  # (D,) TP / FP / IGNORED, as AP counts them
    iou = box_iou(det.boxes, gt.boxes)  # (D, M)
    same = det.labels[:, None] == gt.labels[None, :]  # (D, M)
    counted = ~gt.ignore[None, :]  # (1, M)

    def best(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per detection the box of ``mask`` it overlaps most (the first, as the devkit) and that IoU (-1 if none)."""
        masked = np.where(mask, iou, -1.0)  # (D, M)
        index = masked.argmax(axis=1)  # (D,)
        return index, masked[np.arange(n), index]

    claim, claim_iou = best(same)  # the box VOC matched it to (ignore regions included, as match_image)
    near, near_iou = best(same & counted)
    other, other_iou = best(~same & counted)
    _, ignored_iou = best(~same & ~counted)
    conditions = [
        outcome == IGNORED,
        outcome == TRUE_POSITIVE,
        claim_iou >= t_f,  # a false positive that reaches a box of its class: that box was claimed before
        other_iou >= t_f,
        ignored_iou >= t_f,  # a class error on an ignore region: not counted, as VOC ignores such boxes
        near_iou >= t_b,
        other_iou >= t_b,
    ]
    kind = np.select(conditions, [UNTYPED, TP, DUPE, CLS, UNTYPED, LOC, BOTH], default=BKG).astype(np.int8)  # (D,)
    box = np.select(
        [(kind == TP) | (kind == DUPE), (kind == CLS) | (kind == BOTH), kind == LOC], [claim, other, near], default=-1
    ).astype(np.int64)  # (D,)
    return ImageErrors(kind, box)


def _missed(gt: ImageGroundTruth, types: ImageErrors, keep: np.ndarray) -> np.ndarray:
    """``(M,)`` bool: counted boxes no kept detection is ``tp``/``cls`` at or ``loc`` near."""
    covering = keep & np.isin(types.kind, (TP, CLS, LOC))  # (D,)
    covered = np.zeros(gt.labels.shape[0], dtype=bool)  # (M,)
    covered[types.box[covering]] = True
    return ~covered & ~gt.ignore


def image_confusion(gt: ImageGroundTruth, det: ImageDetections, types: ImageErrors, keep: np.ndarray, matrix: np.ndarray) -> None:
    """Add one image to the ``(K + 1, K + 1)`` confusion ``matrix`` (see :func:`ssdlite.metrics.confusion_matrix`).

    ``keep (D,)`` selects the detections counted. A box counts once per class it is detected as (``tp`` or
    ``cls`` at it); a further detection with the same class at the same box, and every ``dupe``, ``loc``,
    ``both`` and ``bkg``, counts in the background row; a box detected as no class in the background column.
    """
    background = matrix.shape[0] - 1
    at_box = keep & np.isin(types.kind, (TP, CLS))  # (D,)
    pairs = types.box[at_box] * (background + 2) + det.labels[at_box]  # (P,) one key per (box, label)
    first = np.zeros(at_box.sum(), dtype=bool)
    first[np.unique(pairs, return_index=True)[1]] = True  # unique keeps each pair's first occurrence
    boxes, labels = types.box[at_box][first], det.labels[at_box][first]
    np.add.at(matrix, (gt.labels[boxes] - 1, labels - 1), 1)
    alarms = keep & (types.kind != UNTYPED)
    alarms[np.flatnonzero(at_box)[first]] = False
    np.add.at(matrix[background], det.labels[alarms] - 1, 1)
    found = np.zeros(gt.labels.shape[0], dtype=bool)  # (M,)
    found[boxes] = True
    unfound = ~found & ~gt.ignore
    np.add.at(matrix[:, background], gt.labels[unfound] - 1, 1)


def top_detections(gt: ImageGroundTruth, det: ImageDetections, types: ImageErrors, matrix: np.ndarray) -> None:
    """Add one image to the ``(K, K)`` ``matrix`` of :attr:`ErrorAnalysis.top`: each counted box's highest-scored
    detection at it (``tp`` or ``cls``, any score) in row box class, column detection class."""
    at_box = np.flatnonzero(np.isin(types.kind, (TP, CLS)))  # (P,)
    at_box = at_box[np.argsort(-det.scores[at_box], kind="stable")]  # best first
    boxes, first = np.unique(types.box[at_box], return_index=True)  # each box's first (best) detection
    keep = ~gt.ignore[boxes]
    np.add.at(matrix, (gt.labels[boxes[keep]] - 1, det.labels[at_box[first[keep]]] - 1), 1)


def _fixed(
    gt: ImageGroundTruth, det: ImageDetections, types: ImageErrors, error: str
) -> tuple[ImageGroundTruth, ImageDetections]:
    """One image with every error of type ``error`` fixed by TIDE's oracle (module docstring)."""
    if error == "missed":
        missed = _missed(gt, types, np.ones(len(det), dtype=bool))
        return ImageGroundTruth(gt.boxes, gt.labels, gt.difficult | missed, gt.iscrowd, gt.area), det
    code = TYPES.index(error)
    keep = types.kind != code  # (D,) the oracle suppresses these, except the relabelled or re-boxed below
    if code in (CLS, LOC):
        boxes, labels = det.boxes.copy(), det.labels.copy()
        taken = np.zeros(gt.labels.shape[0], dtype=bool)  # (M,) boxes that have a true positive
        taken[types.box[types.kind == TP]] = True
        for d in np.argsort(-det.scores, kind="stable"):  # best first: the first fix of a box wins it
            b = types.box[d]
            if types.kind[d] != code or taken[b]:
                continue
            taken[b] = keep[d] = True
            if code == CLS:
                labels[d] = gt.labels[b]
            else:
                boxes[d] = gt.boxes[b]
        det = ImageDetections(boxes, det.scores, labels)
    return gt, ImageDetections(det.boxes[keep], det.scores[keep], det.labels[keep])


@dataclass(frozen=True)
class ErrorAnalysis:
    """The errors of a dataset's detections, per class (row/entry ``k - 1`` is label ``k``).

    Attributes:
        score_threshold: the score from which a detection is counted.
        num_gt: ``(K,)`` counted (not difficult, not crowd) boxes.
        counts: ``(K, len(TYPES))`` the counted detections of each class by type.
        missed: ``(K,)`` missed boxes of each class.
        confusion: ``(K + 1, K + 1)`` the confusion matrix of the counted detections (:func:`image_confusion`).
        dap: ``(K, len(ERRORS))`` the AP50 (all-point) gained by fixing each error type; NaN without ground truth.
        top: ``(K, K)`` at any score, as AP ranks them: boxes of class ``i`` whose highest-scored detection at
            them (``tp`` or ``cls``) is of class ``j``. An undertrained model's detections can all score under
            ``score_threshold``; this is where its classification errors still show (:func:`top_detections`).
    """

    score_threshold: float
    num_gt: np.ndarray
    counts: np.ndarray
    missed: np.ndarray
    confusion: np.ndarray
    dap: np.ndarray
    top: np.ndarray

    def taken_as(self, k: int, top: bool = False) -> dict[int, int]:
        """Label ``k``'s boxes detected as each other label (``cls`` at them), most first: ``{label: boxes}``;
        ``top``: those whose highest-scored detection, at any score, is of that label."""
        row = self.top[k - 1] if top else self.confusion[k - 1, :-1]  # (K,)
        order = np.argsort(-row, kind="stable")
        return {int(j) + 1: int(row[j]) for j in order if row[j] and j != k - 1}

    def to_dict(self, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per class name, JSON-ready: ``num_gt``, ``detections`` (counted), each type's count, ``missed``,
        ``taken_as`` (other class name -> boxes of this class detected as it), ``top_taken_as`` (the same at any
        score: boxes whose highest-scored detection is of the other class) and ``dap`` (error -> AP gain or None).
        """
        table = {}
        for k, name in enumerate(classes):
            row: dict[str, Any] = {"num_gt": int(self.num_gt[k]), "detections": int(self.counts[k].sum())}
            row.update({t: int(c) for t, c in zip(TYPES, self.counts[k])})
            row["missed"] = int(self.missed[k])
            row["taken_as"] = {classes[j - 1]: n for j, n in self.taken_as(k + 1).items()}
            row["top_taken_as"] = {classes[j - 1]: n for j, n in self.taken_as(k + 1, top=True).items()}
            row["dap"] = {e: None if np.isnan(v) else float(v) for e, v in zip(ERRORS, self.dap[k])}
            table[name] = row
        return table


def analyze_errors(
    ground_truths: Sequence[ImageGroundTruth],
    detections: Sequence[ImageDetections],
    num_classes: int,
    score_threshold: float = CONFIDENT_SCORE,
    base: Sequence[VOCClassResult] | None = None,
    t_f: float = FOREGROUND_IOU,
    t_b: float = BACKGROUND_IOU,
) -> ErrorAnalysis:
    """Type every detection and missed box, count them per class, and measure each type's AP cost.

    ``base`` is :func:`ssdlite.metrics.evaluate_voc`'s result on the same data at IoU ``t_f``, when already computed.
    """
    if len(ground_truths) != len(detections):
        raise ValueError(f"got ground truth for {len(ground_truths)} images but detections for {len(detections)}")
    k = num_classes
    types = [classify_image(gt, det, t_f, t_b) for gt, det in zip(ground_truths, detections)]
    counts = np.zeros((k + 1, len(TYPES)), dtype=np.int64)  # row 0 unused: labels are 1..K
    missed = np.zeros(k + 1, dtype=np.int64)
    confusion = np.zeros((k + 1, k + 1), dtype=np.int64)
    top = np.zeros((k, k), dtype=np.int64)
    for gt, det, t in zip(ground_truths, detections, types):
        keep = det.scores >= score_threshold  # (D,)
        typed = keep & (t.kind != UNTYPED)
        np.add.at(counts, (det.labels[typed], t.kind[typed]), 1)
        missed += np.bincount(gt.labels[_missed(gt, t, keep)], minlength=k + 1)
        image_confusion(gt, det, t, keep, confusion)
        top_detections(gt, det, t, top)
    base = base if base is not None else evaluate_voc(ground_truths, detections, k, t_f)
    before = np.array([r.ap for r in base])  # (K,)
    dap = np.empty((k, len(ERRORS)))
    for e, error in enumerate(ERRORS):
        fixed = [_fixed(gt, det, t, error) for gt, det, t in zip(ground_truths, detections, types)]
        dap[:, e] = np.array([r.ap for r in evaluate_voc([g for g, _ in fixed], [d for _, d in fixed], k, t_f)]) - before
    num_gt = np.array([r.num_gt for r in base], dtype=np.int64)
    return ErrorAnalysis(score_threshold, num_gt, counts[1:], missed[1:], confusion, dap, top)
