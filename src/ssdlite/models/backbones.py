"""The backbones: one row each, read by the builder, the configuration's defaults, the flags and the recipe.

This module is the table and nothing else: it imports no backbone and no PyTorch itself (the ``ssdlite.models``
package's ``__init__`` does), so the configuration (``ModelConfig.arch``'s choices, :meth:`ModelConfig.resolved`'s
defaults) reads it without building anything. A row
names the module that implements the backbone (``ssdlite.models.<module>``, imported by :func:`implementation` when
a model is built); that module defines ``build_backbone(config) -> (backbone, extras or None)``.

A row declares what the backbone gives, as timm's ``feature_info`` does: the channels (at width 1.0, default
settings) and the output stride of each map it returns, lowest stride first, and the channels of the stride-8 map
``fpn_stride8`` puts first (None: the backbone has none to add). The built module reads its channels off its
layers (they follow the width multiplier); ``tests/models/test_backbones.py`` builds every row and checks its
declared channels and strides against a real forward pass.

Adding a backbone: write ``models/<module>.py`` with its ``nn.Module`` (``out_channels``, ``forward(x) -> list of
maps``, ``load_torchvision_state_dict``, and ``imagenet_state_dict`` when the row has ImageNet weights) and
``build_backbone(config)``, add its row below; ``tests/models/test_backbones.py`` and the golden outputs
(``tests/models/test_golden_outputs.py``, one case per row) then cover it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

#: Inputs in [-1, 1]: what the TensorFlow MobileNet weights (and the shared MobileNetV2) expect.
SIGNED_UNIT = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
#: torchvision's ImageNet classifiers.
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
#: Caffe VGG's normalization: 0-255 inputs minus the ImageNet mean.
CAFFE = ((0.48235, 0.45882, 0.40784), (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0))


@dataclass(frozen=True)
class Defaults:
    """The detector settings a backbone brings, used where the configuration leaves a field unset (``None``)."""

    size: int  # square input side
    head: str  # "lite" (depthwise-separable, SSDLite) or "ssd" (3x3)
    aspect_ratios: tuple[float, ...] | tuple[tuple[float, ...], ...]  # one list for every map, or one per map
    reduce_lowest: bool  # three boxes on the first map (the TensorFlow reference)
    clip_boxes: str  # default-box clipping
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (mean, std); None: the weights' (below)
    scales: tuple[float, ...] | None = None  # explicit scales and centre steps, for its maps at `size` only
    steps: tuple[float, ...] | None = None

    def normalization_for(self, backbone_weights: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) for weights ``backbone_weights``: the backbone's own, else ImageNet's for torchvision's
        ``"imagenet"`` and [-1, 1] for the TensorFlow-converted files and random weights."""
        if self.normalization is not None:
            return self.normalization
        return IMAGENET if backbone_weights == "imagenet" else SIGNED_UNIT


#: SSDLite on a MobileNet (MobileNetV2 paper, section 6.2; the TensorFlow reference's default boxes).
SSDLITE = Defaults(size=320, head="lite", aspect_ratios=(2.0, 3.0), reduce_lowest=True, clip_boxes="none")
#: The classic SSD300 (SSD paper, section 3 and Fig. 2; torchvision's ``ssd300_vgg16``): its input size, explicit
#: scales and centre steps, four or six boxes per map, and Caffe VGG's normalization.
SSD300 = Defaults(
    size=300, head="ssd", aspect_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,)), reduce_lowest=False,
    clip_boxes="size", normalization=CAFFE, scales=(0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05), steps=(8, 16, 32, 64, 100, 300),
)


@dataclass(frozen=True)
class Backbone:
    """One backbone: its maps, its weights, its defaults."""

    name: str  # ModelConfig.arch, --arch
    title: str  # for messages: "MobileNetV2"
    module: str  # its module in ssdlite.models (build_backbone), imported by name when a model is built
    channels: tuple[int, ...]  # channels of each map it returns at width 1.0, lowest stride first
    strides: tuple[int, ...]  # output stride of each of those maps
    stride8_channels: int | None  # channels (width 1.0) of the stride-8 map fpn_stride8 puts first; None: none to add
    imagenet: str | None  # where `--backbone-weights imagenet` comes from; None: there are no ImageNet weights
    weights_layout: str  # what a `--backbone-weights FILE` must hold
    defaults: Defaults = SSDLITE
    widths: bool = True  # takes a width multiplier
    own_extras: bool = False  # brings its own extra layers (SSD300's) instead of SSDLite's separable ones
    aliases: tuple[str, ...] = ()  # names earlier versions wrote into model.config


BACKBONES: tuple[Backbone, ...] = (
    Backbone("mobilenet_v2", "MobileNetV2", "backbone", (576, 1280), (16, 32), 192,
             "torchvision's MobileNet_V2_Weights.IMAGENET1K_V1", "a torchvision mobilenet_v2 state dict (features.*)",
             aliases=("ssdlite_mobilenet_v2",)),
    Backbone("mobilenet_v3_large", "MobileNetV3-Large", "mobilenet_v3", (672, 960), (16, 32), 240,
             "torchvision's MobileNet_V3_Large_Weights.IMAGENET1K_V1 (full tail)",
             "a torchvision mobilenet_v3_large state dict (features.*)"),
    Backbone("mobilenet_v3_small", "MobileNetV3-Small", "mobilenet_v3", (288, 576), (16, 32), 96,
             "torchvision's MobileNet_V3_Small_Weights.IMAGENET1K_V1 (full tail)",
             "a torchvision mobilenet_v3_small state dict (features.*)"),
    Backbone("mobilenet_v1", "MobileNetV1", "mobilenet_v1", (512, 1024), (16, 32), 256, None,
             "a state dict of ssdlite's MobileNetV1 layout (features.0 = first conv, features.1..13 = separable blocks; "
             "e.g. converted from TF-slim's mobilenet_v1)"),
    Backbone("vgg16", "VGG16 (SSD300)", "vgg", (512, 1024), (8, 16), None,
             "torchvision's VGG16_Weights.IMAGENET1K_FEATURES (Caffe VGG16, ported from ssd.pytorch)",
             "a torchvision vgg16 state dict without batch norm (features.*)", defaults=SSD300, widths=False, own_extras=True),
)
DEFAULT = BACKBONES[0]


def names() -> tuple[str, ...]:
    """Every backbone's name: ``--arch``'s choices."""
    return tuple(b.name for b in BACKBONES)


def canonical(name: Any) -> Any:
    """``name``, or the backbone's name for an older spelling (``ssdlite_mobilenet_v2``); anything else as it is."""
    return next((b.name for b in BACKBONES if name in b.aliases), name)


def get(name: str) -> Backbone:
    """The row called ``name``; ``ValueError`` listing the rows for any other."""
    for row in BACKBONES:
        if name == row.name:
            return row
    raise ValueError(f"unknown architecture {name!r}; choose one of {names()}")


def default_text(field: str) -> str:
    """How the help states a default that depends on the backbone: the default backbone's value, then each other
    value with the backbones that use it (``"320; 300 for vgg16"``)."""

    def shown(value: Any) -> str:
        return {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else str(value)

    values: dict[str, list[str]] = {}
    for row in BACKBONES:
        values.setdefault(shown(getattr(row.defaults, field)), []).append(row.name)
    first, *others = values
    return "; ".join([first, *(f"{v} for {', '.join(values[v])}" for v in others)])


def implementation(name: str) -> ModuleType:
    """The module that builds backbone ``name`` (imported now: it imports PyTorch)."""
    return importlib.import_module(f"ssdlite.models.{get(name).module}")
