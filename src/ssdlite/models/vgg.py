"""The classic SSD300 feature extractor: VGG16 with conv4_3 and fc7 taps, and its extra layers.

SSD paper (Liu et al., 2016), section 3 and Fig. 2: "We use the VGG16 network as a base network
... Similar to DeepLab-LargeFOV, we convert fc6 and fc7 to convolutional layers ..., change pool5
from 2x2 - s2 to 3x3 - s1, and use the a trous algorithm to fill the 'holes'." The first
prediction layer is conv4_3 (38x38 at input 300), whose activations have "a different feature
scale compared to the other layers", so it is L2-normalized per location and rescaled by a
learned per-channel factor initialized to 20 (ParseNet, Liu et al., 2015). The second is fc7
(19x19); then conv8_2 .. conv11_2 (10, 5, 3, 1). This is the design of ssd.pytorch and of
torchvision's ``ssd300_vgg16``.

Layout: :class:`VGG16Backbone` keeps torchvision's VGG16 ``features`` Sequential with its indices
(so the ``features.*`` tensors of a torchvision ``vgg16`` state dict load as they are), minus the
last max-pool, and adds ``l2norm`` and ``fc`` (pool5 + fc6 + fc7). torchvision's SSD300 puts conv5
and fc6/fc7 into its first "extra" block; here they belong to the backbone, whose last map is fc7.
:func:`ssdlite.models.convert.convert_ssd300_backbone` maps torchvision's keys to these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from ssdlite.models.initialization import init_convs
from ssdlite.models.state_dict import classifier_features

if TYPE_CHECKING:
    from ssdlite.models.config import ModelConfig

#: SSD300's extra layers conv8_2 .. conv11_2 (SSD paper, Fig. 2): ``(1x1 depth, 3x3 depth, stride, padding)``.
#: Maps at input 300: 19 -> 10 -> 5 -> 3 -> 1.
SSD300_EXTRAS = ((256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 1, 0), (128, 256, 1, 0))

#: The layer configuration of VGG16 ("D" in the VGG paper, Table 1) as torchvision builds it.
VGG16_CFG = cfgs["D"]


def _maxpool_positions(features: nn.Sequential) -> list[int]:
    return [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]


class L2Norm(nn.Module):
    """Per-location L2 normalization over channels, rescaled by a learned per-channel factor.

    SSD paper, section 3 (ParseNet, Liu et al., 2015): applied to conv4_3, scale initialized to 20.
    Shapes: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight.view(1, -1, 1, 1) * F.normalize(x, dim=1)  # (N, C, H, W), unit norm per location, rescaled


