"""MobileNetV2 paper, Table 6: SSDLite has 4.3M parameters and 0.8B MAdds (COCO, 91 classes, 320)."""

import torch
from torch import nn

from ssdlite.models import ssdlite_mobilenet_v2
from ssdlite.models.summary import count_madds, summarize


def test_parameters_and_madds_match_the_paper():
    info = summarize(ssdlite_mobilenet_v2(91, size=320))
    assert abs(info["params"] - 4.3e6) / 4.3e6 <= 0.05, info["params"]
    assert abs(info["madds"] - 0.8e9) / 0.8e9 <= 0.15, info["madds"]
    assert info["num_anchors"] == 2034
    assert info["feature_maps"] == [[576, 20, 20], [1280, 10, 10], [512, 5, 5], [256, 3, 3], [256, 2, 2], [128, 1, 1]]
    assert info["registration"]["ok"]


def test_feature_maps_at_300():
    info = summarize(ssdlite_mobilenet_v2(91, size=300))
    assert [m[1] for m in info["feature_maps"]] == [19, 10, 5, 3, 2, 1]
    assert info["num_anchors"] == 1917


def test_madds_count_depthwise_convolutions_per_group():
    # A 3x3 depthwise conv on 8 channels at 10x10 is 8 * 9 * 100 multiply-adds; a 1x1 conv 8->16 is 8 * 16 * 100.
    net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.Conv2d(8, 16, 1, bias=False))
    wrapped = nn.Sequential(nn.Conv2d(3, 8, 1, bias=False), net)  # count_madds feeds 3 channels
    expected = 3 * 8 * 100 + 8 * 9 * 100 + 8 * 16 * 100
    assert count_madds(wrapped, 10) == expected


def test_channels_follow_the_width_multiplier():
    for width, expansion in ((0.5, 288), (0.75, 432), (1.4, 816)):
        model = ssdlite_mobilenet_v2(3, size=320, width_mult=width)
        c4, c5 = model.core.backbone.out_channels
        assert c4 == expansion
        assert c5 == max(1280, int(1280 * width) // 8 * 8)
        x = torch.zeros(2, 3, 320, 320)
        maps = model.eval().core.features(x)
        assert [m.shape[1] for m in maps] == [c4, c5, 512, 256, 256, 128]
