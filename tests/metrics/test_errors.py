"""TIDE's error types, counts, look-alike shares and fixing oracles, on detections built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ssdlite.metrics import DetectionMetrics, ImageDetections, ImageGroundTruth, evaluate_voc, format_report
from ssdlite.metrics.errors import BKG, BOTH, CLS, DUPE, ERRORS, LOC, TP, UNTYPED, analyze_errors, classify_image


def truth(boxes, labels, difficult=None) -> ImageGroundTruth:
    n = len(labels)
    flags = np.zeros(n, bool) if difficult is None else np.asarray(difficult)
    return ImageGroundTruth(np.asarray(boxes, float).reshape(-1, 4), np.asarray(labels, np.int64), flags, np.zeros(n, bool))


def found(boxes, scores, labels) -> ImageDetections:
    return ImageDetections(np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float), np.asarray(labels, np.int64))


# Boxes of one scene: class 1 at A and B, class 2 at C, class 1 at D (missed), class 2 at E (difficult).
A, B, C, D, E = [0, 0, 100, 100], [200, 0, 300, 100], [400, 0, 500, 100], [600, 0, 700, 100], [800, 0, 900, 100]
SCENE = truth([A, B, C, D, E], [1, 1, 2, 1, 2], [False, False, False, False, True])
DETECTIONS = found(
    [
        A,  # 0: class 1 at A: true positive
        [0, 0, 100, 90],  # 1: class 1 at A again (IoU 0.9), scored lower: duplicate
        C,  # 2: class 1 at C, a class 2 box: classification error
        [200, 0, 240, 100],  # 3: class 1 near B (IoU 0.4): localisation error
        [400, 0, 440, 100],  # 4: class 1 near C (IoU 0.4), a class 2 box: both
        [1000, 0, 1100, 100],  # 5: class 2 on nothing: background
        E,  # 6: class 2 on the difficult box: ignored, as VOC ignores it
        [200, 0, 300, 100],  # 7: class 2 at B, scored below the counting threshold: a classification error not counted
    ],
    [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.95, 0.1],
    [1, 1, 1, 1, 1, 2, 2, 2],
)


def test_each_detection_gets_its_type_and_box():
    types = classify_image(SCENE, DETECTIONS)
    assert types.kind.tolist() == [TP, DUPE, CLS, LOC, BOTH, BKG, UNTYPED, CLS]
    assert types.box.tolist() == [0, 0, 2, 1, 2, -1, -1, 1]


def test_counts_per_class_and_missed_boxes():
    analysis = analyze_errors([SCENE], [DETECTIONS], num_classes=2, score_threshold=0.25)
    table = analysis.to_dict(["one", "two"])
    one, two = table["one"], table["two"]
    assert (one["tp"], one["cls"], one["loc"], one["both"], one["dupe"], one["bkg"]) == (1, 1, 1, 1, 1, 0)
    assert one["detections"] == 5 and one["num_gt"] == 3
    # B has a localisation error near it (covered, as TIDE says), D nothing: one missed box.
    assert one["missed"] == 1
    assert two["bkg"] == 1 and two["detections"] == 1 and two["missed"] == 0  # C is covered by the class error
    assert two["taken_as"] == {"one": 1} and one["taken_as"] == {}  # class 2's box C was detected as class 1
    # At threshold 0 the class 2 detection at B counts too: B is then taken for class 2.
    everything = analyze_errors([SCENE], [DETECTIONS], num_classes=2, score_threshold=0.0).to_dict(["one", "two"])
    assert everything["one"]["taken_as"] == {"two": 1} and everything["two"]["cls"] == 1


def ap(recall_precision: list[tuple[float, float]]) -> float:
    """All-point AP of a ranked list given as ``(recall, precision)`` after each detection."""
    recall, precision = map(np.array, zip(*recall_precision))
    from ssdlite.metrics import average_precision

    return average_precision(recall, precision)


def dap(gts, dets, num_classes=1) -> dict[str, float]:
    analysis = analyze_errors(gts, dets, num_classes)
    return dict(zip(ERRORS, analysis.dap[0]))


def test_each_oracle_fixes_its_own_error_only():
    two = truth([A, B], [1, 1])
    # A duplicate between two hits: fixing duplicates removes it (AP 0.833 -> 1); nothing else changes AP.
    gains = dap([two], [found([A, [0, 0, 100, 90], B], [0.9, 0.8, 0.7], [1, 1, 1])])
    assert gains["dupe"] == pytest.approx(1 - ap([(0.5, 1), (0.5, 0.5), (1, 2 / 3)]))
    assert all(gains[e] == 0 for e in ERRORS if e != "dupe")
    # A background detection scored above a hit: the same for "bkg".
    gains = dap([two], [found([A, [900, 900, 950, 950], B], [0.9, 0.8, 0.7], [1, 1, 1])])
    assert gains["bkg"] > 0 and all(gains[e] == 0 for e in ERRORS if e != "bkg")
    # B found only by a badly placed box: moving it onto B gives AP 1; B is not missed (the box is near it).
    gains = dap([two], [found([A, [200, 0, 240, 100]], [0.9, 0.8], [1, 1])])
    assert gains["loc"] == pytest.approx(0.5) and gains["missed"] == 0 and gains["cls"] == 0
    # B not found at all: removing it from the ground truth gives AP 1.
    gains = dap([two], [found([A], [0.9], [1])])
    assert gains["missed"] == pytest.approx(0.5) and all(gains[e] == 0 for e in ERRORS if e != "missed")


def test_class_oracle_relabels_or_suppresses():
    scene = truth([A, B], [1, 2])
    # Class 1 found at A, B detected as class 1: relabelled, class 2 gains its box, class 1 loses a false positive.
    analysis = analyze_errors([scene], [found([B, A], [0.9, 0.8], [1, 1])], num_classes=2)
    assert analysis.dap[:, ERRORS.index("cls")] == pytest.approx([0.5, 1.0])
    # B already found as class 2: the class-1 box on B would be a duplicate, so it is suppressed, not relabelled.
    dets = found([B, A, B], [0.9, 0.8, 0.7], [1, 1, 2])
    fixed = analyze_errors([scene], [dets], num_classes=2)
    assert fixed.dap[:, ERRORS.index("cls")] == pytest.approx([0.5, 0.0])


def test_look_alike_class_names_what_it_is_taken_for_with_its_share():
    """Four tens: three boxed as nine (one of them also as ten), one as ten; the nines are all found."""
    gts, dets = [], []
    for i in range(4):
        gts.append(truth([A, C], [1, 2]))  # a ten at A, a nine at C
        boxes, scores, labels = [C], [0.9], [2]  # the nine, found
        if i < 3:
            boxes, scores, labels = boxes + [A], scores + [0.8], labels + [2]  # the ten taken for a nine
        if i in (0, 3):
            boxes, scores, labels = boxes + [A], scores + [0.7], labels + [1]  # the ten found as a ten
        dets.append(found(boxes, scores, labels))
    metrics = DetectionMetrics(["ten", "nine"])
    metrics.update([{"boxes": d.boxes, "scores": d.scores, "labels": d.labels} for d in dets],
                   [{"boxes": g.boxes, "labels": g.labels} for g in gts])
    result = metrics.compute()
    ten, nine = result["per_class"]["ten"]["errors"], result["per_class"]["nine"]["errors"]
    assert ten["taken_as"] == {"nine": 3} and ten["num_gt"] == 4 and ten["tp"] == 2 and ten["missed"] == 0
    assert nine["cls"] == 3 and nine["tp"] == 4 and nine["taken_as"] == {}
    assert max(ten["dap"], key=ten["dap"].get) == "cls" and max(nine["dap"], key=nine["dap"].get) == "cls"
    # The confusion matrix counts boxes by the classes they are detected as: ten 2 of 4 as ten, 3 of 4 as nine.
    np.testing.assert_array_equal(metrics.confusion_matrix(), [[2, 3, 0], [0, 4, 0], [0, 0, 0]])
    text = format_report(result)
    assert "  ten: nine 3 of 4" in text.splitlines()
    assert result["errors"]["dap"]["cls"] == pytest.approx(np.mean([ten["dap"]["cls"], nine["dap"]["cls"]]))
    assert ten["top_taken_as"] == {"nine": 3} and nine["top_taken_as"] == {}  # the nine outranks the ten at A
    # An undertrained model: the same ranking at a tenth of the scores. Nothing is counted, AP and the ranking
    # are unchanged, and the look-alike still shows at any score.
    low = DetectionMetrics(["ten", "nine"])
    low.update([{"boxes": d.boxes, "scores": d.scores / 10, "labels": d.labels} for d in dets],
               [{"boxes": g.boxes, "labels": g.labels} for g in gts])
    low_result = low.compute()
    low_ten = low_result["per_class"]["ten"]["errors"]
    assert low_ten["detections"] == 0 and low_ten["taken_as"] == {} and low_ten["top_taken_as"] == {"nine": 3}
    assert low_ten["dap"] == ten["dap"]
    low_text = format_report(low_result)
    assert "taken for another class at any score" in low_text and "  ten: nine 3 of 4" in low_text.splitlines()


def test_random_scenes_are_consistent_with_voc(make_random_images):
    """Every fix can only raise AP, and the true positives counted are VOC's."""
    rng = np.random.default_rng(3)
    gts, dets = make_random_images(rng, 40, 3)
    analysis = analyze_errors(gts, dets, 3, score_threshold=0.0)
    assert (analysis.dap[np.isfinite(analysis.dap)] >= -1e-12).all()
    voc = evaluate_voc(gts, dets, 3)
    tp = [int(np.round(r.precision[-1] * len(r.precision))) if len(r.precision) else 0 for r in voc]
    assert analysis.counts[:, TP].tolist() == tp
    typed = sum(int((classify_image(g, d).kind != UNTYPED).sum()) for g, d in zip(gts, dets))
    assert analysis.counts.sum() == typed
