"""VOC AP against an independent, line-by-line implementation of the VOC devkit (VOCevaldet.m, VOCap.m)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssdlite.metrics import ImageDetections, ImageGroundTruth, average_precision, evaluate_voc, match_image, mean_average_precision
from ssdlite.metrics.voc import FALSE_POSITIVE, IGNORED, TRUE_POSITIVE


def devkit_class_ap(ground_truths, detections, label, use_07_metric):
    """The devkit's per-class loop, written plainly: one detection at a time, one box at a time.

    Follows VOCevaldet.m (``ov > ovmax``, ``ovmax >= minoverlap``, difficult -> neither tp nor fp),
    the Python port's ``np.arange(0., 1.1, 0.1)`` recall levels and ``eps`` precision guard, and
    the documented ssdlite conventions: continuous-coordinate IoU, crowd treated as difficult,
    stable ranking of ties, NaN AP without ground truth.
    """
    gt = {}
    npos = 0
    for i, g in enumerate(ground_truths):
        mask = g.labels == label
        diff = (g.difficult | g.iscrowd)[mask]
        gt[i] = {"BB": g.boxes[mask], "diff": diff, "det": [False] * int(mask.sum())}
        npos += int((~diff).sum())
    image_ids, confidence, BB = [], [], []
    for i, d in enumerate(detections):
        for box, score, lab in zip(d.boxes, d.scores, d.labels):
            if lab == label:
                image_ids.append(i)
                confidence.append(score)
                BB.append(box)
    si = sorted(range(len(confidence)), key=lambda j: -confidence[j])  # Python's sort is stable
    nd = len(si)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = gt[image_ids[si[d]]]
        bb = BB[si[d]]
        ovmax = -math.inf
        jmax = -1
        for j in range(len(R["BB"])):
            bbgt = R["BB"][j]
            iw = min(bb[2], bbgt[2]) - max(bb[0], bbgt[0])
            ih = min(bb[3], bbgt[3]) - max(bb[1], bbgt[1])
            if iw > 0 and ih > 0:
                ua = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (bbgt[2] - bbgt[0]) * (bbgt[3] - bbgt[1]) - iw * ih
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax = ov
                    jmax = j
        if ovmax >= 0.5:
            if not R["diff"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1
                    R["det"][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    if npos == 0:
        return math.nan
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = np.max(prec[rec >= t]) if np.sum(rec >= t) > 0 else 0.0
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@pytest.mark.parametrize("seed", range(25))
def test_matches_devkit_on_random_scenes(seed, make_random_images):
    rng = np.random.default_rng(seed)
    num_classes = 4
    # Every fifth seed quantizes scores to force ties; some seeds add crowd boxes.
    ground_truths, detections = make_random_images(
        rng, 40, num_classes, crowd_rate=0.1 if seed % 2 else 0.0, score_levels=20 if seed % 5 == 0 else None
    )
    results = evaluate_voc(ground_truths, detections, num_classes)
    for label in range(1, num_classes + 1):
        for use_07 in (True, False):
            expected = devkit_class_ap(ground_truths, detections, label, use_07)
            got = results[label - 1].ap07 if use_07 else results[label - 1].ap
            if math.isnan(expected):
                assert math.isnan(got)
            else:
                assert got == pytest.approx(expected, abs=1e-9, rel=0)


def test_random_scenes_exercise_every_outcome(make_random_images):
    """Guard for the test above: the random scenes contain hits, duplicates, misses and ignored hits."""
    rng = np.random.default_rng(0)
    ground_truths, detections = make_random_images(rng, 40, 4)
    outcomes = np.concatenate([match_image(g, d) for g, d in zip(ground_truths, detections)])
    assert {TRUE_POSITIVE, FALSE_POSITIVE, IGNORED} <= set(outcomes.tolist())
    aps = [r.ap for r in evaluate_voc(ground_truths, detections, 4)]
    assert all(0.05 < ap < 0.95 for ap in aps)  # neither trivial nor degenerate


def test_average_precision_by_hand():
    recall = np.array([0.25, 0.25, 0.5, 0.5, 0.75])
    precision = np.array([1.0, 0.5, 2 / 3, 0.5, 0.6])
    # Envelope: 1.0 up to recall 0.25, 2/3 up to 0.5, 0.6 up to 0.75, nothing beyond.
    assert average_precision(recall, precision) == pytest.approx(0.25 * 1.0 + 0.25 * 2 / 3 + 0.25 * 0.6, abs=1e-12)
    # 11 points: recall 0..0.2 -> 1.0, 0.3..0.5 -> 2/3, 0.6..0.7 -> 0.6, 0.8..1.0 -> 0.
    assert average_precision(recall, precision, use_07_metric=True) == pytest.approx((3 * 1.0 + 3 * 2 / 3 + 2 * 0.6) / 11, abs=1e-12)
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0
    assert average_precision(np.zeros(0), np.zeros(0), use_07_metric=True) == 0.0


def gt(boxes, labels, difficult=None, iscrowd=None):
    return ImageGroundTruth.from_mapping({"boxes": boxes, "labels": labels, "difficult": difficult, "iscrowd": iscrowd})


def det(boxes, scores, labels):
    return ImageDetections.from_mapping({"boxes": boxes, "scores": scores, "labels": labels})


def test_match_image_outcomes():
    truth = gt([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [1, 1, 1], difficult=[False, False, True])
    found = det(
        [[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30], [40, 40, 50, 50], [100, 100, 110, 110]],
        [0.5, 0.9, 0.3, 0.8, 0.7],
        [1, 1, 2, 1, 1],
    )
    # The 0.9 detection claims box 0 first, so the exact 0.5 one is a duplicate; the class-2 one
    # sees no box of its class; the one on the difficult box is ignored; the far one is a miss.
    assert match_image(truth, found).tolist() == [FALSE_POSITIVE, TRUE_POSITIVE, FALSE_POSITIVE, IGNORED, FALSE_POSITIVE]


def test_iou_exactly_at_threshold_is_a_hit():
    # IoU([0,0,10,10], [0,0,10,20]) is exactly 0.5: the devkit's ``ovmax >= minoverlap`` accepts it.
    assert match_image(gt([[0, 0, 10, 20]], [1]), det([[0, 0, 10, 10]], [1.0], [1])).tolist() == [TRUE_POSITIVE]


def test_perfect_detections_score_one():
    truths = [gt([[0, 0, 10, 10], [5, 5, 30, 30]], [1, 2]), gt([[50, 50, 90, 80]], [2])]
    found = [det(t.boxes, [0.9] * len(t.labels), t.labels) for t in truths]
    results = evaluate_voc(truths, found, 2)
    assert [r.ap for r in results] == [1.0, 1.0]
    assert [r.ap07 for r in results] == [1.0, 1.0]
    assert mean_average_precision(results) == 1.0


def test_all_wrong_detections_score_zero():
    truths = [gt([[0, 0, 10, 10]], [1])]
    found = [det([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [1, 2])]  # a miss and a wrong class
    results = evaluate_voc(truths, found, 2)
    assert results[0].ap == 0.0 and results[0].ap07 == 0.0
    assert math.isnan(results[1].ap)  # class 2 has no ground truth: no AP, not 0


def test_class_without_ground_truth_is_left_out_of_the_mean():
    truths = [gt([[0, 0, 10, 10]], [1])]
    found = [det([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [1, 2])]
    results = evaluate_voc(truths, found, 3)
    assert results[0].ap == 1.0
    assert math.isnan(results[1].ap) and math.isnan(results[2].ap)
    assert results[1].num_gt == 0 and results[1].precision.tolist() == [0.0]  # its detections are still ranked
    assert mean_average_precision(results) == 1.0
    assert math.isnan(mean_average_precision(evaluate_voc([gt([], [])], [det([], [], [])], 2)))


def test_image_without_detections_counts_its_boxes_as_missed():
    truths = [gt([[0, 0, 10, 10]], [1]), gt([[0, 0, 10, 10]], [1])]
    found = [det([[0, 0, 10, 10]], [0.9], [1]), det([], [], [])]
    result = evaluate_voc(truths, found, 1)[0]
    assert result.recall.tolist() == [0.5]
    assert result.ap == 0.5


def test_difficult_and_crowd_boxes_are_neither_hits_nor_misses():
    truths = [gt([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 70, 70]], [1, 1, 1], difficult=[False, True, False], iscrowd=[False, False, True])]
    # Detecting the difficult and crowd boxes (even above the real hit) costs nothing ...
    found = [det([[20, 20, 40, 40], [50, 50, 70, 70], [0, 0, 10, 10]], [0.9, 0.8, 0.7], [1, 1, 1])]
    result = evaluate_voc(truths, found, 1)[0]
    assert result.num_gt == 1 and result.ap == 1.0 and result.ap07 == 1.0
    assert result.scores.tolist() == [0.7]  # ignored detections leave the ranking
    # ... and missing them costs nothing either.
    assert evaluate_voc(truths, [det([[0, 0, 10, 10]], [0.5], [1])], 1)[0].ap == 1.0
