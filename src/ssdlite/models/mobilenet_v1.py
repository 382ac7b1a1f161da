"""MobileNetV1 backbone with the SSDLite taps (the MobileNetV2 paper's "MNet V1 + SSDLite" row).

MobileNetV1 paper (Howard et al., 2017), Table 1: a 3x3 convolution with stride 2 to 32 channels,
then 13 depthwise-separable blocks (3x3 depthwise conv + BN + ReLU, 1x1 conv + BN + ReLU) with
output channels and strides::

    block    1   2    3    4    5    6    7 .. 11   12    13
    channels 64  128  128  256  256  512  512      1024  1024
    stride   1   2    1    2    1    2    1        2     1

As in the TensorFlow reference (slim's ``mobilenet_v1`` under the object-detection API's
``ssd_mobilenet_v1_feature_extractor``) the activation is ReLU6 and BN uses eps 1e-3, decay 0.997.
``padding=1`` gives TF's "SAME" map sizes (``ceil(H / 2)`` for a 3x3 stride-2 convolution) but pads
symmetrically, as torchvision's MobileNets do, where TF pads an even input on the bottom/right only
(weights converted from TF see their border pixels shifted by one). The SSD taps
follow that reference's feature-map layout: the first prediction map is ``Conv2d_11_pointwise``
(512 channels, output stride 16: 20x20 at 320, 19x19 at 300), the second ``Conv2d_13_pointwise``
(1024 channels, stride 32), and SSDLite's extra layers go on top of the second. ``stride8=True``
(FPN's small-object level, ours) puts ``Conv2d_5_pointwise`` (256 channels, stride 8) first.

Width multiplier: channels follow the reference's rule ``max(int(c * width_mult), min_depth)``
(truncation, no rounding to multiples of 8 as torchvision's MobileNetV2/V3 do) with ``min_depth=16``,
the value of the object-detection API's ``ssd_mobilenet_v1`` configs; at width 0.5 the maps have
256 and 512 channels, at 0.35 179 and 358.

Measured with :mod:`ssdlite.models.summary` (``ssdlite summary --arch mobilenet_v1``), 91 classes, 320x320:
5,246,911 parameters (backbone 3.21M, extras 0.59M, heads 1.45M) and 1.322B MAdds (1.213B at 300),
against the MobileNetV2 paper's Table 6 row "MNet V1 + SSDLite": 5.1M parameters, 1.3B MAdds
(+2.9% and +1.7%; the paper rounds to two figures). The body alone with a 1000-way classifier would
have 4.21M parameters (convolution weights, no BN) and 568.7M MAdds at 224: the MobileNetV1 paper's
4.2M and 569M.

Layout (there is no torchvision MobileNetV1, so this module's own): ``features[0]`` is the first
convolution (``Conv2dNormActivation``), ``features[i]`` for ``i = 1..13`` the ``i``-th separable block,
a Sequential of the depthwise and the pointwise ``Conv2dNormActivation``; so TF's ``Conv2d_i_pointwise``
is the output of ``features[i]``. State-dict keys are ``features.{i}...``; a classifier trained on
top (``classifier.*``) is ignored when loading.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

from ssdlite.models.backbone import TF_BATCH_NORM
from ssdlite.models.state_dict import classifier_features

if TYPE_CHECKING:
    from ssdlite.models.config import ModelConfig

#: Table 1 of the MobileNetV1 paper: (output channels, stride) of the first conv, then of the 13 separable blocks.
FIRST_CONV = (32, 2)
SEPARABLE_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)) + ((512, 1),) * 5 + ((1024, 2), (1024, 1))
#: ``features`` indices of the taps: TF's ``Conv2d_5_pointwise`` (stride 8), ``_11_`` (stride 16), ``_13_`` (stride 32).
STRIDE8_TAP, STRIDE16_TAP, STRIDE32_TAP = 5, 11, 13
#: The object-detection API's ``min_depth`` for ``ssd_mobilenet_v1``.
MIN_DEPTH = 16


def _depth(channels: int, width_mult: float, min_depth: int) -> int:
    """The reference's width rule: ``max(int(channels * width_mult), min_depth)``."""
    return max(int(channels * width_mult), min_depth)


