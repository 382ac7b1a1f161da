"""What "the same detections" and "the same outputs" mean: one-to-one matching and scaled bounds."""

from __future__ import annotations

import pytest
import torch
from deploy_helpers import CLASSES, varied_model

from ssdlite.deploy.compare import compare_detections, raw_difference, score_floors
from ssdlite.models.postprocess import PostProcess, PostprocessSettings


def _det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "scores": torch.tensor(scores), "labels": torch.tensor(labels)}


def test_matching_is_one_to_one_and_independent_of_order():
    expected = [_det([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8, 0.7], [1, 1, 2])]
    shuffled = [_det([[20, 20, 40, 40.01], [0, 0, 10, 10], [0, 0, 10, 10]], [0.7, 0.8004, 0.9], [2, 1, 1])]
    comparison = compare_detections(expected, shuffled)
    assert comparison.ok and comparison.matched == 3 and comparison.max_score_diff == pytest.approx(4e-4, abs=1e-6)
    once = [_det([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.7], [1, 2])]  # one returned box cannot match two expected
    comparison = compare_detections(expected, once)
    assert not comparison.ok and comparison.unmatched_expected == 1 and comparison.unmatched_returned == 0


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"labels": [1, 1, 3]}, "label"),  # relabelled
        ({"scores": [0.9, 0.8, 0.702]}, "score"),  # score off by 2e-3
        ({"boxes": [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 40, 40.5]]}, "IoU"),  # IoU 0.976
    ],
)
def test_each_kind_of_difference_is_unmatched(change, problem):
    base = {"boxes": [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 40, 40]], "scores": [0.9, 0.8, 0.7], "labels": [1, 1, 2]}
    comparison = compare_detections([_det(**base)], [_det(**(base | change))])
    assert comparison.unmatched_expected == 1 and comparison.unmatched_returned == 1, problem
    assert "image 0: 1 of 3 expected detections unmatched" in comparison.problems[0]


def test_a_detection_at_the_score_threshold_on_one_side_only_is_borderline():
    expected = [_det([[0, 0, 10, 10], [5, 5, 9, 9]], [0.9, 0.0102], [1, 1])]
    returned = [_det([[0, 0, 10, 10]], [0.9], [1])]
    assert not compare_detections(expected, returned).ok
    comparison = compare_detections(expected, returned, score_floor=0.01)
    assert comparison.ok and comparison.borderline == 1


def test_a_detection_at_its_class_s_top_k_cut_on_one_side_only_is_borderline():
    """The runtime returns a class-1 box scored 0.43988 that PyTorch does not: with more default boxes than the top-k
    candidates, class 1's 2nd best score (k = 2) is 0.43988 too, so the two traded places at the cut (the LiteRT
    case of a raccoon model after one epoch). The same score for class 2, whose cut is lower, is a real difference."""
    post = PostProcess(PostprocessSettings((0.1, 0.1, 0.2, 0.2), score_threshold=0.01, nms_threshold=0.45, topk_candidates=2, detections_per_image=10))
    probs = torch.tensor([[[0.1, 0.9, 0.0], [0.56012, 0.43988, 0.0], [0.56012, 0.4398784, 0.0], [0.5, 0.0, 0.5], [0.7, 0.0, 0.3]]])
    floors = score_floors(post, probs.clamp(min=1e-9).log())  # (1, 5, 3) logits of these probabilities
    assert floors[0].tolist() == pytest.approx([0.43988, 0.3], abs=1e-6)
    expected = [_det([[0, 0, 10, 10]], [0.9], [1])]
    for label, ok in ((1, True), (2, False)):
        returned = [_det([[0, 0, 10, 10], [30, 30, 50, 50]], [0.9, 0.4398784], [1, label])]
        comparison = compare_detections(expected, returned, score_floor=floors)
        assert comparison.ok is ok and comparison.borderline == int(ok) and comparison.unmatched_returned == int(not ok)


def test_empty_boxes_at_the_border_compare_by_position():
    """A box clipped to a line has no area and no IoU; equal up to float rounding it still matches."""
    expected = [_det([[0, 0, 119.76, 0]], [0.97], [1])]
    assert compare_detections(expected, [_det([[0, 0, 119.7612, 0]], [0.97], [1])]).ok
    assert not compare_detections(expected, [_det([[0, 0, 100.0, 0]], [0.97], [1])]).ok


def test_raw_bound_scales_with_the_outputs():
    want = torch.tensor([100.0, -3.0])
    assert raw_difference(want + 0.05, want) == pytest.approx((0.05, 1e-4 + 0.1), rel=1e-4)
    assert raw_difference(torch.tensor([float("nan"), 0.0]), want)[0] == float("inf")


def test_onnx_export_accepts_a_correct_model_with_large_outputs(tmp_path):
    """The issue's false refusal: a correct export whose box outputs reach ~28 differs from PyTorch by ~1.2e-4
    (float32 rounding), which an absolute 1e-4 bound refused ("bbox_deltas differs ... by up to 0.000102")."""
    from ssdlite.deploy.onnx_export import export_onnx

    model = varied_model()
    with torch.no_grad():
        for predictor in model.core.head.regression.predictors:
            predictor[-1].weight.mul_(30.0)  # box outputs up to ~28, as a trained model's
    report = export_onnx(model, tmp_path / "model.onnx", CLASSES, with_nms=True, dynamic_batch=False)
    assert report.max_raw_diff > 1e-4  # what the old absolute tolerance refused
    assert report.detections.ok and report.detections.matched > 0
    assert (tmp_path / "model.onnx").is_file()
