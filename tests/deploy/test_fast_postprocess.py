"""The postprocess's early stop (NMS on each image's best candidates first) changes no detection."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms

import ssdlite
from ssdlite.deploy.compare import compare_detections


def _reference(post, cls_logits, bbox_deltas, default_boxes):
    """Plain SSD postprocess: every candidate above the threshold through one batched NMS, then the cap."""
    n, a, k = cls_logits.shape
    boxes = post.box_coder.decode(bbox_deltas, default_boxes).clamp(0, 1)  # (N, A, 4)
    scores = cls_logits.softmax(dim=-1)[..., 1:]  # (N, A, K-1)
    top_scores, top_anchor = scores.topk(min(post.topk_candidates, a), dim=1)  # (N, k, K-1)
    out = []
    for i in range(n):
        s, anchor = top_scores[i].T.reshape(-1), top_anchor[i].T.reshape(-1)  # (C*k,)
        labels = torch.arange(1, k).repeat_interleave(top_scores.shape[1])
        keep = s > post.score_threshold
        b, s, labels = boxes[i][anchor[keep]].double(), s[keep].double(), labels[keep]
        kept = batched_nms(b, s, labels, post.nms_threshold)[: post.detections_per_image]
        out.append({"boxes": b[kept], "scores": s[kept], "labels": labels[kept]})
    return out


@pytest.mark.parametrize("spread", [0.01, 1.0, 4.0])  # untrained (all alike), varied, confident
def test_early_stop_gives_the_detections_of_full_nms(spread):
    model = ssdlite.ssdlite_mobilenet_v2(21, size=160, width_mult=0.35, detections_per_image=50).eval()
    post, default_boxes = model.postprocess_detections, model.default_boxes.boxes
    g = torch.Generator().manual_seed(int(spread * 100))
    cls_logits = torch.randn(3, default_boxes.shape[0], 21, generator=g) * spread
    cls_logits[2, :, 0] += 6.0  # third image: few candidates, fewer survivors than the cap
    bbox_deltas = torch.randn(3, default_boxes.shape[0], 4, generator=g) * 0.5
    got = model.postprocess(cls_logits, bbox_deltas, [(1, 1)] * 3)
    expected = _reference(post, cls_logits, bbox_deltas, default_boxes)
    assert len(got[0]["scores"]) == post.detections_per_image
    comparison = compare_detections(expected, got, min_iou=0.99999, score_tol=1e-7)
    assert comparison.ok, comparison.problems
