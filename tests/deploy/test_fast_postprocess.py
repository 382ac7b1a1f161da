"""The postprocess's early stop (NMS on each image's best candidates first) changes no detection."""

from __future__ import annotations

import pytest
import torch

import ssdlite
from ssdlite.deploy.compare import compare_detections

from deploy_helpers import reference_postprocess


@pytest.mark.parametrize("spread", [0.01, 1.0, 4.0])  # untrained (all alike), varied, confident
def test_early_stop_gives_the_detections_of_full_nms(spread):
    model = ssdlite.ssdlite_mobilenet_v2(21, size=160, width_mult=0.35, detections_per_image=50).eval()
    post, default_boxes = model.postprocess_detections, model.default_boxes.boxes
    g = torch.Generator().manual_seed(int(spread * 100))
    cls_logits = torch.randn(3, default_boxes.shape[0], 21, generator=g) * spread
    cls_logits[2, :, 0] += 6.0  # third image: few candidates, fewer survivors than the cap
    bbox_deltas = torch.randn(3, default_boxes.shape[0], 4, generator=g) * 0.5
    got = model.postprocess(cls_logits, bbox_deltas, [(1, 1)] * 3)
    expected = reference_postprocess(post, cls_logits, bbox_deltas, default_boxes)
    assert len(got[0]["scores"]) == post.detections_per_image
    comparison = compare_detections(expected, got, min_iou=0.99999, score_tol=1e-7)
    assert comparison.ok, comparison.problems
