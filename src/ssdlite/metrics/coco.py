"""COCO box metrics through pycocotools, from in-memory arrays.

The arrays are turned into pycocotools ``COCO`` objects exactly as ``COCO(file)`` and
``loadRes(results)`` would build them (xywh boxes, detection area ``w * h``, ids from 1) and
scored by ``COCOeval`` with its default parameters: AP over IoU 0.50:0.95, AP50, AP75, AP by
object size, AR at 1/10/100 detections. ``iscrowd`` boxes keep their COCO meaning (a detection
inside one is ignored, several may match it).

VOC ``difficult`` boxes become COCO *ignore* boxes: a detection that matches one (ordinary IoU,
at most one detection each) is neither a true nor a false positive, and the box is not counted
as missed. pycocotools has this notion (``gt['ignore']``) but derives it only from ``iscrowd``;
:class:`_IgnoreAwareCOCOeval` adds ``difficult`` to it and changes nothing else. Marking difficult
boxes as crowd instead would score them with crowd IoU (intersection over detection area).

Everything COCOeval computes before ``summarize()`` is per class, so large evaluations split the
classes over forked processes (Linux) and stack the results: the same numbers, bit for bit.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval, Params

from ssdlite.metrics.annotations import ImageDetections, ImageGroundTruth

# The 12 numbers of COCOeval.summarize() for boxes, in its order.
COCO_STAT_NAMES = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "mar1",
    "mar10",
    "mar100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


# The most detections per image and class that COCOeval reads (its largest maxDets).
MAX_DETECTIONS = max(Params(iouType="bbox").maxDets)


class _IgnoreAwareCOCOeval(COCOeval):
    """COCOeval that also ignores ground truth flagged ``difficult`` (see the module docstring)."""

    def _prepare(self) -> None:
        super()._prepare()  # sets gt['ignore'] = iscrowd
        for boxes in self._gts.values():
            for gt in boxes:
                gt["ignore"] = int(bool(gt["ignore"]) or bool(gt.get("difficult", 0)))


def _xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)  # (N, 4)


def _coco_from_dict(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
        coco.createIndex()
    return coco


def build_coco_ground_truth(ground_truths: Sequence[ImageGroundTruth], classes: Sequence[int], image_ids: Sequence[int]) -> COCO:
    """A pycocotools ``COCO`` for the ground-truth boxes of ``classes`` (category id ``k`` is label ``k``)."""
    images = [{"id": int(i)} for i in image_ids]
    categories = [{"id": int(k), "name": str(k)} for k in classes]
    annotations = []
    for image_id, gt in zip(image_ids, ground_truths):
        keep = np.isin(gt.labels, classes)  # (M,)
        columns = (_xywh(gt.boxes[keep]), gt.labels[keep], gt.iscrowd[keep], gt.difficult[keep], gt.coco_area()[keep])
        for box, label, crowd, difficult, area in zip(*(c.tolist() for c in columns)):
            annotations.append(
                {
                    "id": len(annotations) + 1,  # pycocotools treats id 0 as "unmatched"
                    "image_id": int(image_id),
                    "category_id": label,
                    "bbox": box,
                    "area": area,
                    "iscrowd": int(crowd),
                    "difficult": int(difficult),
                }
            )
    return _coco_from_dict({"images": images, "categories": categories, "annotations": annotations})


def _top_per_class(det: ImageDetections, k: int) -> np.ndarray:
    """Indices (input order) of each class's ``k`` best detections, ties broken by input order.

    COCOeval looks at no more than ``maxDets[-1]`` detections per image and class, chosen by
    exactly this stable ranking, so the others can be left out without changing any number.
    """
    order = np.argsort(-det.scores, kind="stable")  # (D,) best first
    grouped = order[np.argsort(det.labels[order], kind="stable")]  # (D,) by class, best first within each
    labels = det.labels[grouped]
    rank = np.arange(len(grouped)) - np.searchsorted(labels, labels, side="left")  # (D,) rank within its class
    return np.sort(grouped[rank < k])


def build_coco_detections(detections: Sequence[ImageDetections], coco_gt: COCO, image_ids: Sequence[int]) -> COCO:
    """A pycocotools ``COCO`` for the detections of ``coco_gt``'s classes, as ``coco_gt.loadRes`` builds it.

    Detections beyond the 100 best of a class in an image are left out: COCOeval never reads them
    (see :func:`_top_per_class`), and a one-class model can return 200 per image. ``loadRes``
    itself is not used because it fails on an empty result list, which is a valid input here.
    """
    classes = coco_gt.getCatIds()
    annotations = []
    for image_id, det in zip(image_ids, detections):
        keep = np.isin(det.labels, classes)  # (D,)
        boxes, scores, labels = det.boxes[keep], det.scores[keep], det.labels[keep]
        if len(scores) > MAX_DETECTIONS:
            top = _top_per_class(ImageDetections(boxes, scores, labels), MAX_DETECTIONS)
            boxes, scores, labels = boxes[top], scores[top], labels[top]
        # One tolist() per image, not per box: this loop sees every detection of the dataset.
        for (x, y, w, h), score, label in zip(_xywh(boxes).tolist(), scores.tolist(), labels.tolist()):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(image_id),
                    "category_id": label,
                    "bbox": [x, y, w, h],
                    "score": score,
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"], "annotations": annotations}
    return _coco_from_dict(dataset)


@dataclass(frozen=True)
class COCOResult:
    """COCOeval's summary and per-class APs.

    Attributes:
        stats: the 12 summary numbers by :data:`COCO_STAT_NAMES`; NaN where COCOeval reports -1
            (no ground truth in that range).
        per_class_ap: ``(K,)`` AP@[.50:.95] for labels ``1..K``; NaN for a class without ground truth.
        per_class_ap50: ``(K,)`` AP@.50, same convention.
    """

    stats: dict[str, float]
    per_class_ap: np.ndarray
    per_class_ap50: np.ndarray


# Below this many detections pycocotools finishes in well under a second: not worth a fork.
MIN_DETECTIONS_PER_PROCESS = 20_000
# In a worker process: (ground truths, detections, image ids), inherited through fork, not pickled.
_WORKER_DATA: tuple | None = None


def _worker_count(num_classes: int, num_detections: int) -> int:
    """Processes for the per-class work: forked ones only where fork is safe and cheap (Linux)."""
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if multiprocessing.current_process().daemon:  # e.g. inside a Pool worker: no children allowed
        return 1
    return max(1, min(os.cpu_count() or 1, num_classes, num_detections // MIN_DETECTIONS_PER_PROCESS))


def _evaluate_classes(data: tuple, classes: list[int]) -> dict[str, np.ndarray]:
    """COCOeval's ``evaluate()`` + ``accumulate()`` on the labels ``classes`` only.

    Everything COCOeval computes before ``summarize()`` is per class (matching per image and
    class, precision/recall accumulated per class), so classes evaluated apart and stacked on the
    class axis give exactly the arrays of one run over all of them.
    """
    ground_truths, detections, image_ids = data
    coco_gt = build_coco_ground_truth(ground_truths, classes, image_ids)
    coco_dt = build_coco_detections(detections, coco_gt, image_ids)
    evaluator = _IgnoreAwareCOCOeval(coco_gt, coco_dt, iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints every step
        evaluator.evaluate()
        evaluator.accumulate()
    return {key: evaluator.eval[key] for key in ("precision", "recall", "scores")}


def _set_worker_data(data: tuple) -> None:
    global _WORKER_DATA
    _WORKER_DATA = data


def _evaluate_share(classes: list[int]) -> dict[str, np.ndarray]:
    return _evaluate_classes(_WORKER_DATA, classes)


def _shares(ground_truths, detections, num_classes: int, workers: int) -> list[list[int]]:
    """The labels split into ``workers`` groups of about equal box counts (largest class first)."""
    counts = np.bincount(
        np.concatenate([np.zeros(0, np.int64), *(g.labels for g in ground_truths), *(d.labels for d in detections)]),
        minlength=num_classes + 1,
    )
    shares: list[list[int]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for label in sorted(range(1, num_classes + 1), key=lambda k: -counts[k]):
        least = loads.index(min(loads))
        shares[least].append(label)
        loads[least] += int(counts[label])
    return [sorted(share) for share in shares if share]


def _per_class_mean(precision: np.ndarray) -> np.ndarray:
    """``(K,)`` mean of ``precision (T, R, K)`` per class over COCOeval's valid (> -1) entries, NaN if none.

    ``np.mean`` over the same selection as ``summarize()``, so a single class gives its AP bit for bit.
    """
    means = []
    for values in np.moveaxis(precision, 2, 0):  # (T, R) per class
        valid = values[values > -1]
        means.append(float(np.mean(valid)) if valid.size else float("nan"))
    return np.array(means)


def evaluate_coco(
    ground_truths: Sequence[ImageGroundTruth],
    detections: Sequence[ImageDetections],
    num_classes: int,
    image_ids: Sequence[int] | None = None,
    processes: int | None = None,
) -> COCOResult:
    """Run ``COCOeval`` (boxes, default parameters) quietly on the arrays.

    Args:
        image_ids: unique ids for the images (default ``0..N-1``). pycocotools ranks score ties
            across images in image-id order, so passing a dataset's own ids reproduces a direct
            pycocotools run on its files to the last digit.
        processes: split the classes over this many forked processes (Linux); default: one per
            CPU core when there is enough work (:func:`_worker_count`). The numbers do not depend on it.
    """
    if len(ground_truths) != len(detections):
        raise ValueError(f"got ground truth for {len(ground_truths)} images but detections for {len(detections)}")
    image_ids = list(range(len(ground_truths))) if image_ids is None else [int(i) for i in image_ids]
    if len(set(image_ids)) != len(image_ids):
        raise ValueError("image_ids must be unique")
    data = (ground_truths, detections, image_ids)
    num_detections = sum(len(d) for d in detections)
    workers = _worker_count(num_classes, num_detections) if processes is None else max(1, min(processes, num_classes))
    if workers == 1:
        shares = [list(range(1, num_classes + 1))]
        parts = [_evaluate_classes(data, shares[0])]
    else:
        shares = _shares(ground_truths, detections, num_classes, workers)
        with warnings.catch_warnings():
            # Python >= 3.12 warns on fork() in a multi-threaded process (torch's thread pool).
            # The workers only run pycocotools and numpy on their copy of the data and need no
            # lock another thread may hold (the reasoning behind torch's forked DataLoader workers).
            warnings.filterwarnings("ignore", message=".*fork\\(\\) may lead to deadlocks", category=DeprecationWarning)
            context = multiprocessing.get_context("fork")
            with context.Pool(len(shares), initializer=_set_worker_data, initargs=(data,)) as pool:
                parts = pool.map(_evaluate_share, shares)
    order = np.argsort(np.concatenate(shares))  # class axis back to labels 1..K, COCOeval's order
    evaluator = _IgnoreAwareCOCOeval(iouType="bbox")  # summarize() reads only its params and eval
    evaluator.eval = {
        "precision": np.concatenate([p["precision"] for p in parts], axis=2)[:, :, order],  # (T, R, K, A, M)
        "recall": np.concatenate([p["recall"] for p in parts], axis=1)[:, order],  # (T, K, A, M)
        "scores": np.concatenate([p["scores"] for p in parts], axis=2)[:, :, order],  # (T, R, K, A, M)
    }
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()
    stats = {name: (float(v) if v > -1 else float("nan")) for name, v in zip(COCO_STAT_NAMES, evaluator.stats)}
    # precision: (T IoU thresholds, R recall levels, K classes, A area ranges, M max-dets);
    # area "all" is index 0 and maxDets=100 the last, as in summarize().
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K)
    iou50 = int(np.flatnonzero(np.isclose(evaluator.params.iouThrs, 0.5))[0])
    return COCOResult(
        stats=stats,
        per_class_ap=_per_class_mean(precision),
        per_class_ap50=_per_class_mean(precision[iou50 : iou50 + 1]),
    )
