"""Random ground truth and detections for the metric tests: crowded scenes with near misses."""

from __future__ import annotations

import numpy as np
import pytest

from ssdlite.metrics import ImageDetections, ImageGroundTruth


def random_images(
    rng: np.random.Generator,
    num_images: int,
    num_classes: int,
    *,
    difficult_rate: float = 0.2,
    crowd_rate: float = 0.0,
    grid: float | None = None,
    score_levels: int | None = None,
) -> tuple[list[ImageGroundTruth], list[ImageDetections]]:
    """Ground truth with difficult/crowd flags and detections that hit, miss, duplicate and mislabel.

    ``grid`` rounds coordinates (exact in float32); ``score_levels`` quantizes scores to force ties.
    """
    ground_truths, detections = [], []
    for _ in range(num_images):
        m = int(rng.integers(0, 7))
        xy = rng.uniform(0, 300, (m, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(2, 150, (m, 2))], axis=1)  # (M, 4) sizes across COCO's ranges
        labels = rng.integers(1, num_classes + 1, m)
        difficult = rng.random(m) < difficult_rate
        iscrowd = rng.random(m) < crowd_rate
        det_boxes, det_labels = [], []
        for box, label in zip(boxes, labels):
            for _ in range(int(rng.integers(0, 3))):  # 0, 1 or 2 (a duplicate) detections per box
                size = np.tile(box[2:] - box[:2], 2)
                det_boxes.append(box + rng.normal(0, 0.12, 4) * size)  # IoUs spread around 0.5
                det_labels.append(label if rng.random() < 0.85 else rng.integers(1, num_classes + 1))
        for _ in range(int(rng.integers(0, 4))):  # background false positives
            xy0 = rng.uniform(0, 300, 2)
            det_boxes.append(np.concatenate([xy0, xy0 + rng.uniform(2, 150, 2)]))
            det_labels.append(rng.integers(1, num_classes + 1))
        det_boxes = np.array(det_boxes, dtype=np.float64).reshape(-1, 4)
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)  # keep x2 > x1
        scores = rng.random(len(det_boxes))
        if grid is not None:
            boxes, det_boxes = np.round(boxes / grid) * grid, np.round(det_boxes / grid) * grid
        if score_levels is not None:
            scores = np.ceil(scores * score_levels) / score_levels
        ground_truths.append(ImageGroundTruth(boxes, labels.astype(np.int64), difficult, iscrowd))
        detections.append(ImageDetections(det_boxes, scores, np.array(det_labels, dtype=np.int64)))
    return ground_truths, detections


@pytest.fixture
def make_random_images():
    return random_images
