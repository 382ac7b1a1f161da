"""MobileNetV3 backbones: the taps are torchvision's SSDLite feature maps, and torchvision classifier weights load.

The comparisons run in train mode: with fresh BatchNorm statistics (mean 0, variance 1) eval-mode
maps of a randomly initialized MobileNetV3 shrink to about 1e-6, where any wiring would "match";
batch statistics keep every map near unit scale, and both sides compute them from the same input.
"""

import pytest
import torch
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small
from torchvision.models.detection.ssdlite import _mobilenet_extractor

from ssdlite.models.backbone import TF_BATCH_NORM
from ssdlite.models.mobilenet_v3 import MobileNetV3Backbone
from ssdlite.models.factory import create_model

TORCHVISION = {"mobilenet_v3_large": mobilenet_v3_large, "mobilenet_v3_small": mobilenet_v3_small}
# (C4 expansion, last layer) channels at width 1.0, as the MobileNetV3 paper's Tables 1, 2 and 6 give them.
CHANNELS = {
    ("mobilenet_v3_large", False): (672, 960),
    ("mobilenet_v3_large", True): (672, 480),
    ("mobilenet_v3_small", False): (288, 576),
    ("mobilenet_v3_small", True): (288, 288),
}


@pytest.mark.parametrize("arch, reduced_tail", list(CHANNELS))
def test_maps_equal_torchvision_ssdlite_feature_extractor(arch, reduced_tail):
    reference = TORCHVISION[arch](norm_layer=TF_BATCH_NORM, reduced_tail=reduced_tail)
    backbone = MobileNetV3Backbone(arch, reduced_tail=reduced_tail).train()
    backbone.load_torchvision_state_dict(reference.state_dict(), "reference")
    # torchvision's SSDLite extractor, built around the same layers (6 trainable stages: nothing frozen).
    extractor = _mobilenet_extractor(reference, 6, TF_BATCH_NORM).train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        c4, c5 = backbone(x)
        expected_c4 = extractor.features[0](x)  # everything up to and including the C4 expansion
        expected_c5 = extractor.features[1](expected_c4)
    assert backbone.out_channels == CHANNELS[arch, reduced_tail]
    assert c4.shape == (2, backbone.out_channels[0], 4, 4) and c5.shape == (2, backbone.out_channels[1], 2, 2)
    assert c4.std() > 0.1 and c5.std() > 0.1  # a real signal, so the comparison means something
    assert (c4 - expected_c4).abs().max() <= 1e-5
    assert (c5 - expected_c5).abs().max() <= 1e-5


@pytest.mark.parametrize("arch, c3_channels", [("mobilenet_v3_large", 240), ("mobilenet_v3_small", 96)])
def test_stride8_map_is_the_expansion_of_the_previous_stride2_block(arch, c3_channels):
    backbone = MobileNetV3Backbone(arch, stride8=True).train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        c3, c4, c5 = backbone(x)
        block = backbone.features[backbone.c3_index]
        expected = block.block[0](backbone.features[: backbone.c3_index](x))
        plain = MobileNetV3Backbone(arch).train()
        plain.load_state_dict(backbone.state_dict())
        expected_c4, expected_c5 = plain(x)
    assert backbone.out_channels[0] == c3_channels
    assert c3.shape == (2, c3_channels, 8, 8) and c3.std() > 0.1 and c5.std() > 0.1
    torch.testing.assert_close(c3, expected)
    torch.testing.assert_close(c4, expected_c4)
    torch.testing.assert_close(c5, expected_c5)


def test_c4_is_the_papers_bottleneck_and_the_builder_makes_six_maps_at_320():
    # Section 6.2: the 13th bottleneck of Large, the 9th of Small (features[0] is the stem convolution).
    assert MobileNetV3Backbone("mobilenet_v3_large").c4_index == 13
    model = create_model(3, arch="mobilenet_v3_small")
    assert model.core.backbone.c4_index == 9
    assert model.feature_sizes == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]


def test_torchvision_classifier_state_dict_loads():
    reference = mobilenet_v3_large(weights=None)  # features.* and classifier.*
    backbone = MobileNetV3Backbone("mobilenet_v3_large")
    backbone.load_torchvision_state_dict(reference.state_dict(), "mnv3.pth")
    torch.testing.assert_close(backbone.features[13].block[0][0].weight, reference.features[13].block[0][0].weight)
    torch.testing.assert_close(backbone.features[16][1].running_var, reference.features[16][1].running_var)


def test_other_widths_tails_and_models_are_refused_with_the_source_named():
    backbone = MobileNetV3Backbone("mobilenet_v3_large")
    with pytest.raises(ValueError, match=r"w075\.pth is not a torchvision mobilenet_v3_large state dict.*shape mismatches"):
        backbone.load_torchvision_state_dict(mobilenet_v3_large(width_mult=0.75).state_dict(), "w075.pth")
    with pytest.raises(ValueError, match=r"small\.pth is not a torchvision mobilenet_v3_large.*missing keys"):
        backbone.load_torchvision_state_dict(mobilenet_v3_small().state_dict(), "small.pth")
    reduced = MobileNetV3Backbone("mobilenet_v3_small", reduced_tail=True)
    with pytest.raises(ValueError, match=r"full\.pth is not a torchvision mobilenet_v3_small state dict for this width, reduced tail"):
        reduced.load_torchvision_state_dict(mobilenet_v3_small().state_dict(), "full.pth")
    state = mobilenet_v3_small().state_dict()
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): extra\.weight"):
        MobileNetV3Backbone("mobilenet_v3_small").load_torchvision_state_dict(state, "extra.pth")


def test_imagenet_weights_are_refused_for_the_reduced_tail():
    # Raised before any download: torchvision's ImageNet weights have the full tail.
    with pytest.raises(ValueError, match="full tail"):
        MobileNetV3Backbone("mobilenet_v3_large", reduced_tail=True).imagenet_state_dict()


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="mobilenet_v3_tiny"):
        MobileNetV3Backbone("mobilenet_v3_tiny")
