"""SSDLite: MobileNetV2 + extra layers + separable heads, as in the MobileNetV2 paper, section 6.2.

The model follows torchvision's detection contract: in train mode ``model(images, targets)``
returns the loss dict; in eval mode ``model(images)`` returns one ``{"boxes", "scores",
"labels"}`` dict per image, boxes as xyxy in that image's own pixels. Three explicit stages:
``preprocess`` (list of images -> normalized ``(N, 3, S, S)``), ``core`` (tensor in, tensors out:
the part that is exported) and ``postprocess``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from ssdlite.models.anchors import DEFAULT_ASPECT_RATIOS, DefaultBoxes
from ssdlite.models.backbone import TF_BATCH_NORM, MobileNetV2Backbone
from ssdlite.models.box_coder import BoxCoder
from ssdlite.models.extras import EXTRA_DEPTHS, ExtraLayers
from ssdlite.models.heads import SSDLiteHead
from ssdlite.models.loss import multibox_loss
from ssdlite.models.matcher import match
from ssdlite.models.postprocess import PostProcess
from ssdlite.models.transform import SIGNED_UNIT, Preprocess


class SSDLiteCore(nn.Module):
    """The network: ``(N, 3, S, S)`` -> ``cls_logits (N, A, K)``, ``bbox_deltas (N, A, 4)``.

    ``neck`` (optional) maps the list of feature maps to a list of the same sizes, e.g. the FPN
    top-down pathway; it declares its ``out_channels``.
    """

    def __init__(self, backbone: nn.Module, extras: nn.Module, head: SSDLiteHead, neck: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.extras = extras
        self.neck = neck
        self.head = head

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.backbone(x)  # MobileNetV2: [(N, 576, S/16, S/16), (N, 1280, S/32, S/32)]
        maps = maps + self.extras(maps[-1])  # + 4 extra maps, halving each time
        return maps if self.neck is None else self.neck(maps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.features(x))


class SSDLite(nn.Module):
    """A single-shot detector with SSDLite heads.

    Args:
        backbone: module returning a list of maps and declaring ``out_channels`` and ``strides``.
        num_classes: number of classes including the background (class 0).
        size: square input size ``S``.
        extra_depths: output depths of the SSDLite extra layers, built on the backbone's last map
            when ``extras`` is not given.
        extras: the extra layers (a module mapping the last backbone map to a list of maps and
            declaring ``out_channels``), e.g. SSD300's regular convolutions.
        neck: optional module over all maps (see :class:`SSDLiteCore`), built by
            ``neck(in_channels)`` from the maps' channels.
        head_kind: ``"lite"`` (depthwise-separable, SSDLite) or ``"ssd"`` (regular 3x3).
        image_mean, image_std: normalization applied after scaling pixels to [0, 1].
        anchor_kwargs: passed to :class:`DefaultBoxes` (scales, aspect ratios, ``reduce_lowest``, ``clip``).
        variances, iou_threshold, neg_pos_ratio, min_negatives: box coding, matching and loss settings.
        score_threshold, nms_threshold, topk_candidates, detections_per_image: postprocess settings.
        config: the builder arguments, kept as ``model.config`` so the model can be rebuilt.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        size: int = 320,
        extra_depths: Sequence[int] = EXTRA_DEPTHS,
        extras: nn.Module | None = None,
        neck: Callable[[list[int]], nn.Module] | None = None,
        head_kind: str = "lite",
        image_mean: Sequence[float] = SIGNED_UNIT[0],
        image_std: Sequence[float] = SIGNED_UNIT[1],
        anchor_kwargs: dict[str, Any] | None = None,
        variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
        iou_threshold: float = 0.5,
        neg_pos_ratio: float = 3.0,
        min_negatives: int = 3,
        score_threshold: float = 0.01,
        nms_threshold: float = 0.45,
        topk_candidates: int = 200,
        detections_per_image: int = 200,
        norm_layer=TF_BATCH_NORM,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.size = size
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.min_negatives = min_negatives
        self.config = dict(config or {})

        own_extras = extras is None
        if own_extras:
            extras = ExtraLayers(backbone.out_channels[-1], extra_depths, norm_layer)
        # Channels come from what the modules declare: never typed twice.
        in_channels = list(backbone.out_channels) + list(extras.out_channels)
        neck_module = None
        if neck is not None:
            neck_module = neck(in_channels)
            in_channels = list(neck_module.out_channels)
        feature_sizes = self._feature_sizes(backbone, extras, size)
        anchor_kwargs = dict(anchor_kwargs or {})
        if anchor_kwargs.get("steps") is not None:
            anchor_kwargs.setdefault("image_size", size)
        self.default_boxes = DefaultBoxes(feature_sizes, **anchor_kwargs)
        head = SSDLiteHead(in_channels, self.default_boxes.boxes_per_location, num_classes, norm_layer, head_kind)
        self.preprocess = Preprocess(size, image_mean, image_std)
        self.core = SSDLiteCore(backbone, extras, head, neck_module)
        self.box_coder = BoxCoder(variances)
        self.postprocess_detections = PostProcess(
            self.box_coder, score_threshold, nms_threshold, topk_candidates, detections_per_image
        )
        if own_extras:
            _init_weights(extras)
        head.reset_parameters()
        self._has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules())

    @staticmethod
    def _feature_sizes(backbone: nn.Module, extras: nn.Module, size: int) -> list[tuple[int, int]]:
        """Feature-map sizes from one dry run, so they are never typed by hand."""
        was_training = backbone.training
        backbone.eval()
        extras.eval()
        try:
            with torch.no_grad():
                maps = backbone(torch.zeros(1, 3, size, size))
                num_backbone = len(maps)
                maps = maps + extras(maps[-1])
        except RuntimeError as err:  # e.g. SSD300's unpadded 3x3 extras on a map smaller than 3x3
            raise ValueError(f"input size {size} is too small for this architecture's feature maps ({err})") from err
        finally:
            backbone.train(was_training)
            extras.train(was_training)
        sizes = [tuple(m.shape[-2:]) for m in maps]
        # Rule: every backbone map at least 2x2 (so 64 is the smallest MobileNet input); extra maps may reach 1x1.
        if min(min(s) for s in sizes[:num_backbone]) < 2 or min(min(s) for s in sizes) < 1:
            raise ValueError(f"input size {size} is too small: feature maps {sizes} (every backbone map needs at least 2x2)")
        return sizes

    @property
    def feature_sizes(self) -> list[tuple[int, int]]:
        return self.default_boxes.feature_sizes

    def postprocess(
        self, cls_logits: torch.Tensor, bbox_deltas: torch.Tensor, image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        return self.postprocess_detections(cls_logits, bbox_deltas, self.default_boxes.boxes, image_sizes)

    def forward(self, images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("in train mode the model needs targets: model(images, targets)")
            if len(targets) != len(images):
                raise ValueError(f"got {len(images)} images but {len(targets)} targets")
            if len(images) < 2 and self._has_batchnorm:
                # The last maps are 1x1: batch statistics of a single image are undefined there.
                raise ValueError("train mode needs at least 2 images per batch (BatchNorm on the 1x1 map); drop the last batch")
            for i, (image, target) in enumerate(zip(images, targets)):
                _check_target(i, target, self.num_classes)
        x, sizes = self.preprocess(images)  # (N, 3, S, S)
        cls_logits, bbox_deltas = self.core(x)  # (N, A, K), (N, A, 4)
        if self.training:
            return self.compute_loss(cls_logits, bbox_deltas, targets, sizes)
        return self.postprocess(cls_logits, bbox_deltas, sizes)

    def compute_loss(
        self,
        cls_logits: torch.Tensor,
        bbox_deltas: torch.Tensor,
        targets: Sequence[dict[str, torch.Tensor]],
        image_sizes: Sequence[tuple[int, int]],
    ) -> dict[str, torch.Tensor]:
        cls_targets, bbox_targets = self.encode_targets(targets, image_sizes)  # (N, A), (N, A, 4)
        return multibox_loss(
            cls_logits, bbox_deltas, cls_targets, bbox_targets, self.neg_pos_ratio, self.min_negatives
        )

    def encode_targets(
        self, targets: Sequence[dict[str, torch.Tensor]], image_sizes: Sequence[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Match and encode: per-default-box class ``(N, A)`` and offsets ``(N, A, 4)``."""
        device = self.default_boxes.boxes.device
        gt_boxes = []
        for target, (h, w) in zip(targets, image_sizes):
            scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=device)
            gt_boxes.append(target["boxes"].to(device, torch.float32).as_subclass(torch.Tensor) / scale)  # (G, 4) in [0, 1]
        matches = match(gt_boxes, self.default_boxes.xyxy(), self.iou_threshold)  # (N, A)
        cls_targets = torch.zeros_like(matches)  # (N, A)
        bbox_targets = torch.zeros(*matches.shape, 4, device=device)  # (N, A, 4)
        all_boxes = torch.cat(gt_boxes)  # (sum G_i, 4)
        if all_boxes.shape[0] == 0:
            return cls_targets, bbox_targets
        all_labels = torch.cat([t["labels"].to(device, torch.int64) for t in targets])  # (sum G_i,)
        # Per-image ground-truth indices -> indices into the concatenation of all images' boxes.
        counts = torch.tensor([b.shape[0] for b in gt_boxes], device=device)
        offsets = torch.cumsum(counts, 0) - counts  # (N,)
        positive = matches >= 0  # (N, A)
        flat = (matches + offsets[:, None]).clamp(min=0, max=all_boxes.shape[0] - 1)  # (N, A)
        cls_targets = torch.where(positive, all_labels[flat], 0)  # (N, A)
        bbox_targets = self.box_coder.encode(all_boxes[flat], self.default_boxes.boxes)  # (N, A, 4)
        return cls_targets, bbox_targets


def _check_target(index: int, target: dict[str, torch.Tensor], num_classes: int) -> None:
    """Raise ``ValueError`` naming the image and the problem for a malformed target."""
    for key in ("boxes", "labels"):
        if key not in target:
            raise ValueError(f"target {index} has no '{key}' (keys: {sorted(target)})")
    boxes, labels = target["boxes"], target["labels"]
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"target {index}: boxes must have shape (M, 4), got {tuple(boxes.shape)}")
    if labels.dim() != 1 or labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"target {index}: labels must have shape ({boxes.shape[0]},), got {tuple(labels.shape)}")
    if boxes.is_floating_point() and not torch.isfinite(boxes).all():
        raise ValueError(f"target {index}: boxes contain NaN or infinity")
    degenerate = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if degenerate.any():
        bad = boxes[degenerate][0].tolist()
        raise ValueError(f"target {index}: {int(degenerate.sum())} degenerate boxes (x2 <= x1 or y2 <= y1), e.g. {bad}")
    if labels.is_floating_point():
        raise ValueError(f"target {index}: labels must be integers, got {labels.dtype}")
    out_of_range = (labels < 1) | (labels >= num_classes)
    if out_of_range.any():
        raise ValueError(
            f"target {index}: labels must be in 1..{num_classes - 1} (0 is the background), got {labels[out_of_range].tolist()}"
        )


def _init_weights(module: nn.Module) -> None:
    """Normal(0, 0.03) convolutions and zero biases, as torchvision's SSDLite initializes extras and heads."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, mean=0.0, std=0.03)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


#: Backbones the builder knows, by name (``arch``).
ARCHS = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v1", "vgg16")
#: Optional necks over the prediction maps.
NECKS = ("none", "fpn")
#: Names earlier versions wrote into ``model.config``.
LEGACY_ARCHS = {"ssdlite_mobilenet_v2": "mobilenet_v2"}

#: The classic SSD300 (SSD paper, section 3 and Fig. 2; torchvision's ``ssd300_vgg16``): explicit
#: scales and centre steps, four or six boxes per map, ImageNet mean and 0-255 inputs (Caffe VGG).
SSD300_ANCHORS = {
    "scales": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
    "steps": [8, 16, 32, 64, 100, 300],
    "aspect_ratios": [[2.0], [2.0, 3.0], [2.0, 3.0], [2.0, 3.0], [2.0], [2.0]],
}
VGG_MEAN_STD = ((0.48235, 0.45882, 0.40784), (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0))


def _arch_defaults(arch: str) -> dict[str, Any]:
    """What each architecture uses when the caller does not say."""
    if arch == "vgg16":
        return {
            "size": 300,
            "head": "ssd",
            "image_mean": VGG_MEAN_STD[0],
            "image_std": VGG_MEAN_STD[1],
            "aspect_ratios": SSD300_ANCHORS["aspect_ratios"],
            "reduce_lowest": False,
            "clip_boxes": "size",
            "scales": SSD300_ANCHORS["scales"],
            "steps": SSD300_ANCHORS["steps"],
        }
    return {
        "size": 320,
        "head": "lite",
        "image_mean": SIGNED_UNIT[0],
        "image_std": SIGNED_UNIT[1],
        "aspect_ratios": DEFAULT_ASPECT_RATIOS,
        "reduce_lowest": True,
        "clip_boxes": False,
        "scales": None,
        "steps": None,
    }


def _build_backbone(arch: str, width_mult: float, reduced_tail: bool, fpn_stride8: bool) -> tuple[nn.Module, nn.Module | None]:
    """The backbone for ``arch`` and, where SSDLite's separable extra layers do not apply, its own extras."""
    if arch == "mobilenet_v2":
        return MobileNetV2Backbone(width_mult=width_mult, stride8=fpn_stride8), None
    if arch in ("mobilenet_v3_large", "mobilenet_v3_small"):
        from ssdlite.models.mobilenet_v3 import MobileNetV3Backbone

        return MobileNetV3Backbone(arch, width_mult=width_mult, reduced_tail=reduced_tail, stride8=fpn_stride8), None
    if arch == "mobilenet_v1":
        from ssdlite.models.mobilenet_v1 import MobileNetV1Backbone

        return MobileNetV1Backbone(width_mult=width_mult, stride8=fpn_stride8), None
    if arch == "vgg16":
        from ssdlite.models.vgg import VGG16Backbone, VGGExtras

        if width_mult != 1.0 or fpn_stride8:
            raise ValueError("vgg16 has no width multiplier and its first map already has stride 8")
        backbone = VGG16Backbone()
        return backbone, VGGExtras(backbone.out_channels[-1])
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHS}")


def create_model(
    num_classes: int,
    arch: str = "mobilenet_v2",
    size: int | None = None,
    width_mult: float = 1.0,
    backbone_weights: str | None = None,
    *,
    head: str | None = None,
    neck: str = "none",
    fpn_stride8: bool = False,
    reduced_tail: bool = False,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] | Sequence[Sequence[float]] | None = None,
    reduce_lowest: bool | None = None,
    clip_boxes: bool | str | None = None,
    scales: Sequence[float] | None = None,
    steps: Sequence[float] | None = None,
    **kwargs: Any,
) -> SSDLite:
    """A single-shot detector: backbone by name, SSDLite or SSD heads, optional FPN neck.

    Args:
        num_classes: classes including the background (91 for COCO).
        arch: ``"mobilenet_v2"`` (MobileNetV2 paper, section 6.2), ``"mobilenet_v3_large"`` /
            ``"mobilenet_v3_small"`` (MobileNetV3 paper, section 6.2), ``"mobilenet_v1"`` (the
            MobileNetV2 paper's comparison row) or ``"vgg16"`` (the classic SSD300).
        size: square input size (default 320; 300 for vgg16). 320 gives maps 20, 10, 5, 3, 2, 1.
        width_mult: MobileNet width multiplier (channels follow the backbone's declared ones).
        backbone_weights: ``None`` (random), a path to a torchvision state dict of the backbone's
            classifier model (e.g. ``../shared/weights/mobilenet_v2_imagenet.pth``), or ``"imagenet"``
            for torchvision's own weights (downloads; MobileNets then use the ImageNet mean and std).
            vgg16 keeps SSD300's Caffe normalization (0-255 inputs minus the mean), which is what
            torchvision's ``VGG16_Weights.IMAGENET1K_FEATURES`` ("imagenet" here) expects; a regular
            ``IMAGENET1K_V1`` file expects the ImageNet mean and std: pass ``image_mean``/``image_std``.
        head: ``"lite"`` (depthwise-separable; default for MobileNets) or ``"ssd"`` (3x3; default for vgg16).
        neck: ``"none"`` or ``"fpn"`` (top-down separable FPN, see :mod:`ssdlite.models.fpn`).
        fpn_stride8: also predict on a stride-8 map of the backbone (for small objects).
        reduced_tail: MobileNetV3's halved last stage (torchvision's ``reduced_tail``).
        image_mean, image_std: override the normalization (defaults follow the weights).
        min_scale, max_scale, aspect_ratios, reduce_lowest, clip_boxes, scales, steps: default boxes
            (see :class:`DefaultBoxes`; ``clip_boxes`` is its ``clip``).
        **kwargs: matching, loss and postprocess settings of :class:`SSDLite`.
    """
    arch = LEGACY_ARCHS.get(arch, arch)
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHS}")
    if neck not in NECKS:
        raise ValueError(f"unknown neck {neck!r}; choose one of {NECKS}")
    if fpn_stride8 and neck != "fpn":
        raise ValueError("fpn_stride8 adds a level to the FPN neck: use it with neck='fpn'")
    defaults = _arch_defaults(arch)
    if backbone_weights == "imagenet" and arch != "vgg16":
        from ssdlite.models.transform import IMAGENET

        defaults["image_mean"], defaults["image_std"] = IMAGENET
    size = defaults["size"] if size is None else size
    head = defaults["head"] if head is None else head
    mean = tuple(image_mean if image_mean is not None else defaults["image_mean"])
    std = tuple(image_std if image_std is not None else defaults["image_std"])
    aspect_ratios = defaults["aspect_ratios"] if aspect_ratios is None else aspect_ratios
    reduce_lowest = defaults["reduce_lowest"] if reduce_lowest is None else reduce_lowest
    clip_boxes = defaults["clip_boxes"] if clip_boxes is None else clip_boxes
    # SSD300's explicit scales and steps belong to its six maps at 300; other sizes use min/max scales.
    if scales is None and steps is None and size == defaults["size"]:
        scales, steps = defaults["scales"], defaults["steps"]
    aspect_ratios = [list(r) for r in aspect_ratios] if aspect_ratios and isinstance(aspect_ratios[0], Sequence) else list(aspect_ratios)
    config = {
        "arch": arch,
        "num_classes": num_classes,
        "size": size,
        "width_mult": width_mult,
        "head": head,
        "neck": neck,
        "fpn_stride8": fpn_stride8,
        "reduced_tail": reduced_tail,
        "image_mean": list(mean),
        "image_std": list(std),
        "min_scale": min_scale,
        "max_scale": max_scale,
        "aspect_ratios": aspect_ratios,
        "reduce_lowest": reduce_lowest,
        "clip_boxes": clip_boxes,
        "scales": None if scales is None else list(scales),
        "steps": None if steps is None else list(steps),
        **kwargs,
    }
    backbone, extras = _build_backbone(arch, width_mult, reduced_tail, fpn_stride8)
    if backbone_weights is not None:
        _load_backbone_weights(backbone, backbone_weights, width_mult)
    neck_factory = None
    if neck == "fpn":
        from ssdlite.models.fpn import FPNNeck

        neck_factory = partial(FPNNeck, norm_layer=TF_BATCH_NORM)
    anchor_kwargs = dict(
        min_scale=min_scale,
        max_scale=max_scale,
        aspect_ratios=aspect_ratios,
        reduce_lowest=reduce_lowest,
        clip=clip_boxes,
        scales=scales,
        steps=steps,
    )
    return SSDLite(
        backbone,
        num_classes,
        size,
        extras=extras,
        neck=neck_factory,
        head_kind=head,
        image_mean=mean,
        image_std=std,
        anchor_kwargs=anchor_kwargs,
        config=config,
        **kwargs,
    )


def ssdlite_mobilenet_v2(
    num_classes: int, size: int = 320, width_mult: float = 1.0, backbone_weights: str | None = None, **kwargs: Any
) -> SSDLite:
    """SSDLite with a MobileNetV2 backbone (MobileNetV2 paper, section 6.2); see :func:`create_model`."""
    return create_model(num_classes, "mobilenet_v2", size, width_mult, backbone_weights, **kwargs)


def _load_backbone_weights(backbone: nn.Module, weights: str, width_mult: float) -> None:
    from ssdlite.errors import UserError

    if weights == "imagenet":
        if width_mult != 1.0:
            raise UserError(f"torchvision's ImageNet weights exist for width 1.0 only, not {width_mult}")
        try:
            state_dict = backbone.imagenet_state_dict()
        except ValueError as err:
            raise UserError(str(err)) from err
        backbone.load_torchvision_state_dict(state_dict, "torchvision ImageNet weights")
        return
    import os

    if not os.path.isfile(weights):
        raise UserError(f"backbone weights {weights}: no such file")
    try:
        state_dict = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or non-tensor pickle: say which file
        raise UserError(f"backbone weights {weights}: cannot be read as a state dict ({err})") from err
    if not isinstance(state_dict, dict):
        raise UserError(f"backbone weights {weights}: expected a state dict, got {type(state_dict).__name__}")
    try:
        backbone.load_torchvision_state_dict(state_dict, f"backbone weights {weights}")
    except ValueError as err:
        raise UserError(str(err)) from err


def build_model(config: dict[str, Any]) -> SSDLite:
    """Rebuild a model from its ``model.config`` (no weights are loaded)."""
    config = dict(config)
    arch = config.pop("arch", "mobilenet_v2")
    config.pop("backbone_weights", None)
    return create_model(arch=arch, **config)
