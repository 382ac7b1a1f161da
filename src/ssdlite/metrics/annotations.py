"""The plain per-image arrays every metric in this package reads.

Metrics take numpy arrays, not tensors or dataset objects, so they can score a model, a saved
COCO results file or another detector's output alike. Boxes are xyxy in continuous pixel
coordinates (area ``(x2 - x1) * (y2 - y1)``, torchvision's and pycocotools' convention) and are
kept in float64 so a results file read back gives exactly the numbers pycocotools computes on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


def to_numpy(value: Any, dtype: Any) -> np.ndarray:
    """A tensor, array or sequence as a numpy array of ``dtype`` (tensors are moved to the CPU)."""
    if hasattr(value, "detach"):  # torch.Tensor and tv_tensors, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _boxes(value: Any, what: str) -> np.ndarray:
    boxes = to_numpy(value, np.float64)
    if boxes.size == 0:  # an image without boxes may come as [], (0,) or (0, 4)
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what} boxes must have shape (N, 4), got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{what} boxes contain NaN or infinite values")
    return boxes


def _per_box(mapping: Mapping[str, Any], key: str, n: int, dtype: Any, what: str, default: Any = None) -> np.ndarray:
    if key not in mapping or mapping[key] is None:
        if default is None:
            raise ValueError(f"{what} has no '{key}'")
        return np.full(n, default, dtype=dtype)
    values = to_numpy(mapping[key], dtype).reshape(-1)
    if values.shape[0] != n:
        raise ValueError(f"{what} has {n} boxes but {values.shape[0]} '{key}' values")
    return values


@dataclass(frozen=True)
class ImageGroundTruth:
    """Ground truth of one image.

    Attributes:
        boxes: ``(M, 4)`` float64 xyxy pixels of the original image.
        labels: ``(M,)`` int64 in ``1..K``.
        difficult: ``(M,)`` bool, VOC ``difficult``.
        iscrowd: ``(M,)`` bool, COCO ``iscrowd``.
        area: ``(M,)`` float64 area used for COCO's small/medium/large split, or None for the box
            area. COCO files store the segmentation area here; passing it through keeps the
            split identical to pycocotools on the original file.
    """

    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    iscrowd: np.ndarray
    area: np.ndarray | None = None

    @classmethod
    def from_mapping(cls, target: Mapping[str, Any]) -> ImageGroundTruth:
        """From a dataset target or ``get_annotation`` dict (tensors or arrays; flags default to False)."""
        boxes = _boxes(target["boxes"], "ground-truth")
        n = boxes.shape[0]
        area = target.get("area")
        return cls(
            boxes=boxes,
            labels=_per_box(target, "labels", n, np.int64, "ground truth"),
            difficult=_per_box(target, "difficult", n, bool, "ground truth", default=False),
            iscrowd=_per_box(target, "iscrowd", n, bool, "ground truth", default=False),
            area=None if area is None else _per_box(target, "area", n, np.float64, "ground truth"),
        )

    @property
    def ignore(self) -> np.ndarray:
        """``(M,)`` bool: boxes that count neither as a hit nor as a miss (difficult or crowd)."""
        return self.difficult | self.iscrowd

    def coco_area(self) -> np.ndarray:
        """``(M,)`` the area COCO's size ranges look at."""
        if self.area is not None:
            return self.area
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])


@dataclass(frozen=True)
class ImageDetections:
    """Detections of one image: ``boxes (D, 4)`` float64 xyxy, ``scores (D,)`` float64, ``labels (D,)`` int64."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @classmethod
    def from_mapping(cls, prediction: Mapping[str, Any]) -> ImageDetections:
        """From a model output dict ``{"boxes", "scores", "labels"}`` (tensors or arrays)."""
        boxes = _boxes(prediction["boxes"], "predicted")
        n = boxes.shape[0]
        scores = _per_box(prediction, "scores", n, np.float64, "prediction")
        if not np.isfinite(scores).all():
            raise ValueError("predicted scores contain NaN or infinite values")
        return cls(boxes=boxes, scores=scores, labels=_per_box(prediction, "labels", n, np.int64, "prediction"))

    def __len__(self) -> int:
        return int(self.scores.shape[0])
