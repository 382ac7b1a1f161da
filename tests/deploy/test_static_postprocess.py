"""The static-shape postprocess (what ExecuTorch, LiteRT and OpenVINO run) gives the detections of
``torchvision.ops.batched_nms`` over every candidate and of ``model.postprocess``, and exports with torch.export."""

from __future__ import annotations

import pytest
import torch
from deploy_helpers import reference_postprocess, varied_model
from torchvision.ops import batched_nms

import ssdlite
from ssdlite.deploy.compare import compare_detections
from ssdlite.deploy.onnx_postprocess import detections_from_padded
from ssdlite.deploy.samples import shapes_images
from ssdlite.deploy.runtimes.static import fit_nms
from ssdlite.deploy.static_postprocess import NMS_STEPS, StaticDetector, StaticPostProcess
from ssdlite.errors import UserError
from ssdlite.models.postprocess import PostProcess, PostprocessSettings

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
    got = detections_from_padded(boxes, scores, labels, count, [(1, 1)] * 3)
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
    got = detections_from_padded(boxes, scores, labels, count, [(1, 1)])
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
        got = detections_from_padded(*program.module()(x), sizes)  # the one output order
        expected = model.postprocess(*model.core(x), sizes)
    comparison = compare_detections(expected, got)
    assert comparison.ok and comparison.matched > 0, comparison.problems


def _settings(topk: int, detections: int) -> PostprocessSettings:
    return PostprocessSettings((0.1, 0.1, 0.2, 0.2), 0.01, 0.45, topk, detections)


def test_nms_steps_odd_iterates_keep_no_suppressed_box_and_converge():
    """A suppression chain A > B > C (A suppresses B, B would suppress C, A does not overlap C): greedy NMS keeps
    A and C. One step keeps only A (a subset: nothing greedy NMS suppresses), three steps reach {A, C}."""
    default_boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 3)
    post = StaticPostProcess(default_boxes, _settings(3, 3), num_classes=2, candidates=3)
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    boxes = torch.tensor([[[0.0, 0.0, 0.4, 0.4], [0.1, 0.0, 0.5, 0.4], [0.2, 0.0, 0.6, 0.4]]])  # IoU(A,B) = IoU(B,C) = 0.6, IoU(A,C) = 1/3
    labels = torch.ones(1, 3, dtype=torch.int64)
    suppresses = post.suppression(boxes, labels)
    assert post.keep(scores, suppresses, 1).tolist() == [[1.0, 0.0, 0.0]]
    assert post.keep(scores, suppresses, 3).tolist() == [[1.0, 0.0, 1.0]] == post.keep(scores, suppresses, 4).tolist()
    with pytest.raises(ValueError, match="odd"):
        StaticPostProcess(default_boxes, _settings(3, 3), num_classes=2, nms_steps=2)


def _chain(n: int, detections: int):
    """``n`` boxes of one class in a row, each shifted by a quarter of its width: neighbours overlap (IoU 0.6),
    boxes two apart do not (IoU 1/3), scores fall along the row. Greedy NMS keeps every other box, and whether box
    ``i`` survives depends on the whole row before it: a suppression chain of length ``n - 1``."""
    default_boxes = torch.tensor([[0.1 + 0.025 * i, 0.5, 0.1, 0.1] for i in range(n)])  # (n, 4) cx, cy, w, h
    post = StaticPostProcess(default_boxes, _settings(n, detections), num_classes=2, candidates=n)
    cls_logits = torch.zeros(1, n, 2)
    cls_logits[0, :, 1] = 10.0 - 0.1 * torch.arange(n)  # (1, n, 2): descending scores along the row
    return post, cls_logits, torch.zeros(1, n, 4)


def test_steps_needed_covers_a_chain_longer_than_the_default():
    """A chain longer than the default steps: ``steps_needed`` says how many reach greedy NMS's result (batched_nms),
    those steps give it, and two fewer give a subset of it (boxes it keeps, none it suppresses)."""
    n = 25
    post, cls_logits, bbox_deltas = _chain(n, detections=n)
    needed = int(post.steps_needed(cls_logits, bbox_deltas)[0])
    assert needed % 2 == 1 and needed > NMS_STEPS
    scores, boxes, _, _ = post.candidates(cls_logits, bbox_deltas)
    greedy = set(batched_nms(boxes[0], scores[0], torch.zeros(n, dtype=torch.int64), 0.45).tolist())
    assert greedy == set(range(0, n, 2))
    suppresses = post.suppression(boxes, torch.ones(1, n, dtype=torch.int64))
    assert set(post.keep(scores, suppresses, needed)[0].nonzero().flatten().tolist()) == greedy
    fewer = set(post.keep(scores, suppresses, needed - 2)[0].nonzero().flatten().tolist())
    assert fewer < greedy


def test_candidates_needed_is_the_position_of_the_last_detection_kept():
    """Greedy NMS keeps boxes 0, 2, 4, ... of the chain: the 5 best detections need its 9 best candidates; with
    room for 20 detections (13 survive) the last survivor, candidate 24, is needed. A 26th candidate that the
    first one suppresses changes nothing: the static result without it is already NMS's."""
    post, cls_logits, bbox_deltas = _chain(25, detections=5)
    assert post.candidates_needed(cls_logits, bbox_deltas).tolist() == [9]
    post, cls_logits, bbox_deltas = _chain(25, detections=20)
    assert post.candidates_needed(cls_logits, bbox_deltas).tolist() == [25]
    default_boxes = torch.cat([post.default_boxes, post.default_boxes[:1]])  # (26, 4): a copy of box 0, scored last
    post = StaticPostProcess(default_boxes, _settings(26, 20), num_classes=2, candidates=25, nms_steps=25)
    cls_logits = torch.cat([cls_logits, torch.tensor([[[0.0, 5.0]]])], dim=1)  # (1, 26, 2)
    bbox_deltas = torch.zeros(1, 26, 4)
    assert post.candidates_needed(cls_logits, bbox_deltas).tolist() == [25]
    boxes, scores, labels, count = post(cls_logits, bbox_deltas)
    got = detections_from_padded(boxes, scores, labels, count, [(1, 1)])
    reference = reference_postprocess(PostProcess(_settings(26, 20)), cls_logits, bbox_deltas, default_boxes)
    assert compare_detections(reference, got, **EXACT).ok and int(count[0]) == 13


def test_export_sizes_the_nms_for_its_images_and_refuses_too_few_candidates():
    model = varied_model()
    images = shapes_images(2, model.config.size)
    m, steps, said = fit_nms(model, images, None)
    assert steps >= NMS_STEPS and f"{m} best candidates in {steps} matrix steps" in said
    with torch.no_grad():
        x, _ = model.preprocess(images)
        raw = model.core(x)
    post = StaticPostProcess.from_model(model, m, steps)
    boxes, scores, labels, count = post(*raw)
    assert post.exact(*raw, count).all()
    needed = int(StaticPostProcess.from_model(model).candidates_needed(*raw).max())
    with pytest.raises(UserError, match=f"need --candidates {needed}"):
        fit_nms(model, images, needed - 1)
