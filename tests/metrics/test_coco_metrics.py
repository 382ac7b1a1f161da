"""COCO metrics: identical to pycocotools on the same files, in line with torchmetrics, and the edge cases."""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssdlite.metrics import COCO_STAT_NAMES, ImageDetections, ImageGroundTruth, evaluate_coco, read_coco_results, to_coco_results

CATEGORY_IDS = [3, 7, 11]  # non-contiguous, as in real COCO files


def write_coco_files(tmp_path, rng, ground_truths, detections):
    """A COCO ground-truth file (segmentation-like areas, crowd flags, scattered ids) and a results file."""
    image_ids = [int(i) for i in rng.choice(100_000, len(ground_truths), replace=False)]
    images, annotations, results = [], [], []
    for image_id, gt, det in zip(image_ids, ground_truths, detections):
        images.append({"id": image_id, "width": 500, "height": 500, "file_name": f"{image_id}.jpg"})
        for box, label, crowd in zip(gt.boxes, gt.labels, gt.iscrowd):
            x, y, w, h = round(box[0], 2), round(box[1], 2), round(box[2] - box[0], 2), round(box[3] - box[1], 2)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": CATEGORY_IDS[label - 1],
                    "bbox": [x, y, w, h],
                    "area": round(w * h * rng.uniform(0.4, 1.0), 2),  # a mask is smaller than its box
                    "iscrowd": int(crowd),
                }
            )
        rounded = ImageDetections(np.round(det.boxes, 2), det.scores, det.labels)
        results += to_coco_results(image_id, rounded, CATEGORY_IDS)
    categories = [{"id": c, "name": f"class{c}"} for c in CATEGORY_IDS]
    gt_path, results_path = tmp_path / "instances.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    results_path.write_text(json.dumps(results))
    return gt_path, results_path


def pycocotools_direct(gt_path, results_path):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(str(results_path))
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K)
    per_class = [np.mean(p[p > -1]) if (p > -1).any() else math.nan for p in np.moveaxis(precision, 2, 0)]
    return evaluator.stats, per_class


def arrays_from_files(gt_path, results_path):
    """What a COCO dataset's get_annotation and `read_coco_results` give: plain arrays per image."""
    data = json.loads(gt_path.read_text())
    label_of = {c: k for k, c in enumerate(CATEGORY_IDS, start=1)}
    image_ids = [image["id"] for image in data["images"]]
    per_image = {i: [] for i in image_ids}
    for a in data["annotations"]:
        per_image[a["image_id"]].append(a)
    ground_truths = []
    for i in image_ids:
        anns = per_image[i]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
        ground_truths.append(
            ImageGroundTruth(
                boxes,
                np.array([label_of[a["category_id"]] for a in anns], dtype=np.int64),
                np.zeros(len(anns), bool),
                np.array([bool(a["iscrowd"]) for a in anns], dtype=bool),
                np.array([a["area"] for a in anns], dtype=float),
            )
        )
    dets = {i: [] for i in image_ids}
    for r in read_coco_results(results_path):
        dets[r["image_id"]].append(r)
    detections = []
    for i in image_ids:
        rows = dets[i]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rows)]).reshape(-1, 4)
        scores = np.array([r["score"] for r in rows], dtype=float)
        detections.append(ImageDetections(boxes, scores, np.array([label_of[r["category_id"]] for r in rows], dtype=np.int64)))
    return ground_truths, detections, image_ids


@pytest.mark.parametrize("seed", range(4))
def test_equals_pycocotools_on_the_same_files(seed, tmp_path, make_random_images):
    rng = np.random.default_rng(seed)
    ground_truths, detections = make_random_images(rng, 60, len(CATEGORY_IDS), difficult_rate=0.0, crowd_rate=0.1)
    gt_path, results_path = write_coco_files(tmp_path, rng, ground_truths, detections)
    expected_stats, expected_per_class = pycocotools_direct(gt_path, results_path)

    ground_truths, detections, image_ids = arrays_from_files(gt_path, results_path)
    result = evaluate_coco(ground_truths, detections, len(CATEGORY_IDS), image_ids=image_ids)

    got = [result.stats[name] for name in COCO_STAT_NAMES]
    assert got == [v if v > -1 else pytest.approx(math.nan, nan_ok=True) for v in expected_stats]
    assert result.per_class_ap.tolist() == pytest.approx(expected_per_class, abs=0, rel=0, nan_ok=True)
    assert 0.05 < result.stats["map"] < 0.9  # a meaningful comparison, not all zeros or ones


