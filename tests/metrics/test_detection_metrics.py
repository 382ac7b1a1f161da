"""The accumulator: batches of tensors in, one JSON-ready dict out, equal to the array-level metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ssdlite.metrics import DetectionMetrics, evaluate_coco, evaluate_voc, mean_average_precision

CLASSES = ["cat", "dog", "bird"]
KEYS = {"voc07_map50", "voc_map50", "coco_map", "coco_map50", "coco_map75", "per_class", "num_images", "metric_seconds"}


def as_tensors(ground_truths, detections):
    targets = [
        {"boxes": torch.tensor(g.boxes, dtype=torch.float32), "labels": torch.tensor(g.labels), "difficult": torch.tensor(g.difficult), "iscrowd": torch.tensor(g.iscrowd)}
        for g in ground_truths
    ]
    predictions = [{"boxes": torch.tensor(d.boxes, dtype=torch.float32), "scores": torch.tensor(d.scores, dtype=torch.float32), "labels": torch.tensor(d.labels)} for d in detections]
    return predictions, targets


def test_batches_of_tensors_give_the_array_metrics(make_random_images):
    rng = np.random.default_rng(7)
    ground_truths, detections = make_random_images(rng, 30, 3, crowd_rate=0.05, grid=0.25)
    detections = [type(d)(d.boxes, d.scores.astype(np.float32).astype(np.float64), d.labels) for d in detections]
    predictions, targets = as_tensors(ground_truths, detections)
    metrics = DetectionMetrics(CLASSES)
    for start in range(0, 30, 8):  # uneven batches
        metrics.update(predictions[start : start + 8], targets[start : start + 8])
    result = metrics.compute()

    assert KEYS <= set(result)
    json.dumps(result, allow_nan=False)  # JSON-ready: no NaN, no numpy types
    voc = evaluate_voc(ground_truths, detections, 3)
    coco = evaluate_coco(ground_truths, detections, 3)
    assert result["voc_map50"] == mean_average_precision(voc)
    assert result["voc07_map50"] == mean_average_precision(voc, use_07_metric=True)
    assert result["coco_map"] == coco.stats["map"] and result["coco_map75"] == coco.stats["map75"]
    assert result["num_images"] == 30
    for k, name in enumerate(CLASSES):
        row = result["per_class"][name]
        assert row["voc_ap50"] == voc[k].ap and row["coco_ap"] == coco.per_class_ap[k]
        assert row["num_gt"] == voc[k].num_gt
        assert row["num_detections"] == sum(int((d.labels == k + 1).sum()) for d in detections)


def test_perfect_predictions_and_a_class_without_ground_truth():
    targets = [{"boxes": [[0, 0, 50, 50], [60, 60, 120, 100]], "labels": [1, 2]}, {"boxes": [], "labels": []}]
    predictions = [{"boxes": t["boxes"], "scores": [0.9] * len(t["labels"]), "labels": t["labels"]} for t in targets]
    metrics = DetectionMetrics(CLASSES)
    metrics.update(predictions, targets)
    result = metrics.compute()
    assert result["voc07_map50"] == 1.0 and result["voc_map50"] == 1.0
    assert result["coco_map"] == pytest.approx(1.0, abs=1e-12)
    bird = result["per_class"]["bird"]
    errors = bird.pop("errors")
    assert bird == {"num_gt": 0, "num_detections": 0, "voc_ap50": None, "voc07_ap50": None, "coco_ap": None, "coco_ap50": None}
    assert errors["detections"] == errors["missed"] == 0 and set(errors["dap"].values()) == {None}
    assert result["errors"]["dap"] == dict.fromkeys(result["errors"]["dap"], 0.0)  # nothing to fix: no AP to gain
    assert result["per_class"]["cat"]["errors"]["tp"] == 1


def test_image_ids_reach_pycocotools_when_unique():
    metrics = DetectionMetrics(CLASSES)
    metrics.update([{"boxes": [], "scores": [], "labels": []}] * 2, [{"boxes": [], "labels": [], "image_id": 42}, {"boxes": [], "labels": [], "image_id": 7}])
    assert metrics._coco_image_ids() == [42, 7]
    metrics.update([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [], "labels": [], "image_id": 7}])
    assert metrics._coco_image_ids() is None  # duplicates: fall back to positions


def test_bad_input_is_named():
    metrics = DetectionMetrics(CLASSES)
    with pytest.raises(ValueError, match="predicted label 4 is outside 1..3"):
        metrics.update([{"boxes": [[0, 0, 1, 1]], "scores": [0.5], "labels": [4]}], [{"boxes": [], "labels": []}])
    with pytest.raises(ValueError, match="ground-truth label 0"):
        metrics.update([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [[0, 0, 1, 1]], "labels": [0]}])
    with pytest.raises(ValueError, match="2 boxes but 1 'scores'"):
        metrics.update([{"boxes": [[0, 0, 1, 1]] * 2, "scores": [0.5], "labels": [1, 1]}], [{"boxes": [], "labels": []}])
    with pytest.raises(ValueError, match="NaN"):
        metrics.update([{"boxes": [[0, 0, float("nan"), 1]], "scores": [0.5], "labels": [1]}], [{"boxes": [], "labels": []}])
    with pytest.raises(ValueError, match="no images"):
        metrics.compute()
