"""The FPN-SSDLite neck: shapes per level, a top-down pathway that really carries the coarse maps down, every layer learns."""

import warnings
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model_checks import all_layers_learn
from ssdlite.models.fpn import FPNNeck, nearest_indices, nearest_upsample
from ssdlite.models.factory import create_model


def small_fpn(**kwargs):
    return create_model(4, size=160, width_mult=0.35, neck="fpn", **kwargs)


def neck_inputs(model, x):
    """The maps the neck sees: backbone taps, then the extra layers (largest first)."""
    core = model.core.eval()
    with torch.no_grad():
        maps = core.backbone(x)
        return maps + core.extras(maps[-1])


def test_every_level_keeps_its_size_and_gets_the_declared_channels():
    model = small_fpn()
    x = torch.rand(2, 3, 160, 160)
    maps = neck_inputs(model, x)
    with torch.no_grad():
        out = model.core.features(x)
    neck = model.core.neck
    assert len(out) == 6 and neck.out_channels == (128,) * 6
    assert [m.shape[1] for m in out] == list(neck.out_channels)
    # 160 gives 10, 5, 3, 2, 1, 1: the 5 -> 3 -> 2 -> 1 steps are not exact halvings and 1 -> 1 is none.
    sizes = [tuple(m.shape[-2:]) for m in out]
    assert sizes == [tuple(m.shape[-2:]) for m in maps] == model.feature_sizes == [(10, 10), (5, 5), (3, 3), (2, 2), (1, 1), (1, 1)]
    assert [lateral.in_channels for lateral in neck.lateral] == [m.shape[1] for m in maps]
    assert [p[0][0].in_channels for p in model.core.head.classification.predictors] == list(neck.out_channels)


def test_stride8_adds_a_seventh_level_first():
    model = small_fpn(fpn_stride8=True).eval()
    assert len(model.core.backbone.out_channels) == 3  # the stride-8 map first (map sizes below)
    assert model.feature_sizes == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1), (1, 1)]
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        out = model.core.features(x)
        cls_logits, bbox_deltas = model.core(x)
    assert [tuple(m.shape[1:]) for m in out] == [(128, h, w) for h, w in model.feature_sizes]
    boxes = sum(h * w * b for (h, w), b in zip(model.feature_sizes, model.default_boxes.boxes_per_location))
    assert boxes == model.default_boxes.boxes.shape[0] == cls_logits.shape[1] == bbox_deltas.shape[1]


def test_sizes_that_are_not_exact_doubles():
    neck = FPNNeck([8, 16, 24, 32], width=16).eval()
    maps = [torch.rand(1, c, s, s + 1) for c, s in zip([8, 16, 24, 32], [5, 3, 2, 1])]
    with torch.no_grad():
        out = neck(maps)
    assert [tuple(m.shape) for m in out] == [(1, 16, 5, 6), (1, 16, 3, 4), (1, 16, 2, 3), (1, 16, 1, 2)]


def test_the_coarsest_map_reaches_the_finest_output_and_nothing_flows_up():
    model = small_fpn()
    maps = neck_inputs(model, torch.rand(2, 3, 160, 160))
    neck = model.core.neck.eval()
    changed = maps[:-1] + [maps[-1] + torch.randn_like(maps[-1])]  # a different 1x1 map
    with torch.no_grad():
        out, out_changed = neck(maps), neck(changed)
        out_fine_changed = neck([maps[0] + torch.randn_like(maps[0])] + maps[1:])
    assert (out[0] - out_changed[0]).abs().max() > 1e-3  # top-down: the 1x1 map changes the 10x10 output
    torch.testing.assert_close(out_fine_changed[-1], out[-1], rtol=0, atol=0)  # and the 10x10 map never reaches the 1x1 one
    # Every level feeds the finest output through the top-down path.
    inputs = [m.clone().requires_grad_(True) for m in maps]
    neck(inputs)[0].sum().backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in inputs)


def test_smoothing_is_depthwise_separable_and_laterals_are_linear():
    neck = FPNNeck([16, 32], width=24)
    for lateral, smooth in zip(neck.lateral, neck.smooth):
        assert isinstance(lateral, nn.Conv2d) and lateral.kernel_size == (1, 1) and lateral.bias is not None
        depthwise, pointwise = smooth[0], smooth[1]
        assert depthwise[0].kernel_size == (3, 3) and depthwise[0].groups == 24
        assert pointwise[0].kernel_size == (1, 1) and pointwise[0].groups == 1
        assert all(isinstance(s[1], nn.BatchNorm2d) and isinstance(s[2], nn.ReLU6) for s in (depthwise, pointwise))


def test_initialized_like_the_extra_layers():
    neck = small_fpn().core.neck  # the detector does not re-initialize the neck: its own init must hold
    weights = torch.cat([m.weight.flatten() for m in neck.modules() if isinstance(m, nn.Conv2d)])
    assert abs(weights.std().item() - 0.03) < 0.002 and abs(weights.mean().item()) < 0.002
    assert all(m.bias is None or not m.bias.any() for m in neck.modules() if isinstance(m, nn.Conv2d))


def test_every_parameter_gets_a_finite_nonzero_gradient_and_is_saved():
    model = small_fpn(fpn_stride8=True)
    assert all_layers_learn(model) == []
    assert sum(k.startswith("core.neck.") for k in model.state_dict()) == len(model.core.neck.state_dict())


def test_the_check_catches_neck_layers_held_in_a_plain_list():
    model = small_fpn()
    neck = model.core.neck
    laterals = list(neck.lateral)
    del neck.lateral
    neck.lateral = laterals  # runs in forward, invisible to parameters() and the state dict
    problems = all_layers_learn(model)
    assert any(p.startswith("unregistered: core.neck.lateral[0] (Conv2d") for p in problems)
    assert not any(k.startswith("core.neck.lateral") for k in model.state_dict())