def test_ssdlite_eval_uses_the_files_areas_exactly_as_pycocotools(tmp_path, make_random_images, capsys):
    """``ssdlite eval --predictions`` on a COCO file whose areas are mask areas (smaller than the boxes)
    gives pycocotools' numbers on the same files, small/medium/large included."""
    from PIL import Image

    from ssdlite.cli import main

    rng = np.random.default_rng(7)
    # A 0.25 grid is exact in float32, the dtype the dataset stores boxes in, so IoUs are bit-identical.
    ground_truths, detections = make_random_images(rng, 40, len(CATEGORY_IDS), difficult_rate=0.0, crowd_rate=0.1, grid=0.25)
    gt_path, results_path = write_coco_files(tmp_path, rng, ground_truths, detections)
    data = json.loads(gt_path.read_text())
    (tmp_path / "images").mkdir()
    for image in data["images"]:  # read_coco needs the files, evaluation never decodes them
        Image.new("RGB", (image["width"], image["height"])).save(tmp_path / "images" / image["file_name"], "PNG")
    expected, _ = pycocotools_direct(gt_path, results_path)

    out = tmp_path / "metrics.json"
    assert main(["eval", "--predictions", str(results_path), "--data", str(gt_path), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert [got[f"coco_{name}"] for name in COCO_STAT_NAMES] == [v if v > -1 else None for v in expected]

    # The areas matter: with box areas the size split, and pycocotools' numbers, differ.
    for annotation in data["annotations"]:
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    box_area_path = tmp_path / "box_areas.json"
    box_area_path.write_text(json.dumps(data))
    with_box_areas, _ = pycocotools_direct(box_area_path, results_path)
    assert list(with_box_areas[3:6]) != list(expected[3:6])


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_torchmetrics(seed, make_random_images):
    from torchmetrics.detection import MeanAveragePrecision

    rng = np.random.default_rng(100 + seed)
    # Coordinates on a 0.25 grid are exact in float32, torchmetrics' dtype.
    ground_truths, detections = make_random_images(rng, 50, 3, difficult_rate=0.0, crowd_rate=0.1, grid=0.25)
    # torchmetrics' default thresholds come from torch.linspace in float32 (0.55 -> 0.550000011...),
    # which moves matches whose IoU is exactly a threshold; give it pycocotools' own thresholds.
    params = COCOeval(iouType="bbox").params
    metric = MeanAveragePrecision(
        iou_type="bbox",
        backend="pycocotools",
        class_metrics=True,
        iou_thresholds=params.iouThrs.tolist(),
        rec_thresholds=params.recThrs.tolist(),
    )
    metric.update(
        [{"boxes": torch.tensor(d.boxes, dtype=torch.float32), "scores": torch.tensor(d.scores, dtype=torch.float32), "labels": torch.tensor(d.labels)} for d in detections],
        [{"boxes": torch.tensor(g.boxes, dtype=torch.float32), "labels": torch.tensor(g.labels), "iscrowd": torch.tensor(g.iscrowd.astype(np.int64))} for g in ground_truths],
    )
    expected = metric.compute()
    # Scores are compared at torchmetrics' float32 precision.
    detections = [ImageDetections(d.boxes, d.scores.astype(np.float32).astype(np.float64), d.labels) for d in detections]
    result = evaluate_coco(ground_truths, detections, 3)
    names = {"map": "map", "map50": "map_50", "map75": "map_75", "map_small": "map_small", "map_medium": "map_medium", "map_large": "map_large", "mar1": "mar_1", "mar10": "mar_10", "mar100": "mar_100"}
    for ours, theirs in names.items():
        value = float(expected[theirs])
        assert result.stats[ours] == pytest.approx(value if value > -1 else math.nan, abs=1e-6, nan_ok=True), ours
    assert result.per_class_ap.tolist() == pytest.approx(expected["map_per_class"].tolist(), abs=1e-6)


def gt(boxes, labels, difficult=None, iscrowd=None):
    return ImageGroundTruth.from_mapping({"boxes": boxes, "labels": labels, "difficult": difficult, "iscrowd": iscrowd})


def det(boxes, scores, labels):
    return ImageDetections.from_mapping({"boxes": boxes, "scores": scores, "labels": labels})


A, B = [0, 0, 40, 40], [100, 100, 160, 160]  # medium objects


def test_perfect_detections_score_one():
    truths = [gt([A, B], [1, 2]), gt([B], [1])]
    result = evaluate_coco(truths, [det(t.boxes, [0.9] * len(t.labels), t.labels) for t in truths], 2)
    assert result.stats["map"] == 1.0 and result.stats["map50"] == 1.0 and result.stats["mar100"] == 1.0
    assert result.per_class_ap.tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    assert math.isnan(result.stats["map_small"])  # no small boxes: pycocotools' -1, reported as NaN


def test_all_wrong_detections_score_zero():
    result = evaluate_coco([gt([A], [1])], [det([B, A], [0.9, 0.8], [1, 2])], 2)
    assert result.stats["map"] == 0.0 and result.per_class_ap[0] == 0.0
    assert math.isnan(result.per_class_ap[1])  # class 2 has no ground truth


def test_no_detections_at_all():
    """pycocotools' loadRes rejects an empty result list; an untrained model produces one."""
    result = evaluate_coco([gt([A], [1]), gt([], [])], [det([], [], []), det([], [], [])], 1)
    assert result.stats["map"] == 0.0 and result.stats["mar100"] == 0.0


def test_image_without_detections_lowers_recall():
    result = evaluate_coco([gt([A], [1]), gt([B], [1])], [det([A], [0.9], [1]), det([], [], [])], 1)
    assert result.stats["mar100"] == 0.5


def test_difficult_boxes_are_ignore_regions():
    # Missing a difficult box costs nothing ...
    assert evaluate_coco([gt([A, B], [1, 1], difficult=[False, True])], [det([A], [0.9], [1])], 1).stats["map"] == pytest.approx(1.0, abs=1e-12)
    assert evaluate_coco([gt([A, B], [1, 1])], [det([A], [0.9], [1])], 1).stats["map"] < 1.0
    # ... and a detection on it, ranked first, is not a false positive (it would be without the box) ...
    found = det([B, A], [0.9, 0.8], [1, 1])
    assert evaluate_coco([gt([A, B], [1, 1], difficult=[False, True])], [found], 1).stats["map"] == pytest.approx(1.0, abs=1e-12)
    assert evaluate_coco([gt([A], [1])], [found], 1).stats["map"] < 1.0
    # ... but, unlike a crowd region, it absorbs a single detection: a second one is a duplicate.
    twice = det([B, B, A], [0.95, 0.9, 0.8], [1, 1, 1])
    assert evaluate_coco([gt([A, B], [1, 1], difficult=[False, True])], [twice], 1).stats["map"] < 1.0


def test_crowd_regions_absorb_every_detection_inside():
    crowd = [0, 0, 200, 200]
    truths = [gt([crowd, [300, 300, 340, 340]], [1, 1], iscrowd=[True, False])]
    # Three detections inside the crowd region, above the one real hit: none is a false positive.
    found = det([[0, 0, 100, 100], [100, 100, 200, 200], [50, 0, 150, 90], [300, 300, 340, 340]], [0.9, 0.9, 0.9, 0.5], [1, 1, 1, 1])
    assert evaluate_coco(truths, [found], 1).stats["map"] == pytest.approx(1.0, abs=1e-12)
    # The same detections without the crowd flag are false positives ranked first.
    plain = [gt([crowd, [300, 300, 340, 340]], [1, 1])]
    assert evaluate_coco(plain, [found], 1).stats["map"] < 0.6


def test_image_ids_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        evaluate_coco([gt([A], [1]), gt([A], [1])], [det([], [], []), det([], [], [])], 1, image_ids=[5, 5])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="classes are split over forked processes only on Linux")
def test_processes_split_the_classes_without_changing_a_digit(make_random_images):
    ground_truths, detections = make_random_images(np.random.default_rng(11), 40, 5, crowd_rate=0.1)
    alone = evaluate_coco(ground_truths, detections, 5, processes=1)
    split = evaluate_coco(ground_truths, detections, 5, processes=3)
    assert split.stats == pytest.approx(alone.stats, abs=0, rel=0, nan_ok=True)
    np.testing.assert_array_equal(split.per_class_ap, alone.per_class_ap)
    np.testing.assert_array_equal(split.per_class_ap50, alone.per_class_ap50)


def test_more_detections_than_cocoeval_reads():
    """A one-class model returns up to 200 boxes per image; COCOeval reads the 100 best per class."""
    rng = np.random.default_rng(4)
    truths, found, gt_anns, results = [], [], [], []
    for image_id in range(3):
        xy = rng.uniform(0, 200, (30, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 60, (30, 2))], axis=1)
        labels = np.where(np.arange(30) < 25, 1, 2)
        truths.append(gt(boxes, labels))
        gt_anns += [
            {"id": len(gt_anns) + 1 + k, "image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            for k, ((x1, y1, x2, y2), c) in enumerate(zip(boxes.tolist(), labels))
        ]
        picks = rng.integers(0, 30, 250)
        dets = det(boxes[picks] + rng.normal(0, 4, (250, 4)), np.round(rng.random(250), 2), rng.integers(1, 3, 250))  # ties too
        found.append(dets)
        results += [
            {"image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(sc)}
            for (x1, y1, x2, y2), sc, c in zip(dets.boxes.tolist(), dets.scores, dets.labels)
        ]
    coco_gt = COCO()
    coco_gt.dataset = {"images": [{"id": i} for i in range(3)], "categories": [{"id": 1}, {"id": 2}], "annotations": gt_anns}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    result = evaluate_coco(truths, found, 2, processes=1)
    assert [result.stats[name] for name in COCO_STAT_NAMES] == [v if v > -1 else pytest.approx(math.nan, nan_ok=True) for v in evaluator.stats]
    assert 0.05 < result.stats["map"] < 0.95