class VGG16Backbone(nn.Module):
    """VGG16 up to fc7, returning the L2-normalized conv4_3 map and the fc7 map (SSD paper, Fig. 2).

    ``features`` is torchvision's VGG16 ``features`` without its last max-pool (pool5), so indices
    and ``features.*`` state-dict keys are torchvision's; pool3 uses ``ceil_mode=True`` as in the
    SSD reference, so 75 -> 38 at input 300. ``fc`` is pool5 (3x3, stride 1, padding 1), fc6 as a
    3x3 convolution with dilation 6 (1024 channels) and fc7 as a 1x1 convolution (1024 channels),
    each followed by ReLU.

    Attributes:
        out_channels: ``(512, 1024)``, read off conv4_3 and fc7.

    Shapes:
        input ``(N, 3, 300, 300)`` -> ``[(N, 512, 38, 38), (N, 1024, 19, 19)]``.
    """

    def __init__(self) -> None:
        super().__init__()
        # torchvision's ``vgg16().features`` with the same initialization, built without the
        # 120M-parameter classifier that would be thrown away.
        features = make_layers(VGG16_CFG)
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        _, _, pool3, pool4, pool5 = _maxpool_positions(features)
        features[pool3].ceil_mode = True  # 75 -> 38 at input 300, as in the SSD reference
        self.features = nn.Sequential(*features[:pool5])  # indices 0 .. pool5 - 1 keep torchvision's keys
        # pool4's index: features[:conv4_3_end] ends with conv4_3 + ReLU, the first prediction map.
        self.conv4_3_end = pool4
        conv4_3 = self.features[pool4 - 2]
        conv5_3 = self.features[pool5 - 2]
        self.l2norm = L2Norm(conv4_3.out_channels, 20.0)
        self.fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5: 3x3 s1 instead of 2x2 s2
            nn.Conv2d(conv5_3.out_channels, 1024, kernel_size=3, padding=6, dilation=6),  # fc6, a trous
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=1),  # fc7
            nn.ReLU(inplace=True),
        )
        init_convs(self.fc, "xavier")  # as torchvision initializes SSD300's added layers
        self.out_channels: tuple[int, ...] = (conv4_3.out_channels, self.fc[3].out_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.features[: self.conv4_3_end](x)  # (N, 512, 38, 38): conv4_3 after ReLU
        conv4_3 = self.l2norm(x)  # (N, 512, 38, 38)
        x = self.features[self.conv4_3_end :](x)  # (N, 512, 19, 19): pool4, conv5_1 .. conv5_3
        fc7 = self.fc(x)  # (N, 1024, 19, 19)
        return [conv4_3, fc7]

    def imagenet_state_dict(self) -> dict[str, torch.Tensor]:
        """The ImageNet VGG16 features torchvision's ``ssd300_vgg16`` starts from (downloads once).

        ``VGG16_Weights.IMAGENET1K_FEATURES``, ported from ssd.pytorch: Caffe VGG16, which expects
        0-255 inputs minus the ImageNet mean (the vgg16 defaults of :func:`ssdlite.models.ssdlite.create_model`);
        its ``classifier`` tensors are NaN and ignored.
        """
        from torchvision.models import VGG16_Weights

        return VGG16_Weights.IMAGENET1K_FEATURES.get_state_dict(progress=False)

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load a torchvision ``vgg16`` state dict (``features.*``; ``classifier.*`` is ignored).

        fc6, fc7 and the L2Norm scale keep their initialization, as in torchvision's
        ``ssd300_vgg16`` (the SSD paper subsamples fc6/fc7 from the classifier instead).

        Raises:
            ValueError: naming ``source`` and listing missing, unexpected or mis-shaped keys.
        """
        own = {f"features.{k}": v for k, v in self.features.state_dict().items()}
        features = classifier_features(own, state_dict, f"{source} is not a torchvision vgg16 state dict (without batch norm)")
        self.features.load_state_dict({k.removeprefix("features."): v for k, v in features.items()})


class VGGExtras(nn.Module):
    """SSD300's extra feature layers conv8_2 .. conv11_2 (SSD paper, Fig. 2), on top of fc7.

    Each block is a 1x1 convolution then a 3x3 convolution (stride 2 and padding 1 for the first
    two, no padding for the last two), each followed by ReLU; Xavier initialization as torchvision.

    Attributes:
        out_channels: ``(512, 256, 256, 256)``, read off the layers.

    Shapes:
        ``(N, C_in, 19, 19)`` -> ``[(N, 512, 10, 10), (N, 256, 5, 5), (N, 256, 3, 3), (N, 256, 1, 1)]``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        blocks = []
        for mid, out, stride, padding in SSD300_EXTRAS:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, mid, kernel_size=1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(mid, out, kernel_size=3, stride=stride, padding=padding),
                    nn.ReLU(inplace=True),
                )
            )
            in_channels = out
        self.blocks = nn.ModuleList(blocks)
        init_convs(self.blocks, "xavier")
        self.out_channels: tuple[int, ...] = tuple(block[2].out_channels for block in self.blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for block in self.blocks:
            x = block(x)  # (N, 512, 10, 10), (N, 256, 5, 5), (N, 256, 3, 3), (N, 256, 1, 1) in turn
            maps.append(x)
        return maps


def build_backbone(config: ModelConfig) -> tuple[VGG16Backbone, VGGExtras]:
    """The ``vgg16`` row's backbone (:mod:`ssdlite.models.backbones`) with SSD300's own extra layers on top."""
    backbone = VGG16Backbone()
    return backbone, VGGExtras(backbone.out_channels[-1])