def test_traces_like_eager_at_other_batch_sizes():
    # TorchScript export traces the core at batch 2 and runs it at any batch: the upsampling sizes must not break that.
    model = small_fpn().eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        traced = torch.jit.trace(model.core, torch.rand(2, 3, 160, 160), check_trace=False)
        for n in (1, 3):
            x = torch.rand(n, 3, 160, 160)
            for got, want in zip(traced(x), model.core(x)):
                torch.testing.assert_close(got, want)


def test_wrong_numbers_of_levels_are_refused():
    with pytest.raises(ValueError, match="at least 2 levels"):
        FPNNeck([16])
    with pytest.raises(ValueError, match="built for 2 maps, got 3"):
        FPNNeck([8, 8])([torch.zeros(1, 8, 4, 4)] * 3)


def test_residual_fpn_starts_as_the_identity_and_keeps_the_channels():
    """``neck="residual_fpn"``: the heads read the pretrained maps' own channels, and the top-down branch
    starts near zero, so at initialization the neck passes every map through almost unchanged."""
    import torch

    from ssdlite.models.fpn import FPNNeck

    channels = [192, 576, 1280, 512]
    neck = FPNNeck(channels, residual=True).eval()
    assert neck.out_channels == tuple(channels)
    maps = [torch.randn(2, c, s, s) for c, s in zip(channels, (40, 20, 10, 5))]
    with torch.no_grad():
        out = neck(maps)
    for a, b in zip(out, maps):
        change = (a - b).norm() / b.norm()
        assert 0 < change < 0.02, change
    # ... and every layer of the branch gets a gradient from the first step on.
    neck.train()
    sum((o**2).sum() for o in neck(maps)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in neck.parameters())


@pytest.mark.parametrize("src, dst", [((3, 3), (5, 5)), ((5, 5), (10, 10)), ((2, 2), (3, 3)), ((10, 10), (20, 20)),
                                      ((1, 1), (2, 2)), ((3, 2), (5, 3)), ((20, 20), (40, 40)), ((7, 7), (7, 7))])
def test_the_upsampling_is_pytorchs_nearest_bit_for_bit(src, dst):
    """The gather computes what ``F.interpolate(mode="nearest")`` computes, for whole and non-whole ratios."""
    x = torch.randn(2, 4, *src)
    torch.testing.assert_close(nearest_upsample(x, dst), F.interpolate(x, size=dst, mode="nearest"), rtol=0, atol=0)


def test_the_indices_follow_pytorchs_rule_at_every_size():
    # The case: LiteRT's resize samples pixel centres (0, 0, 1, 2, 2); PyTorch's nearest floors i * 3 / 5.
    assert nearest_indices(3, 5) == (0, 0, 1, 1, 2)
    for src in range(1, 41):
        for dst in range(src, 2 * src + 2):  # every ratio an FPN level pair can have, and more
            probe = torch.arange(src, dtype=torch.float32).view(1, 1, src, 1)
            expected = F.interpolate(probe, size=(dst, 1), mode="nearest").flatten().long().tolist()
            assert list(nearest_indices(src, dst)) == expected, (src, dst)


@pytest.mark.parametrize("arch", ["mobilenet_v2", "mobilenet_v3_large"])
def test_residual_fpn_outputs_are_those_of_interpolate(arch, monkeypatch):
    """Same weights, same outputs: the neck's gather changes no number of a trained residual_fpn model (every level
    pair at 160 is there: 20 -> 10 -> 5 -> 3 -> 2 -> 1 -> 1)."""
    import ssdlite.models.fpn as fpn

    torch.manual_seed(0)
    model = create_model(4, arch, size=160, width_mult=0.35, neck="residual_fpn", fpn_stride8=True).train()
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        model.core(x)  # train mode: running statistics away from 0 and 1, so every layer's numbers are of order 1
        model.eval()
        got = model.core(x)
        monkeypatch.setattr(fpn, "nearest_upsample", lambda t, size: F.interpolate(t, size=tuple(size), mode="nearest"))
        expected = model.core(x)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v1"])
def test_every_convolution_runs_once_and_the_stride8_tap_changes_no_other_map(arch):
    """The stride-8 level taps a stride-2 block's expansion and the block goes on from it. Run twice (the tap, then
    the whole block), that convolution appeared twice in exported graphs with one shared weight and bias, and PT2E
    INT8 left the second with a float32 bias, which ExecuTorch's XNNPACK refused ("Failed to create convolution
    node ... xnn_status_invalid_parameter")."""
    torch.manual_seed(0)
    model = create_model(4, arch, size=160, width_mult=0.35, neck="residual_fpn", fpn_stride8=True).eval()
    plain = create_model(4, arch, size=160, width_mult=0.35).eval()
    plain.core.backbone.load_state_dict(model.core.backbone.state_dict())
    x = torch.rand(2, 3, 160, 160)
    calls = Counter()
    for name, module in model.core.named_modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda *_, name=name: calls.update([name]))
    with torch.no_grad():
        model.core(x)
        counted = dict(calls)
        maps, plain_maps = model.core.backbone(x), plain.core.backbone(x)
    assert counted and set(counted.values()) == {1}, [name for name, n in counted.items() if n > 1]
    assert len(maps) == 3 and len(plain_maps) == 2
    for a, b in zip(maps[1:], plain_maps):  # the stride-16 and stride-32 maps are the plain backbone's, bit for bit
        torch.testing.assert_close(a, b, rtol=0, atol=0)
