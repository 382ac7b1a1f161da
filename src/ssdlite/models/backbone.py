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
from typing import TYPE_CHECKING

import torch
from torch import nn
from torchvision.models import mobilenet_v2

from ssdlite.models.state_dict import classifier_features

if TYPE_CHECKING:
    from ssdlite.models.config import ModelConfig

#: BatchNorm settings of the TensorFlow reference (eps 1e-3, decay 0.997); torchvision's SSDLite uses the same.
TF_BATCH_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)

#: Index (0-based) of "layer 15" in torchvision's ``features``: the block whose expansion is tapped.
EXPANSION_TAP_LAYER = 14
#: The same rule one stage earlier (FPN's optional stride-8 level): the expansion of layer 8, the
#: first stride-2 block of the 64-channel stage (192 channels at width 1.0, output stride 8).
STRIDE8_TAP_LAYER = 7


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 feature extractor returning the stride-16 expansion map and the stride-32 map.

    Args:
        width_mult: channel multiplier; channels are rounded to multiples of 8 as torchvision does.
        norm_layer: normalization layer factory.
        stride8: also return the stride-8 expansion of layer 8 first (for an FPN's small-object level).

    Attributes:
        out_channels: channels of each returned map, e.g. ``(576, 1280)`` at width 1.0 (its strides: the row of
            :mod:`ssdlite.models.backbones`).

    Shapes:
        input ``(N, 3, S, S)`` -> ``[(N, 576, S/16, S/16), (N, 1280, S/32, S/32)]`` (ceil division).
    """

    def __init__(self, width_mult: float = 1.0, norm_layer=TF_BATCH_NORM, stride8: bool = False) -> None:
        super().__init__()
        self.features = mobilenet_v2(width_mult=width_mult, norm_layer=norm_layer).features
        self.stride8 = stride8
        tap_block = self.features[EXPANSION_TAP_LAYER]
        # The channels are read off the built layers, so width multipliers need no table.
        expansion = tap_block.conv[0]
        self.out_channels: tuple[int, ...] = (expansion.out_channels, self.features[-1].out_channels)
        if stride8:
            self.out_channels = (self.features[STRIDE8_TAP_LAYER].conv[0].out_channels, *self.out_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        if self.stride8:
            x = self.features[:STRIDE8_TAP_LAYER](x)  # (N, 32w, S/8, S/8)
            stride8_block = self.features[STRIDE8_TAP_LAYER]
            c3 = stride8_block.conv[0](x)  # (N, 192, S/8, S/8): expansion of layer 8
            maps.append(c3)
            # Layer 8 has stride 2 (no residual connection), so the block goes on from its tapped expansion, as layer 15
            # does below: the expansion runs once. Run twice (the tap, then the whole block), its two convolutions
            # share one weight and bias, which PT2E INT8 cannot quantize for both: ExecuTorch's XNNPACK refused the
            # second one (an int8 convolution with a float32 bias, "xnn_status_invalid_parameter").
            x = stride8_block.conv[1:](c3)  # (N, 64w, S/16, S/16)
            x = self.features[STRIDE8_TAP_LAYER + 1 : EXPANSION_TAP_LAYER](x)  # (N, 96w, S/16, S/16)
        else:
            x = self.features[:EXPANSION_TAP_LAYER](x)  # (N, 96w, S/16, S/16)
        tap_block = self.features[EXPANSION_TAP_LAYER]
        c4 = tap_block.conv[0](x)  # (N, 576, S/16, S/16): the expansion of layer 15
        # Layer 15 has stride 2, so it has no residual connection: the rest of its conv is the block.
        x = tap_block.conv[1:](c4)  # (N, 160w, S/32, S/32)
        c5 = self.features[EXPANSION_TAP_LAYER + 1 :](x)  # (N, 1280, S/32, S/32)
        return maps + [c4, c5]

    def imagenet_state_dict(self) -> dict[str, torch.Tensor]:
        """torchvision's ImageNet weights for this backbone (downloads once into the torch hub cache)."""
        from torchvision.models import MobileNet_V2_Weights

        return MobileNet_V2_Weights.IMAGENET1K_V1.get_state_dict(progress=False)

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load a torchvision ``mobilenet_v2`` state dict (``features.*``; ``classifier.*`` is ignored).

        Raises:
            ValueError: naming ``source`` and listing missing, unexpected or mis-shaped keys.
        """
        what = f"{source} is not a torchvision mobilenet_v2 state dict for this width"
        self.load_state_dict(classifier_features(self.state_dict(), state_dict, what))


def build_backbone(config: ModelConfig) -> tuple[MobileNetV2Backbone, None]:
    """The ``mobilenet_v2`` row's backbone (:mod:`ssdlite.models.backbones`); SSDLite's extra layers go on top."""
    return MobileNetV2Backbone(width_mult=config.width_mult, stride8=config.fpn_stride8), None