def separable_block(in_channels: int, out_channels: int, stride: int, norm_layer: Callable[..., nn.Module]) -> nn.Sequential:
    """3x3 depthwise (stride ``stride``) + BN + ReLU6, then 1x1 + BN + ReLU6 (MobileNetV1 paper, Fig. 3)."""
    return nn.Sequential(
        Conv2dNormActivation(
            in_channels, in_channels, 3, stride=stride, groups=in_channels, norm_layer=norm_layer, activation_layer=nn.ReLU6
        ),
        Conv2dNormActivation(in_channels, out_channels, 1, norm_layer=norm_layer, activation_layer=nn.ReLU6),
    )


class MobileNetV1Backbone(nn.Module):
    """MobileNetV1 feature extractor returning ``Conv2d_11_pointwise`` (stride 16) and ``Conv2d_13_pointwise`` (stride 32).

    Args:
        width_mult: channel multiplier (``max(int(c * width_mult), min_depth)`` per layer).
        stride8: also return ``Conv2d_5_pointwise`` (stride 8) first, for an FPN's small-object level.
        norm_layer: normalization layer factory (TF's eps 1e-3, decay 0.997 by default).
        min_depth: the smallest channel count a layer may get from the multiplier.

    Attributes:
        out_channels: channels of each returned map, ``(512, 1024)`` at width 1.0 (``(256, 512, 1024)`` with
            ``stride8``), read off the built layers.

    Shapes:
        input ``(N, 3, S, S)`` -> ``[(N, 512, S/16, S/16), (N, 1024, S/32, S/32)]`` (ceil division).
    """

    def __init__(
        self, width_mult: float = 1.0, stride8: bool = False, norm_layer=TF_BATCH_NORM, min_depth: int = MIN_DEPTH
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        self.stride8 = stride8
        channels, stride = FIRST_CONV
        c_in = _depth(channels, width_mult, min_depth)
        layers: list[nn.Module] = [
            Conv2dNormActivation(3, c_in, 3, stride=stride, norm_layer=norm_layer, activation_layer=nn.ReLU6)
        ]
        for channels, stride in SEPARABLE_BLOCKS:
            c_out = _depth(channels, width_mult, min_depth)
            layers.append(separable_block(c_in, c_out, stride, norm_layer))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        # The channels are read off the built layers (the pointwise conv of each tapped block).
        taps = (STRIDE8_TAP, STRIDE16_TAP, STRIDE32_TAP) if stride8 else (STRIDE16_TAP, STRIDE32_TAP)
        self.out_channels: tuple[int, ...] = tuple(self.features[i][1][0].out_channels for i in taps)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """torchvision's MobileNet initialization: Kaiming-normal (fan out) convolutions, unit BN scale."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        if self.stride8:
            x = self.features[: STRIDE8_TAP + 1](x)  # (N, 256w, S/8, S/8): Conv2d_5_pointwise
            maps.append(x)
            x = self.features[STRIDE8_TAP + 1 : STRIDE16_TAP + 1](x)  # (N, 512w, S/16, S/16)
        else:
            x = self.features[: STRIDE16_TAP + 1](x)  # (N, 512w, S/16, S/16)
        c11 = x  # (N, 512w, S/16, S/16): Conv2d_11_pointwise
        c13 = self.features[STRIDE16_TAP + 1 :](c11)  # (N, 1024w, S/32, S/32): Conv2d_13_pointwise
        return maps + [c11, c13]

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load a state dict of this module's layout (``features.*``; a classifier's ``classifier.*`` is ignored).

        Named like the other backbones' loaders so the builder treats them alike; torchvision itself has no
        MobileNetV1, so the expected layout is this module's own (see the module docstring).

        Raises:
            ValueError: naming ``source`` and listing missing, unexpected or mis-shaped keys.
        """
        what = f"{source} is not an ssdlite MobileNetV1 state dict for this width"
        self.load_state_dict(classifier_features(self.state_dict(), state_dict, what))


def build_backbone(config: ModelConfig) -> tuple[MobileNetV1Backbone, None]:
    """The ``mobilenet_v1`` row's backbone (:mod:`ssdlite.models.backbones`: it has no ImageNet weights to download);
    SSDLite's extra layers go on top."""
    return MobileNetV1Backbone(width_mult=config.width_mult, stride8=config.fpn_stride8), None
