"""`DetectionMetrics`: feed it batches of predictions and ground truth, get every number at the end.

VOC and COCO AP rank detections over the whole dataset, so nothing can be computed per batch;
the accumulator keeps each image's arrays (a few KB) and computes once in :meth:`compute`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ssdlite.metrics.annotations import ImageDetections, ImageGroundTruth
from ssdlite.metrics.coco import COCO_STAT_NAMES, COCOResult, evaluate_coco
from ssdlite.metrics.confusion import confusion_matrix
from ssdlite.metrics.errors import BACKGROUND_IOU, CONFIDENT_SCORE, ERRORS, ErrorAnalysis, analyze_errors
from ssdlite.metrics.voc import VOCClassResult, evaluate_voc, mean_average_precision


def _number(value: float) -> float | None:
    """A metric for a JSON-ready dict: None where it is undefined (no ground truth)."""
    return None if math.isnan(value) else float(value)


class DetectionMetrics:
    """VOC mAP@0.5 (both rules), COCO metrics and per-class APs over a dataset.

    Args:
        classes: foreground class names; label ``k`` is ``classes[k - 1]``.
        iou_threshold: IoU for the VOC metric (the devkit's 0.5).
        score_threshold: detections counted in the error counts and the confusion matrix (AP takes them all).

    Example::

        metrics = DetectionMetrics(dataset.classes)
        for predictions, targets in batches:
            metrics.update(predictions, targets)
        result = metrics.compute()  # {"voc07_map50": ..., "coco_map": ..., "per_class": {...}, ...}
    """

    def __init__(self, classes: Sequence[str], iou_threshold: float = 0.5, score_threshold: float = CONFIDENT_SCORE) -> None:
        if not classes:
            raise ValueError("DetectionMetrics needs at least one class name")
        self.classes = list(classes)
        self.iou_threshold = iou_threshold
        self.score_threshold = score_threshold
        self.reset()

    def reset(self) -> None:
        self.ground_truths: list[ImageGroundTruth] = []
        self.detections: list[ImageDetections] = []
        self.image_ids: list[int | None] = []
        self.voc: list[VOCClassResult] | None = None  # set by compute(), read by the plots
        self.coco: COCOResult | None = None
        self.errors: ErrorAnalysis | None = None
        self.seconds = 0.0  # time spent in update() and compute()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_images(self) -> int:
        return len(self.ground_truths)

    def _check_labels(self, labels: np.ndarray, what: str) -> None:
        if labels.size and (labels.min() < 1 or labels.max() > self.num_classes):
            bad = labels[(labels < 1) | (labels > self.num_classes)][0]
            raise ValueError(f"{what} label {bad} is outside 1..{self.num_classes} ({self.num_classes} classes)")

    def update(self, predictions: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> None:
        """Add one batch.

        Args:
            predictions: per image ``{"boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,)}``, tensors or arrays.
            targets: per image ``{"boxes" (M, 4) xyxy, "labels" (M,)}`` and optionally ``difficult``,
                ``iscrowd`` (bool (M,)), ``area`` (M,) and ``image_id``; boxes in the same pixels
                as the predictions.
        """
        start = time.perf_counter()
        if len(predictions) != len(targets):
            raise ValueError(f"got {len(predictions)} predictions but {len(targets)} targets")
        for prediction, target in zip(predictions, targets):
            gt = ImageGroundTruth.from_mapping(target)
            det = ImageDetections.from_mapping(prediction)
            self._check_labels(gt.labels, "ground-truth")
            self._check_labels(det.labels, "predicted")
            self.ground_truths.append(gt)
            self.detections.append(det)
            image_id = target.get("image_id")
            self.image_ids.append(None if image_id is None else int(image_id))
        self.seconds += time.perf_counter() - start

    def _coco_image_ids(self) -> list[int] | None:
        ids = self.image_ids
        if any(i is None for i in ids) or len(set(ids)) != len(ids):
            return None
        return ids  # type: ignore[return-value]

    def compute(self) -> dict[str, Any]:
        """All metrics as a JSON-ready dict; undefined values (a class without ground truth) are None.

        Keys: ``voc07_map50``, ``voc_map50``, ``coco_map``, ``coco_map50``, ``coco_map75``,
        ``coco_map_{small,medium,large}``, ``coco_mar{1,10,100}``, ``coco_mar_{small,medium,large}``,
        ``per_class`` (name -> ``num_gt``, ``num_detections``, ``voc_ap50``, ``voc07_ap50``,
        ``coco_ap``, ``coco_ap50``, ``errors``: :meth:`ErrorAnalysis.to_dict`'s row), ``errors`` (the
        thresholds and ``dap``, each error type's AP gain averaged over the classes with ground truth),
        ``num_images``, ``num_ground_truth``, ``num_detections``, ``metric_seconds``.
        """
        if not self.ground_truths:
            raise ValueError("no images to evaluate: call update() first")
        start = time.perf_counter()
        self.voc = evaluate_voc(self.ground_truths, self.detections, self.num_classes, self.iou_threshold)
        self.coco = evaluate_coco(self.ground_truths, self.detections, self.num_classes, self._coco_image_ids())
        self.errors = analyze_errors(
            self.ground_truths, self.detections, self.num_classes, self.score_threshold, self.voc, self.iou_threshold
        )
        errors = self.errors.to_dict(self.classes)
        all_det_labels = np.concatenate([d.labels for d in self.detections])
        det_counts = np.bincount(all_det_labels, minlength=self.num_classes + 1)
        per_class = {}
        for k, name in enumerate(self.classes):
            per_class[name] = {
                "num_gt": self.voc[k].num_gt,
                "num_detections": int(det_counts[k + 1]),
                "voc_ap50": _number(self.voc[k].ap),
                "voc07_ap50": _number(self.voc[k].ap07),
                "coco_ap": _number(self.coco.per_class_ap[k]),
                "coco_ap50": _number(self.coco.per_class_ap50[k]),
                "errors": errors[name],
            }
        result: dict[str, Any] = {
            "voc07_map50": _number(mean_average_precision(self.voc, use_07_metric=True)),
            "voc_map50": _number(mean_average_precision(self.voc)),
        }
        result.update({f"coco_{name}": _number(self.coco.stats[name]) for name in COCO_STAT_NAMES})
        result["per_class"] = per_class
        with_gt = self.errors.dap[self.errors.num_gt > 0]  # (K', len(ERRORS))
        result["errors"] = {
            "score_threshold": self.score_threshold,
            "iou_foreground": self.iou_threshold,
            "iou_background": BACKGROUND_IOU,
            "dap": {e: _number(float(np.nanmean(v))) if np.isfinite(v).any() else None for e, v in zip(ERRORS, with_gt.T)},
        }
        result["num_images"] = self.num_images
        result["num_ground_truth"] = int(sum(r.num_gt for r in self.voc))
        result["num_detections"] = int(all_det_labels.size)
        self.seconds += time.perf_counter() - start
        result["metric_seconds"] = self.seconds
        return result

    def confusion_matrix(self, iou_threshold: float | None = None, score_threshold: float | None = None) -> np.ndarray:
        """``(K + 1, K + 1)`` counts, rows true class, columns predicted, last row/column background; the
        thresholds default to this object's."""
        iou = self.iou_threshold if iou_threshold is None else iou_threshold
        score = self.score_threshold if score_threshold is None else score_threshold
        return confusion_matrix(self.ground_truths, self.detections, self.num_classes, iou, score)
