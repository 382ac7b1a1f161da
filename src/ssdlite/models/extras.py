"""The four extra feature layers of SSDLite.

MobileNetV2 paper, section 6.2: SSDLite replaces the regular convolutions of SSD's extra layers
with separable ones. Each block is 1x1 conv to half the output depth -> 3x3 depthwise conv with
stride 2 -> 1x1 conv to the output depth, each followed by BN and ReLU6 (the TensorFlow
reference's ``ssd_mobilenet_v2_feature_extractor`` with ``use_depthwise=True``).
At input 320 the maps are 10 -> 5 -> 3 -> 2 -> 1; at 300 the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

#: Output depths of the extra layers in the paper.
EXTRA_DEPTHS = (512, 256, 256, 128)


def extra_block(in_channels: int, out_channels: int, norm_layer: Callable[..., nn.Module]) -> nn.Sequential:
    """1x1 (out/2) -> 3x3 depthwise stride 2 -> 1x1 (out), BN + ReLU6 after each."""
    mid = out_channels // 2
    act = nn.ReLU6
    return nn.Sequential(
        Conv2dNormActivation(in_channels, mid, 1, norm_layer=norm_layer, activation_layer=act),
        Conv2dNormActivation(mid, mid, 3, stride=2, groups=mid, norm_layer=norm_layer, activation_layer=act),
        Conv2dNormActivation(mid, out_channels, 1, norm_layer=norm_layer, activation_layer=act),
    )


class ExtraLayers(nn.Module):
    """Extra layers stacked on the backbone's last map.

    Shapes: ``(N, C_in, H, W)`` -> list of ``(N, depth_i, H_i, W_i)`` with ``H_i = ceil(H_{i-1} / 2)``.
    """

    def __init__(self, in_channels: int, depths: Sequence[int], norm_layer: Callable[..., nn.Module]) -> None:
        super().__init__()
        channels = [in_channels, *depths]
        self.blocks = nn.ModuleList(extra_block(c_in, c_out, norm_layer) for c_in, c_out in zip(channels[:-1], channels[1:]))
        self.out_channels: tuple[int, ...] = tuple(depths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for block in self.blocks:
            x = block(x)  # (N, depth_i, ceil(H/2), ceil(W/2))
            maps.append(x)
        return maps
