"""SSDLite prediction heads.

MobileNetV2 paper, section 6.2: "replace all the regular convolutions with separable
convolutions (depthwise followed by 1x1 projection) in SSD prediction layers". Per feature map a
3x3 depthwise conv + BN + ReLU6, then a 1x1 conv to ``boxes_per_location * values``, once for
class logits and once for box deltas.

SSD's own heads (SSD paper, section 2.1: "a 3x3xp small kernel that produces either a score for a
category, or a shape offset") are one regular 3x3 convolution per map: ``kind="ssd"``, the head of
the classic SSD300-VGG16.

Anchor order (used everywhere: default boxes, targets, export): level by level from the largest
map; within a level row-major over ``(y, x)``; within a location the level's box specs in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

from ssdlite.models.initialization import init_convs


HEAD_KINDS = ("lite", "ssd")


def separable_predictor(in_channels: int, out_channels: int, norm_layer: Callable[..., nn.Module]) -> nn.Sequential:
    """3x3 depthwise + BN + ReLU6, then a 1x1 conv with bias (the prediction)."""
    return nn.Sequential(
        Conv2dNormActivation(in_channels, in_channels, 3, groups=in_channels, norm_layer=norm_layer, activation_layer=nn.ReLU6),
        nn.Conv2d(in_channels, out_channels, 1),
    )


def predictor(kind: str, in_channels: int, out_channels: int, norm_layer: Callable[..., nn.Module]) -> nn.Module:
    """A ``"lite"`` (depthwise-separable) or ``"ssd"`` (regular 3x3) predictor."""
    if kind == "lite":
        return separable_predictor(in_channels, out_channels, norm_layer)
    if kind == "ssd":
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)
    raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {kind!r}")


class PredictionHead(nn.Module):
    """One set of per-level predictors producing ``values`` numbers per default box.

    Shapes: list of ``(N, C_l, H_l, W_l)`` -> ``(N, A, values)`` with ``A = sum_l H_l * W_l * boxes_l``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        boxes_per_location: Sequence[int],
        values: int,
        norm_layer: Callable[..., nn.Module],
        kind: str,
    ) -> None:
        super().__init__()
        self.values = values
        self.predictors = nn.ModuleList(
            predictor(kind, c, b * values, norm_layer) for c, b in zip(in_channels, boxes_per_location)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        outputs = []
        for feature, predictor in zip(features, self.predictors):
            y = predictor(feature)  # (N, B*V, H, W)
            n, _, h, w = y.shape
            y = y.view(n, -1, self.values, h, w)  # (N, B, V, H, W)
            y = y.permute(0, 3, 4, 1, 2).reshape(n, -1, self.values)  # (N, H*W*B, V)
            outputs.append(y)
        return torch.cat(outputs, dim=1)  # (N, A, V)


class SSDLiteHead(nn.Module):
    """Classification and box-regression heads, ``kind`` ``"lite"`` (SSDLite) or ``"ssd"`` (3x3 convolutions).

    Shapes: list of feature maps -> ``cls_logits (N, A, K)``, ``bbox_deltas (N, A, 4)``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        boxes_per_location: Sequence[int],
        num_classes: int,
        norm_layer: Callable[..., nn.Module],
        kind: str,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.classification = PredictionHead(in_channels, boxes_per_location, num_classes, norm_layer, kind)
        self.regression = PredictionHead(in_channels, boxes_per_location, 4, norm_layer, kind)

    def reset_parameters(self) -> None:
        """torchvision's initialization: Normal(0, 0.03) for SSDLite heads, Xavier-uniform for SSD's; zero biases."""
        init_convs(self, "normal" if self.kind == "lite" else "xavier")

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classification(features), self.regression(features)
