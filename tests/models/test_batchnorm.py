"""BatchNorm outside plain training: frozen layers, and statistics recomputed for the weights being evaluated."""

from __future__ import annotations

import torch
from torch import nn

from ssdlite.models import ssdlite_mobilenet_v2
from ssdlite.models.batchnorm import freeze_batchnorm, recompute_bn_stats


def _norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


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

    assert used == 2 and not any(m.training for m in model.modules())
    torch.testing.assert_close(first_bn.running_mean, expected_mean, rtol=1e-4, atol=1e-5)
    assert first_bn.momentum == 0.03  # the layer's own momentum is restored
    assert not torch.equal(head_bn.running_var, head_before)


def test_skipped_layers_keep_their_statistics():
    model = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35)
    backbone_state = {k: v.clone() for k, v in model.core.backbone.state_dict().items()}
    recompute_bn_stats(model, [(torch.rand(2, 3, 128, 128), None)], torch.device("cpu"), 1, skip=model.core.backbone)
    for key, value in model.core.backbone.state_dict().items():
        assert torch.equal(value, backbone_state[key]), key
    assert all(m.training for m in model.modules())  # the mode it had is restored


def test_freezing_puts_the_chosen_norms_in_eval_mode_with_fixed_affine_parameters():
    model = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35).train()
    freeze_batchnorm(model, "backbone")
    backbone = set(_norms(model.core.backbone))
    for m in _norms(model):
        frozen = m in backbone
        assert m.training is not frozen
        assert all(p.requires_grad is not frozen for p in m.parameters())
    freeze_batchnorm(model, "all")
    assert not any(m.training or p.requires_grad for m in _norms(model) for p in m.parameters())


def test_none_freezes_nothing():
    model = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35).train()
    freeze_batchnorm(model, "none")
    assert all(m.training and all(p.requires_grad for p in m.parameters()) for m in _norms(model))


def test_frozen_norms_stay_frozen_and_unchanged_through_a_recompute():
    model = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35).train()
    freeze_batchnorm(model, "backbone")
    backbone = model.core.backbone
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    recompute_bn_stats(model, [(torch.rand(2, 3, 128, 128), None)], torch.device("cpu"), 1, skip=backbone)
    # Restoring one flag for the whole model (model.train(True)) would put them back in train mode.
    assert not any(m.training for m in _norms(backbone))
    assert all(m.training for m in _norms(model.core.head))
    model(torch.rand(2, 3, 128, 128), [{"boxes": torch.tensor([[8.0, 8.0, 64.0, 64.0]]), "labels": torch.tensor([1])}] * 2)
    for key, value in backbone.state_dict().items():  # a training forward after it leaves them as they were
        assert torch.equal(value, before[key]), key
