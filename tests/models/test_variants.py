"""Every variant the builder makes is a working detector: channels derived, every layer learns and is saved, it overfits."""

import pytest
import torch

from model_checks import all_layers_learn, overfit_problems, synthetic_pair
from ssdlite.models.ssdlite import build_model, create_model

# Small inputs and widths keep each variant to a few seconds; vgg16 needs 300 for its six maps.
VARIANTS = {
    "mobilenet_v3_large": dict(arch="mobilenet_v3_large", size=160, width_mult=0.5),
    "mobilenet_v3_small": dict(arch="mobilenet_v3_small", size=160, width_mult=1.0),
    "mobilenet_v1": dict(arch="mobilenet_v1", size=160, width_mult=0.5),
    "mobilenet_v2-ssd-head": dict(arch="mobilenet_v2", size=160, width_mult=0.5, head="ssd"),
    "mobilenet_v2-fpn-stride8": dict(arch="mobilenet_v2", size=160, width_mult=0.5, neck="fpn", fpn_stride8=True),
}


@pytest.mark.parametrize("name", [*VARIANTS, "vgg16"])
def test_every_parameter_gets_a_gradient_and_is_saved(name):
    torch.manual_seed(0)
    kwargs = VARIANTS.get(name, dict(arch="vgg16"))
    model = create_model(4, **kwargs)
    assert all_layers_learn(model) == []


#: Found means VOC's criterion, IoU >= 0.5, with the right label and score > 0.5 (the MobileNetV2 test
#: in test_overfit.py asks 0.7). The thin frame of class 3 is the hard box: MobileNetV3-Large
#: (hard-swish, SE) and the 3x3 SSD heads localize it to IoU 0.65-0.70 in these budgets. The 3x3 heads
#: (Xavier init, larger outputs) diverge on it at Adam 3e-3, so they get 1e-3.
OVERFIT = {"mobilenet_v3_large": dict(steps=200, lr=5e-3), "mobilenet_v2-ssd-head": dict(lr=1e-3)}


@pytest.mark.parametrize("name", VARIANTS)
def test_overfits_two_images(name):
    torch.manual_seed(0)
    images, targets = synthetic_pair()
    kwargs = dict(VARIANTS[name], width_mult=0.75) if name == "mobilenet_v3_large" else VARIANTS[name]
    model = create_model(4, **kwargs)
    assert overfit_problems(model, images, targets, min_iou=0.5, **OVERFIT.get(name, {})) == []


@pytest.mark.parametrize("name", [*VARIANTS, "vgg16"])
def test_rebuilds_from_its_config_with_the_same_shapes(name):
    model = create_model(4, **VARIANTS.get(name, dict(arch="vgg16")))
    rebuilt = build_model(model.config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert torch.equal(rebuilt.default_boxes.boxes, model.default_boxes.boxes)


@pytest.mark.parametrize("width_mult", [0.35, 0.75, 1.4])
@pytest.mark.parametrize("size", [192, 256, 512])
def test_width_multipliers_and_input_sizes_keep_six_maps(width_mult, size):
    model = create_model(3, size=size, width_mult=width_mult)
    assert len(model.feature_sizes) == 6
    assert model.feature_sizes[0] == (size // 16, size // 16)
    # The head's input channels are the backbone's declared ones: 576 expansion scaled by the width.
    first = model.core.head.classification.predictors[0][0][0]
    assert first.in_channels == model.core.backbone.out_channels[0]


def test_too_small_an_input_says_so():
    with pytest.raises(ValueError, match="too small"):
        create_model(3, size=32)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        create_model(3, arch="resnet50")
    with pytest.raises(ValueError, match="unknown neck"):
        create_model(3, neck="bifpn")
    with pytest.raises(ValueError, match="neck='fpn'"):
        create_model(3, fpn_stride8=True)
