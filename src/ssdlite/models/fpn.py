"""FPN-SSDLite neck: a light top-down pathway over the SSDLite prediction maps.

FPN paper (Lin et al., 2017, "Feature Pyramid Networks for Object Detection"), section 3: each
bottom-up map gets a lateral 1x1 convolution to a common width ``d`` (linear: "there are no
non-linearities in these extra layers"); starting from the coarsest map, the merged map is
upsampled by nearest neighbour and added to the next finer lateral; "finally, we append a 3x3
convolution on each merged map to generate the final feature map, which is to reduce the aliasing
effect of upsampling". All outputs have ``d`` channels.

What is ours (SSDLite-style, as TensorFlow's FPNLite detectors do):

* every 3x3 smoothing convolution is depthwise-separable, 3x3 depthwise + BN + ReLU6 then
  1x1 + BN + ReLU6, like SSDLite's extra layers and heads (MobileNetV2 paper, section 6.2);
* the pyramid is SSDLite's own prediction maps, all levels, largest first (backbone taps, then the
  extra layers), so the coarsest level is the 1x1 extra map and ``fpn_stride8`` adds a stride-8
  backbone tap in front; SSD's extra maps halve with ceil division (5 -> 3 -> 2 -> 1), so the
  upsampling goes to the finer map's size instead of a fixed 2x (:func:`nearest_upsample`: PyTorch's
  ``nearest`` rule as a gather, which every runtime computes alike);
* ``width = 128`` (the paper uses 256): the depth of TensorFlow's "SSD MobileNet V2 FPNLite"
  detectors (``additional_layer_depth: 128`` with ``use_depthwise``), and cheap here.

Cost, measured with :mod:`ssdlite.models.summary`'s FLOP counter at 320x320 with 91 classes on MobileNetV2
SSDLite (4.50M parameters, 0.804B MAdds without a neck):

* the neck itself: 0.494M parameters and 57.4M MAdds (7.1% of the plain detector). 95% of those
  MAdds are the 20x20 and 10x10 levels, whose laterals from 576 and 1280 channels any top-down path
  needs; the four extra-layer levels add 2.8M MAdds (and 0.22M parameters), so every level gets the
  top-down path and the 1x1 map's context reaches the 20x20 one;
* every head now reads 128 channels instead of 576 / 1280 / 512 / 256 / 256 / 128, so the heads
  shrink from 1.62M parameters and 155M MAdds to 0.42M and 26M: the whole FPN detector has 3.80M
  parameters and 0.733B MAdds, *less* than the plain one (-16% and -9%). Width 256 (the paper's)
  would give a 1.18M-parameter, 132M-MAdd neck and a 4.91M / 0.834B detector; width 64 0.22M / 26M
  and 3.32M / 0.689B;
* ``fpn_stride8`` (7 levels, MobileNetV2's 192-channel 40x40 stride-8 expansion first) makes the neck
  0.537M parameters and 125M MAdds, the detector 3.92M and 0.887B, with 8034 default boxes (not 2034).

Initialization as SSDLite's extras and heads (torchvision): Normal(0, 0.03) convolutions, zero biases.

``residual=True`` (``neck="residual_fpn"``) keeps the pretrained maps and adds the top-down path to them:
each level's merged-and-smoothed map is projected back to the level's own channels by a 1x1 convolution
+ BN whose scale starts at 0.01, and added to the input map, so the heads read the backbone's 576 / 1280 /
... channels as in the plain detector and, at initialization, the detector is nearly the plain one (plus the
stride-8 level). Why: on BCCD from the ImageNet backbone, the plain FPN (128-channel outputs from random
1x1 laterals replacing the pretrained maps) lost to the plain detector under the same budget (VOC07 0.742 vs
0.867, platelets 0.398 vs 0.805, benchmarks/RESULTS.md): the heads had to learn from features that start
random. Residual branches that start at (or near) zero are the standard remedy (Goyal et al. 2017, zero-gamma
in the last BN of each residual block).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

from ssdlite.models.backbone import TF_BATCH_NORM
from ssdlite.models.initialization import init_convs

#: Channels of every output level (TF FPNLite's ``additional_layer_depth``).
FPN_WIDTH = 128
#: ``residual_fpn``: the initial scale of each level's top-down branch (its last BatchNorm's weight).
RESIDUAL_INIT = 0.01


@lru_cache(maxsize=256)
def nearest_indices(src: int, dst: int) -> tuple[int, ...]:
    """The input index each of ``dst`` outputs reads when nearest-upsampling ``src`` values, by PyTorch's
    ``F.interpolate(mode="nearest")`` rule: ``floor(i * scale)`` with ``scale = src / dst``, in float32 as its
    kernels compute it (``nearest_idx`` in ATen's ``UpSample.h``), capped at ``src - 1``.

    3 -> 5 gives ``(0, 0, 1, 1, 2)``. Runtimes that convert the resize op use other rules for ratios that are not
    whole (LiteRT's ``RESIZE_NEAREST_NEIGHBOR`` from ``litert_torch`` samples pixel centres: ``(0, 0, 1, 2, 2)``).
    """
    scale = np.float32(src) / np.float32(dst)
    source = np.floor(np.arange(dst, dtype=np.float32) * scale).astype(np.int64)
    return tuple(int(i) for i in np.minimum(source, src - 1))


def nearest_upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="nearest")``, bit for bit, as one ``index_select`` per resized axis.

    A gather of fixed indices has no rounding rule for a converter to change: ONNX ``Gather``, LiteRT ``GATHER``,
    OpenVINO ``Gather`` and ExecuTorch's ``index_select`` all read the rows PyTorch reads. The indices depend only on
    the (static) map sizes, so an export holds them as constants.

    Shapes:
        ``(N, C, h, w)`` -> ``(N, C, H, W)`` for ``size = (H, W)`` (the rule holds for shrinking too).
    """
    for axis, dst in zip((2, 3), size):
        src = x.shape[axis]
        if src != dst:
            index = torch.tensor(nearest_indices(src, dst), dtype=torch.long, device=x.device)  # (dst,)
            x = x.index_select(axis, index)  # (N, C, dst, w) then (N, C, H, dst)
    return x


def separable_smoothing(width: int, norm_layer: Callable[..., nn.Module]) -> nn.Sequential:
    """FPN's 3x3 smoothing conv, depthwise-separable: 3x3 depthwise + BN + ReLU6, 1x1 + BN + ReLU6."""
    return nn.Sequential(
        Conv2dNormActivation(width, width, 3, groups=width, norm_layer=norm_layer, activation_layer=nn.ReLU6),
        Conv2dNormActivation(width, width, 1, norm_layer=norm_layer, activation_layer=nn.ReLU6),
    )


class FPNNeck(nn.Module):
    """Top-down pathway with lateral connections over all prediction maps (FPN paper, section 3).

    Args:
        in_channels: channels of the input maps, largest (finest) first.
        width: channels of every output map (the paper's ``d``).
        norm_layer: normalization layer factory of the smoothing convolutions.
        residual: add the top-down path to the input maps through zero-initialized projections instead
            of replacing them (``out_channels == in_channels``).

    Attributes:
        out_channels: ``(width,) * len(in_channels)`` (``residual``: ``in_channels``), one per level.

    Shapes:
        ``[(N, C_l, H_l, W_l)]`` for ``l = 0..L-1`` (finest first, ``H_{l+1} <= H_l``) ->
        ``[(N, width, H_l, W_l)]`` (``residual``: ``[(N, C_l, H_l, W_l)]``): the sizes are unchanged.
    """

    def __init__(self, in_channels: Sequence[int], width: int = FPN_WIDTH, norm_layer=TF_BATCH_NORM, residual: bool = False) -> None:
        super().__init__()
        if len(in_channels) < 2:
            raise ValueError(f"a top-down pathway needs at least 2 levels, got {len(in_channels)}")
        # Laterals are linear 1x1 convs with a bias, as in the paper (and TF's ``fpn_top_down_feature_maps``).
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.smooth = nn.ModuleList(separable_smoothing(width, norm_layer) for _ in in_channels)
        # residual: back to each level's channels, added to the input map (see the module docstring).
        self.project = (
            nn.ModuleList(Conv2dNormActivation(width, c, 1, norm_layer=norm_layer, activation_layer=None) for c in in_channels)
            if residual else None
        )
        self.out_channels: tuple[int, ...] = tuple(in_channels) if residual else (width,) * len(in_channels)
        # Like SSDLite's extras and heads; SSDLite re-initializes those two but not a neck, so it happens here.
        init_convs(self, "normal")
        for block in self.project or ():
            # The BN scale: the residual branch starts near zero. Not at zero: then nothing upstream of it (the
            # laterals and smoothing) would get a gradient at the first step, which the registration and
            # gradient-flow checks (tests, `ssdlite doctor`) rightly report as layers that do not learn.
            nn.init.constant_(block[1].weight, RESIDUAL_INIT)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(maps) != len(self.lateral):
            raise ValueError(f"the FPN neck was built for {len(self.lateral)} maps, got {len(maps)}")
        top = len(maps) - 1
        merged = self.lateral[top](maps[top])  # (N, width, H_L, W_L): the coarsest level starts the path
        outputs = [self.smooth[top](merged)]  # [(N, width, H_L, W_L)]
        for level in range(top - 1, -1, -1):
            lateral = self.lateral[level](maps[level])  # (N, width, H_l, W_l)
            upsampled = nearest_upsample(merged, lateral.shape[-2:])  # (N, width, H_l, W_l)
            merged = lateral + upsampled  # (N, width, H_l, W_l)
            outputs.append(self.smooth[level](merged))  # (N, width, H_l, W_l)
        outputs = outputs[::-1]  # finest first, as the head and the default boxes expect
        if self.project is not None:
            outputs = [m + p(o) for m, p, o in zip(maps, self.project, outputs)]  # (N, C_l, H_l, W_l)
        return outputs
