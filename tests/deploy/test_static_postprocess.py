"""The static-shape postprocess (what ExecuTorch, LiteRT and OpenVINO run) gives the detections of
``torchvision.ops.batched_nms`` over every candidate and of ``model.postprocess``, and exports with torch.export."""

from __future__ import annotations

import pytest
import torch
from deploy_helpers import reference_postprocess, varied_model

import ssdlite
from ssdlite.deploy.compare import compare_detections
from ssdlite.deploy.onnx_postprocess import detections_from_outputs
from ssdlite.deploy.samples import shapes_images
from ssdlite.deploy.static_postprocess import StaticDetector, StaticPostProcess

EXACT = {"min_iou": 0.9999, "score_tol": 1e-6}


def _outputs(model, spread: float, seed: int):
    a, k = model.default_boxes.boxes.shape[0], model.num_classes
    g = torch.Generator().manual_seed(seed)
    cls_logits = torch.randn(3, a, k, generator=g) * spread  # (3, A, K)
    cls_logits[0, :, 0] += 30.0  # image 0: no candidate above the threshold
    cls_logits[2, :, 0] += 6.0  # image 2: fewer candidates
    bbox_deltas = torch.randn(3, a, 4, generator=g) * 0.5
    return cls_logits, bbox_deltas


@pytest.mark.parametrize("spread", [0.01, 1.0, 4.0])  # untrained (all alike), varied, confident
def test_static_postprocess_equals_batched_nms_and_the_model(spread):
    model = ssdlite.ssdlite_mobilenet_v2(21, size=160, width_mult=0.35, detections_per_image=50).eval()
    cls_logits, bbox_deltas = _outputs(model, spread, seed=int(spread * 100))
    static = StaticPostProcess.from_model(model)
    boxes, scores, labels, count = static(cls_logits, bbox_deltas)
    assert boxes.shape == (3, 50, 4) and scores.shape == labels.shape == (3, 50) and count.shape == (3,)
    assert static.exact(cls_logits, bbox_deltas, count).all()
    assert int(count[0]) == 0 and int(count[1]) == 50  # empty, capped
    assert (scores[0] == 0).all() and (labels[0] == 0).all() and (boxes[0] == 0).all()  # padding is zero
    got = detections_from_outputs(count, boxes, scores, labels, [(1, 1)] * 3)
    reference = reference_postprocess(model.postprocess_detections, cls_logits, bbox_deltas, model.default_boxes.boxes)
    comparison = compare_detections(reference, got, **EXACT)
    assert comparison.ok and comparison.matched == int(count.sum()), comparison.problems
    assert compare_detections(model.postprocess(cls_logits, bbox_deltas, [(1, 1)] * 3), got, **EXACT).ok


def test_too_few_candidates_is_detected_not_hidden():
    """With M = D and many overlapping boxes of one class, NMS over the M best leaves fewer than D survivors
    while more candidates exist: ``exact`` says so, and the detections indeed differ from full NMS."""
    model = ssdlite.ssdlite_mobilenet_v2(3, size=160, width_mult=0.35, detections_per_image=30).eval()
    a = model.default_boxes.boxes.shape[0]
    g = torch.Generator().manual_seed(0)
    cls_logits = torch.zeros(1, a, 3)
    cls_logits[..., 1] = 3.0 + torch.rand(1, a, generator=g)  # class 1 everywhere, distinct scores
    bbox_deltas = torch.zeros(1, a, 4)
    bbox_deltas[..., 2:] = 3.0  # every box blown up to the whole image: all overlap
    static = StaticPostProcess.from_model(model, candidates=30)
    boxes, scores, labels, count = static(cls_logits, bbox_deltas)
    got = detections_from_outputs(count, boxes, scores, labels, [(1, 1)])
    expected = model.postprocess(cls_logits, bbox_deltas, [(1, 1)])
    if compare_detections(expected, got, **EXACT).ok:
        pytest.fail("the crafted outputs should need more than M candidates")
    assert not static.exact(cls_logits, bbox_deltas, count).all()


def test_static_detector_exports_and_matches_the_model_on_real_images():
    model = varied_model()
    detector = StaticDetector(model).eval()
    x, sizes = model.preprocess(shapes_images(2, model.config.size))
    program = torch.export.export(detector, (x,), strict=False)
    with torch.no_grad():
        got = detections_from_outputs(*_reorder(program.module()(x)), sizes)
        expected = model.postprocess(*model.core(x), sizes)
    comparison = compare_detections(expected, got)
    assert comparison.ok and comparison.matched > 0, comparison.problems


def _reorder(outputs):
    boxes, scores, labels, count = outputs
    return count, boxes, scores, labels


def test_nms_steps_odd_iterates_keep_no_suppressed_box_and_converge():
    """A suppression chain A > B > C (A suppresses B, B would suppress C, A does not overlap C): greedy NMS keeps
    A and C. One step keeps only A (a subset: nothing greedy NMS suppresses), three steps reach {A, C}."""
    default_boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 3)
    post = StaticPostProcess(default_boxes, (0.1, 0.1, 0.2, 0.2), 0.01, 0.45, 3, 3, num_classes=2, candidates=3)
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    boxes = torch.tensor([[[0.0, 0.0, 0.4, 0.4], [0.1, 0.0, 0.5, 0.4], [0.2, 0.0, 0.6, 0.4]]])  # IoU(A,B) = IoU(B,C) = 0.6, IoU(A,C) = 1/3
    labels = torch.ones(1, 3, dtype=torch.int64)
    suppresses = post.suppression(boxes, labels)
    assert post.keep(scores, suppresses, 1).tolist() == [[1.0, 0.0, 0.0]]
    assert post.keep(scores, suppresses, 3).tolist() == [[1.0, 0.0, 1.0]] == post.keep(scores, suppresses, 4).tolist()
    with pytest.raises(ValueError, match="odd"):
        StaticPostProcess(default_boxes, (0.1, 0.1, 0.2, 0.2), 0.01, 0.45, 3, 3, num_classes=2, nms_steps=2)
