"""Recomputing BatchNorm statistics for the weights being evaluated."""

from __future__ import annotations

import torch

from ssdlite.engine.precise_bn import recompute_bn_stats
from ssdlite.models import ssdlite_mobilenet_v2


def test_statistics_become_the_exact_average_over_the_batches():
    model = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35).eval()
    batches = [(torch.rand(4, 3, 128, 128), None) for _ in range(3)]
    first_conv, first_bn = model.core.backbone.features[0][0], model.core.backbone.features[0][1]
    with torch.no_grad():
        outputs = [first_conv(model.preprocess(images)[0]) for images, _ in batches[:2]]  # (4, C, 64, 64) each
    expected_mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outputs]).mean(0)
    head_bn = next(m for m in model.core.head.modules() if isinstance(m, torch.nn.BatchNorm2d))
    head_before = head_bn.running_var.clone()

    used = recompute_bn_stats(model, batches, torch.device("cpu"), max_batches=2)

    assert used == 2 and not model.training
    torch.testing.assert_close(first_bn.running_mean, expected_mean, rtol=1e-4, atol=1e-5)
    assert first_bn.momentum == 0.03  # the layer's own momentum is restored
    assert not torch.equal(head_bn.running_var, head_before)


def test_skipped_layers_keep_their_statistics():
    model = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35)
    backbone_state = {k: v.clone() for k, v in model.core.backbone.state_dict().items()}
    recompute_bn_stats(model, [(torch.rand(2, 3, 128, 128), None)], torch.device("cpu"), 1, skip=model.core.backbone)
    for key, value in model.core.backbone.state_dict().items():
        assert torch.equal(value, backbone_state[key]), key
    assert model.training  # the mode it had is restored
