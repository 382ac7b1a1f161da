"""Building a detector from its configuration: the backbone (its row's module), extras, neck, heads, default boxes.

:func:`build_model` is the one place where a :class:`~ssdlite.models.config.ModelConfig` becomes a
:class:`~ssdlite.models.ssdlite.SSDLite`; :func:`create_model` is its keyword form. Channels are
read off the built modules and feature-map sizes off one dry run, so neither is ever typed by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ssdlite.errors import UserError
from ssdlite.models.anchors import DefaultBoxes
from ssdlite.models import backbones
from ssdlite.models.backbone import TF_BATCH_NORM
from ssdlite.models.box_coder import BoxCoder
from ssdlite.models.config import ModelConfig
from ssdlite.models.extras import EXTRA_DEPTHS, ExtraLayers
from ssdlite.models.heads import SSDLiteHead
from ssdlite.models.initialization import init_convs
from ssdlite.models.modes import evaluating
from ssdlite.models.postprocess import PostProcess, PostprocessSettings
from ssdlite.models.ssdlite import SSDLite, SSDLiteCore
from ssdlite.models.transform import Preprocess
from ssdlite.models.weights import read_state_dict


def _build_backbone(config: ModelConfig) -> tuple[nn.Module, nn.Module | None]:
    """The backbone of ``config.arch`` (its row's module builds it) and, where SSDLite's separable extra layers do not
    apply, its own extras; what the row says it lacks is refused first."""
    row = backbones.get(config.arch)
    if config.width_mult != 1.0 and not row.widths:
        raise ValueError(f"{row.name} has no width multiplier")
    if config.fpn_stride8 and row.stride8_channels is None:
        raise ValueError(f"{row.name} has no stride-8 map to add: its first map already has stride {row.strides[0]}")
    return backbones.implementation(row.name).build_backbone(config)


def _load_backbone_weights(backbone: nn.Module, config: ModelConfig) -> None:
    """Load ``"imagenet"`` (where the row says they come from, downloaded) or a state-dict file into ``backbone``."""
    row, weights = backbones.get(config.arch), config.backbone_weights
    if weights == "imagenet":
        if row.imagenet is None:
            raise UserError(f"there are no ImageNet weights for {row.name} to download. Pass a path to {row.weights_layout} "
                            "with --backbone-weights FILE, or train without backbone weights")
        if config.width_mult != 1.0:
            raise UserError(f"{row.imagenet} exist for width 1.0 only, not {config.width_mult}")
        try:
            state_dict, source = backbone.imagenet_state_dict(), row.imagenet
        except ValueError as err:
            raise UserError(str(err)) from err
        except OSError as err:  # urllib's URLError: offline, or the download was cut
            raise UserError(
                f"--backbone-weights imagenet: could not download {row.imagenet} ({err}); offline, "
                f"pass {row.weights_layout} with --backbone-weights FILE, or --backbone-weights none to train from scratch"
            ) from err
    else:
        state_dict, source = read_state_dict(weights, "backbone weights"), f"backbone weights {weights}"
    try:
        backbone.load_torchvision_state_dict(state_dict, source)
    except ValueError as err:
        raise UserError(str(err)) from err


def _feature_sizes(backbone: nn.Module, extras: nn.Module, size: int) -> list[tuple[int, int]]:
    """Feature-map sizes from one dry run, so they are never typed by hand."""
    try:
        with torch.no_grad(), evaluating(backbone, extras):
            maps = backbone(torch.zeros(1, 3, size, size))
            num_backbone = len(maps)
            maps = maps + extras(maps[-1])
    except RuntimeError as err:  # e.g. SSD300's unpadded 3x3 extras on a map smaller than 3x3
        raise ValueError(f"input size {size} is too small for this architecture's feature maps ({err})") from err
    sizes = [tuple(m.shape[-2:]) for m in maps]
    # Rule: every backbone map at least 2x2 (so 64 is the smallest MobileNet input); extra maps may reach 1x1.
    if min(min(s) for s in sizes[:num_backbone]) < 2 or min(min(s) for s in sizes) < 1:
        raise ValueError(f"input size {size} is too small: feature maps {sizes} (every backbone map needs at least 2x2)")
    return sizes


def default_boxes_for(config: ModelConfig, feature_sizes: list[tuple[int, int]]) -> DefaultBoxes:
    """The default boxes ``config`` describes on maps of ``feature_sizes`` (``config`` resolved)."""
    return DefaultBoxes(
        feature_sizes,
        min_scale=config.min_scale,
        max_scale=config.max_scale,
        aspect_ratios=config.aspect_ratios,
        reduce_lowest=config.reduce_lowest,
        lowest_scale=config.lowest_scale,
        clip=config.clip_boxes,
        scales=config.scales,
        steps=config.steps,
        image_size=config.size if config.steps is not None else None,
    )


def build_model(config: ModelConfig | Mapping[str, Any], *, load_backbone: bool = True) -> SSDLite:
    """The detector ``config`` describes, with random weights apart from ``config.backbone_weights``.

    Args:
        config: a :class:`ModelConfig`, or its dict form (``model.config.to_dict()``, also what
            earlier versions stored); ``num_classes`` must be set.
        load_backbone: load ``config.backbone_weights`` when set (a resumed run loads all weights instead).

    Returns:
        The model in train mode; ``model.config`` is ``config`` resolved, without ``backbone_weights``
        (the weights are the model's own from now on; the normalization they implied is resolved).

    Raises:
        ValueError: a setting that cannot be built (unknown name, input too small, bad default boxes).
        UserError: backbone weights that cannot be read or do not fit.
    """
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(dict(config))
    if config.num_classes is None:
        raise ValueError("num_classes is not set: the number of classes including the background")
    config = config.resolved()
    # Construction order fixes the random initialization of a seed: backbone, extras, neck, head, then
    # the re-initialization of extras and head (tests/models/test_golden_outputs.py holds it).
    backbone, extras = _build_backbone(config)
    if config.backbone_weights is not None and load_backbone:
        _load_backbone_weights(backbone, config)
    own_extras = extras is None
    if own_extras:
        extras = ExtraLayers(backbone.out_channels[-1], EXTRA_DEPTHS, TF_BATCH_NORM)
    in_channels = list(backbone.out_channels) + list(extras.out_channels)
    neck = None
    if config.neck in ("fpn", "residual_fpn"):
        from ssdlite.models.fpn import FPNNeck

        neck = FPNNeck(in_channels, norm_layer=TF_BATCH_NORM, residual=config.neck == "residual_fpn")
        in_channels = list(neck.out_channels)
    default_boxes = default_boxes_for(config, _feature_sizes(backbone, extras, config.size))
    head = SSDLiteHead(in_channels, default_boxes.boxes_per_location, config.num_classes, TF_BATCH_NORM, config.head)
    if own_extras:
        init_convs(extras, "normal")
    head.reset_parameters()
    box_coder = BoxCoder(config.variances)
    return SSDLite(
        SSDLiteCore(backbone, extras, head, neck),
        default_boxes,
        Preprocess(config.size, config.image_mean, config.image_std),
        box_coder,
        PostProcess(PostprocessSettings.of(config)),
        config.num_classes,
        config.iou_threshold,
        config.neg_pos_ratio,
        config.min_negatives,
        config.replace(backbone_weights=None),
    )


def create_model(
    num_classes: int,
    arch: str = backbones.DEFAULT.name,
    size: int | None = None,
    width_mult: float = 1.0,
    backbone_weights: str | None = None,
    **settings: Any,
) -> SSDLite:
    """A single-shot detector: backbone by name, SSDLite or SSD heads, optional FPN neck.

    The keyword form of :func:`build_model`: every keyword is a field of :class:`ModelConfig` (its
    docstring and ``ssdlite train --help`` list them with their defaults). For example
    ``create_model(21)`` is the MobileNetV2 paper's SSDLite for VOC; ``create_model(91,
    "mobilenet_v3_large", reduced_tail=True)`` the MobileNetV3 paper's; ``create_model(21, "vgg16")``
    the SSD paper's SSD300; ``neck="fpn", fpn_stride8=True`` adds the top-down neck with a stride-8 level.

    ``backbone_weights``: ``None`` (random), a path to a torchvision state dict of the backbone's
    classifier (e.g. ``../shared/weights/mobilenet_v2_imagenet.pth``), or ``"imagenet"`` for
    torchvision's own weights (downloads; MobileNets then use the ImageNet mean and std). vgg16 keeps
    SSD300's Caffe normalization, which torchvision's ``VGG16_Weights.IMAGENET1K_FEATURES`` (its
    "imagenet") expects; a regular ``IMAGENET1K_V1`` file expects the ImageNet mean and std: pass
    ``image_mean``/``image_std``.
    """
    config = ModelConfig(
        num_classes=num_classes, arch=arch, size=size, width_mult=width_mult, backbone_weights=backbone_weights
    ).replace(**settings)
    return build_model(config)


def ssdlite_mobilenet_v2(
    num_classes: int, size: int = 320, width_mult: float = 1.0, backbone_weights: str | None = None, **settings: Any
) -> SSDLite:
    """SSDLite with a MobileNetV2 backbone (MobileNetV2 paper, section 6.2); see :func:`create_model`."""
    return create_model(num_classes, "mobilenet_v2", size, width_mult, backbone_weights, **settings)
