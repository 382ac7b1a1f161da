"""Box coding, matching and loss agree with torchvision's SSD pieces on identical inputs."""

from types import SimpleNamespace

import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_iou

from ssdlite.models import BoxCoder, ModelConfig, match, multibox_loss
from ssdlite.models.factory import default_boxes_for

#: The settings under test are the model's own defaults.
DEFAULTS = ModelConfig().resolved()


def random_boxes(n, generator, scale=1.0):
    xy = torch.rand(n, 2, generator=generator) * 0.7
    wh = torch.rand(n, 2, generator=generator) * 0.3 + 0.02
    return torch.cat([xy, xy + wh], dim=1) * scale


def test_encode_decode_equal_torchvision_box_coder():
    g = torch.Generator().manual_seed(1)
    anchors = default_boxes_for(DEFAULTS, [(5, 5), (3, 3), (1, 1)]).boxes  # (A, 4) cx, cy, w, h
    anchors_xyxy = torch.cat([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, :2] + anchors[:, 2:] / 2], dim=1)
    gt = random_boxes(anchors.shape[0], g)
    ours, theirs = BoxCoder(DEFAULTS.variances), det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    torch.testing.assert_close(ours.encode(gt, anchors), theirs.encode_single(gt, anchors_xyxy), atol=1e-5, rtol=1e-5)
    deltas = torch.randn(anchors.shape[0], 4, generator=g)
    torch.testing.assert_close(ours.decode(deltas, anchors), theirs.decode_single(deltas, anchors_xyxy), atol=1e-5, rtol=1e-5)
    # And decode inverts encode.
    torch.testing.assert_close(ours.decode(ours.encode(gt, anchors), anchors), gt, atol=1e-5, rtol=1e-5)


def test_matching_equals_ssd_matcher():
    g = torch.Generator().manual_seed(2)
    db = default_boxes_for(DEFAULTS, [(10, 10), (5, 5), (3, 3), (2, 2), (1, 1)])
    anchors = db.xyxy()
    gts = [random_boxes(n, g) for n in (1, 4, 7, 0)]
    ours = match(gts, anchors, DEFAULTS.iou_threshold)
    matcher = det_utils.SSDMatcher(0.5)
    for i, gt in enumerate(gts):
        if gt.shape[0] == 0:
            assert (ours[i] == -1).all()
            continue
        torch.testing.assert_close(ours[i], matcher(box_iou(gt, anchors)))
    assert (ours >= 0).sum() > 0


def test_multibox_loss_equals_torchvision_ssd_loss():
    g = torch.Generator().manual_seed(3)
    size, k = 320.0, 6
    db = default_boxes_for(DEFAULTS, [(10, 10), (5, 5), (3, 3), (2, 2), (1, 1)])
    anchors_norm = db.xyxy()
    a = anchors_norm.shape[0]
    gts = [random_boxes(n, g) for n in (1, 3, 5)]
    labels = [torch.randint(1, k, (gt.shape[0],), generator=g) for gt in gts]
    n = len(gts)
    cls_logits = torch.randn(n, a, k, generator=g)
    bbox_deltas = torch.randn(n, a, 4, generator=g)

    matches = match(gts, anchors_norm, DEFAULTS.iou_threshold)  # (N, A)
    coder = BoxCoder(DEFAULTS.variances)
    cls_targets = torch.stack([torch.where(m >= 0, lab[m.clamp(min=0)], 0) for m, lab in zip(matches, labels)])
    bbox_targets = torch.stack([coder.encode(gt[m.clamp(min=0)], db.boxes) for m, gt in zip(matches, gts)])
    # Every image has a ground truth, so min_negatives (3; torchvision has none) does not come into play.
    ours = multibox_loss(cls_logits, bbox_deltas, cls_targets, bbox_targets, DEFAULTS.neg_pos_ratio, DEFAULTS.min_negatives)

    # torchvision works in pixels; box encoding is scale-free, so the loss must be the same.
    fake_ssd = SimpleNamespace(box_coder=det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)), neg_to_pos_ratio=3)
    targets = [{"boxes": gt * size, "labels": lab} for gt, lab in zip(gts, labels)]
    theirs = SSD.compute_loss(
        fake_ssd,
        targets,
        {"bbox_regression": bbox_deltas, "cls_logits": cls_logits},
        [anchors_norm * size] * n,
        list(matches),
    )
    for key in ("bbox_regression", "classification"):
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-5, rtol=1e-5)
