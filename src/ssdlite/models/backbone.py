"""MobileNetV2 backbone with the two SSDLite taps.

MobileNetV2 paper (Sandler et al., 2018), section 6.2: "For MobileNetV2, the first layer of
SSDLite is attached to the expansion of layer 15 (with output stride of 16). The second and the
rest of SSDLite layers are attached on top of the last layer (with output stride of 32)."

Layer 15 (1-based) is torchvision's ``features[14]``, the first 160-channel inverted residual,
whose depthwise convolution has stride 2. Its *expansion* is the 1x1 conv + BN + ReLU6 before
that depthwise convolution, so the tap still has output stride 16 (576 channels at width 1.0).
The last layer is ``features[18]``, the 1x1 conv to 1280 channels at output stride 32.

The module keeps torchvision's ``features`` Sequential untouched, so a torchvision
``mobilenet_v2`` state dict (``features.*`` keys) loads as it is.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.models import mobilenet_v2

from ssdlite.models.state_dict import state_dict_mismatch

#: BatchNorm settings of the TensorFlow reference (eps 1e-3, decay 0.997); torchvision's SSDLite uses the same.
TF_BATCH_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)

#: Index (0-based) of "layer 15" in torchvision's ``features``: the block whose expansion is tapped.
EXPANSION_TAP_LAYER = 14


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 feature extractor returning the stride-16 expansion map and the stride-32 map.

    Args:
        width_mult: channel multiplier; channels are rounded to multiples of 8 as torchvision does.
        norm_layer: normalization layer factory.

    Attributes:
        out_channels: channels of each returned map, e.g. ``(576, 1280)`` at width 1.0.
        strides: output stride of each returned map, ``(16, 32)``.

    Shapes:
        input ``(N, 3, S, S)`` -> ``[(N, 576, S/16, S/16), (N, 1280, S/32, S/32)]`` (ceil division).
    """

    def __init__(self, width_mult: float = 1.0, norm_layer=TF_BATCH_NORM) -> None:
        super().__init__()
        self.features = mobilenet_v2(width_mult=width_mult, norm_layer=norm_layer).features
        tap_block = self.features[EXPANSION_TAP_LAYER]
        # The channels are read off the built layers, so width multipliers need no table.
        expansion = tap_block.conv[0]
        self.out_channels: tuple[int, ...] = (expansion.out_channels, self.features[-1].out_channels)
        self.strides: tuple[int, ...] = (16, 32)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.features[:EXPANSION_TAP_LAYER](x)  # (N, 96w, S/16, S/16)
        tap_block = self.features[EXPANSION_TAP_LAYER]
        c4 = tap_block.conv[0](x)  # (N, 576, S/16, S/16): the expansion of layer 15
        # Layer 15 has stride 2, so it has no residual connection: the rest of its conv is the block.
        x = tap_block.conv[1:](c4)  # (N, 160w, S/32, S/32)
        c5 = self.features[EXPANSION_TAP_LAYER + 1 :](x)  # (N, 1280, S/32, S/32)
        return [c4, c5]

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load a torchvision ``mobilenet_v2`` state dict (``features.*``; ``classifier.*`` is ignored).

        Raises:
            ValueError: naming ``source`` and listing missing, unexpected or mis-shaped keys.
        """
        features = {k: v for k, v in state_dict.items() if k.startswith("features.")}
        # Anything that is neither the feature extractor nor the ImageNet classifier does not belong here.
        foreign = {k: v for k, v in state_dict.items() if not k.startswith(("features.", "classifier."))}
        problem = state_dict_mismatch(self.state_dict(), {**features, **foreign})
        if problem:
            raise ValueError(f"{source} is not a torchvision mobilenet_v2 state dict for this width: {problem}")
        self.load_state_dict(features)
