"""MobileNetV3 (Large and Small) backbones with the two SSDLite taps.

MobileNetV3 paper (Howard et al., 2019), section 6.2 "SSDLite": the first SSDLite layer is attached
to the last feature extractor layer with output stride 16 (C4), the second to the last one with
output stride 32 (C5). "For MobileNetV3-Large, C4 is the expansion layer of the 13-th bottleneck
block. For MobileNetV3-Small, C4 is the expansion layer of the 9-th bottleneck block. For both
networks, C5 is the layer immediately before pooling." The paper also halves the channels of all
layers between C4 and C5 for detection ("reduced tail", Table 6), which
torchvision's ``ssdlite320_mobilenet_v3_large`` uses whenever it trains without ImageNet weights.

As in torchvision's ``_mobilenet_extractor``, C4 is found as the last stride-2 block of
``features`` (``features[13]`` of Large, ``features[9]`` of Small); its expansion (``block[0]``,
1x1 conv + BN + activation) comes before the stride-2 depthwise convolution, so the tap has output
stride 16. Channels at width 1.0: Large 672 and 960 (reduced tail 672 and 480), Small 288 and 576
(reduced tail 288 and 288).

The module keeps torchvision's ``features`` Sequential untouched, so a torchvision
``mobilenet_v3_large`` / ``mobilenet_v3_small`` state dict (``features.*`` keys) loads as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small

from ssdlite.models.backbone import TF_BATCH_NORM
from ssdlite.models.state_dict import classifier_features

if TYPE_CHECKING:
    from ssdlite.models.config import ModelConfig

#: torchvision's builders by architecture name.
BUILDERS = {"mobilenet_v3_large": mobilenet_v3_large, "mobilenet_v3_small": mobilenet_v3_small}


def _expansion(block: nn.Module, index: int) -> nn.Module:
    """The expansion layer (1x1 conv + BN + activation) of an inverted residual ``block``."""
    if block.use_res_connect:
        # A residual block's expansion output is not the block's input to the rest: the tap would be wrong.
        raise ValueError(f"features[{index}] has a residual connection: it is not a stride-2 block")
    expansion = block.block[0]
    if expansion[0].kernel_size != (1, 1) or expansion[0].groups != 1:
        # Blocks whose expansion ratio is 1 start with the depthwise conv: there is no expansion to tap.
        raise ValueError(f"features[{index}] has no expansion layer to tap")
    return expansion


class MobileNetV3Backbone(nn.Module):
    """MobileNetV3 feature extractor returning the C4 expansion map (stride 16) and the last map (stride 32).

    Args:
        arch: ``"mobilenet_v3_large"`` or ``"mobilenet_v3_small"``.
        width_mult: channel multiplier; channels are rounded to multiples of 8 as torchvision does.
        reduced_tail: halve the channels of the blocks after C4 and of the last layer (paper, Table 6).
        stride8: also return the expansion of the previous stride-2 block (stride 8) first, for an FPN.
        norm_layer: normalization layer factory (torchvision's SSDLite: eps 1e-3, momentum 0.03).

    Attributes:
        out_channels: channels of each returned map, e.g. ``(672, 960)`` for Large at width 1.0.
        c4_index, c3_index: indices in ``features`` of the last two stride-2 blocks (the taps).

    Shapes (Large, width 1.0):
        input ``(N, 3, S, S)`` -> ``[(N, 672, S/16, S/16), (N, 960, S/32, S/32)]`` (ceil division);
        with ``stride8`` a ``(N, 240, S/8, S/8)`` map comes first.
    """

    def __init__(
        self,
        arch: str = "mobilenet_v3_large",
        width_mult: float = 1.0,
        reduced_tail: bool = False,
        stride8: bool = False,
        norm_layer=TF_BATCH_NORM,
    ) -> None:
        super().__init__()
        if arch not in BUILDERS:
            raise ValueError(f"unknown MobileNetV3 architecture {arch!r}; choose one of {tuple(BUILDERS)}")
        self.arch = arch
        self.reduced_tail = reduced_tail
        self.stride8 = stride8
        self.features = BUILDERS[arch](width_mult=width_mult, reduced_tail=reduced_tail, norm_layer=norm_layer).features
        # torchvision marks every stride-2 block with ``_is_cn``: C4 is the last one, C3 the one before.
        strided = [i for i, layer in enumerate(self.features) if getattr(layer, "_is_cn", False)]
        self.c3_index, self.c4_index = strided[-2], strided[-1]
        # The channels are read off the built layers, so width multipliers and tails need no table.
        c4_channels = _expansion(self.features[self.c4_index], self.c4_index)[0].out_channels
        self.out_channels: tuple[int, ...] = (c4_channels, self.features[-1].out_channels)
        if stride8:
            c3_channels = _expansion(self.features[self.c3_index], self.c3_index)[0].out_channels
            self.out_channels = (c3_channels, *self.out_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        if self.stride8:
            c3_block = self.features[self.c3_index]
            x = self.features[: self.c3_index](x)  # (N, 40w, S/8, S/8) Large
            c3 = c3_block.block[0](x)  # (N, 240, S/8, S/8): expansion of the C3 block
            maps.append(c3)
            # Stride 2, no residual connection: the block goes on from its tapped expansion, which runs once (see
            # MobileNetV2Backbone.forward: a convolution run twice on shared weights broke ExecuTorch INT8).
            x = c3_block.block[1:](c3)  # (N, 80w, S/16, S/16) Large
            x = self.features[self.c3_index + 1 : self.c4_index](x)  # (N, 112w, S/16, S/16)
        else:
            x = self.features[: self.c4_index](x)  # (N, 112w, S/16, S/16)
        c4_block = self.features[self.c4_index]
        c4 = c4_block.block[0](x)  # (N, 672, S/16, S/16): the C4 expansion
        # The C4 block has stride 2, so it has no residual connection: the rest of it is block[1:].
        x = c4_block.block[1:](c4)  # (N, 160w, S/32, S/32)
        c5 = self.features[self.c4_index + 1 :](x)  # (N, 960, S/32, S/32)
        return maps + [c4, c5]

    def imagenet_state_dict(self) -> dict[str, torch.Tensor]:
        """torchvision's IMAGENET1K_V1 weights for this backbone (downloads once into the torch hub cache).

        Raises:
            ValueError: for ``reduced_tail``: those weights were trained with the full tail.
        """
        if self.reduced_tail:
            raise ValueError(f"torchvision's ImageNet weights of {self.arch} have the full tail; build it with reduced_tail=False")
        from torchvision.models import MobileNet_V3_Large_Weights, MobileNet_V3_Small_Weights

        weights = MobileNet_V3_Large_Weights if self.arch == "mobilenet_v3_large" else MobileNet_V3_Small_Weights
        return weights.IMAGENET1K_V1.get_state_dict(progress=False)

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load a torchvision ``mobilenet_v3_large/small`` state dict (``features.*``; ``classifier.*`` is ignored).

        Raises:
            ValueError: naming ``source`` and listing missing, unexpected or mis-shaped keys.
        """
        tail = ", reduced tail" if self.reduced_tail else ""
        what = f"{source} is not a torchvision {self.arch} state dict for this width{tail}"
        self.load_state_dict(classifier_features(self.state_dict(), state_dict, what))


def build_backbone(config: ModelConfig) -> tuple[MobileNetV3Backbone, None]:
    """The ``mobilenet_v3_large`` / ``mobilenet_v3_small`` rows' backbone (:mod:`ssdlite.models.backbones`); SSDLite's
    extra layers go on top."""
    return MobileNetV3Backbone(config.arch, width_mult=config.width_mult, reduced_tail=config.reduced_tail,
                               stride8=config.fpn_stride8), None
