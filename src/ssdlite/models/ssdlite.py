"""SSDLite: MobileNetV2 + extra layers + separable heads, as in the MobileNetV2 paper, section 6.2.

The model follows torchvision's detection contract: in train mode ``model(images, targets)``
returns the loss dict; in eval mode ``model(images)`` returns one ``{"boxes", "scores",
"labels"}`` dict per image, boxes as xyxy in that image's own pixels. Three explicit stages:
``preprocess`` (list of images -> normalized ``(N, 3, S, S)``), ``core`` (tensor in, tensors out:
the part that is exported) and ``postprocess``.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    """The network: ``(N, 3, S, S)`` -> ``cls_logits (N, A, K)``, ``bbox_deltas (N, A, 4)``."""

    def __init__(self, backbone: nn.Module, extras: ExtraLayers, head: SSDLiteHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.extras = extras
        self.head = head

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.backbone(x)  # [(N, 576, S/16, S/16), (N, 1280, S/32, S/32)]
        return maps + self.extras(maps[-1])  # + 4 extra maps, halving each time

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.features(x))


class SSDLite(nn.Module):
    """A single-shot detector with SSDLite heads.

    Args:
        backbone: module returning a list of maps and declaring ``out_channels`` and ``strides``.
        num_classes: number of classes including the background (class 0).
        size: square input size ``S``.
        extra_depths: output depths of the extra layers.
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

        extras = ExtraLayers(backbone.out_channels[-1], extra_depths, norm_layer)
        in_channels = list(backbone.out_channels) + list(extras.out_channels)
        feature_sizes = self._feature_sizes(backbone, extras, size)
        self.default_boxes = DefaultBoxes(feature_sizes, **(anchor_kwargs or {}))
        head = SSDLiteHead(in_channels, self.default_boxes.boxes_per_location, num_classes, norm_layer)
        self.preprocess = Preprocess(size, image_mean, image_std)
        self.core = SSDLiteCore(backbone, extras, head)
        self.box_coder = BoxCoder(variances)
        self.postprocess_detections = PostProcess(
            self.box_coder, score_threshold, nms_threshold, topk_candidates, detections_per_image
        )
        _init_weights(extras)
        _init_weights(head)

    @staticmethod
    def _feature_sizes(backbone: nn.Module, extras: nn.Module, size: int) -> list[tuple[int, int]]:
        """Feature-map sizes from one dry run, so they are never typed by hand."""
        was_training = backbone.training
        backbone.eval()
        extras.eval()
        with torch.no_grad():
            maps = backbone(torch.zeros(1, 3, size, size))
            maps = maps + extras(maps[-1])
        backbone.train(was_training)
        extras.train(was_training)
        sizes = [tuple(m.shape[-2:]) for m in maps]
        if min(min(s) for s in sizes) < 1:
            raise ValueError(f"input size {size} is too small for {len(sizes)} feature maps: {sizes}")
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
            if len(images) < 2:
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


def ssdlite_mobilenet_v2(
    num_classes: int,
    size: int = 320,
    width_mult: float = 1.0,
    backbone_weights: str | None = None,
    *,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    reduce_lowest: bool = True,
    clip_boxes: bool = False,
    **kwargs: Any,
) -> SSDLite:
    """SSDLite with a MobileNetV2 backbone (MobileNetV2 paper, section 6.2).

    Args:
        num_classes: classes including the background (91 for COCO).
        size: square input size (320 gives maps 20, 10, 5, 3, 2, 1; 300 gives 19, 10, 5, 3, 2, 1).
        width_mult: MobileNetV2 width multiplier.
        backbone_weights: ``None`` (random), a path to a torchvision ``mobilenet_v2`` state dict such as
            ``../shared/weights/mobilenet_v2_imagenet.pth`` (inputs in [-1, 1]), or ``"imagenet"`` for
            torchvision's own weights (downloads; inputs normalized with the ImageNet mean and std).
        image_mean, image_std: override the normalization (defaults follow the weights, see above).
        min_scale, max_scale, aspect_ratios, reduce_lowest, clip_boxes: default boxes (see :class:`DefaultBoxes`).
        **kwargs: matching, loss and postprocess settings of :class:`SSDLite`.
    """
    default_mean, default_std = SIGNED_UNIT
    if backbone_weights == "imagenet":
        from ssdlite.models.transform import IMAGENET

        default_mean, default_std = IMAGENET
    mean = tuple(image_mean if image_mean is not None else default_mean)
    std = tuple(image_std if image_std is not None else default_std)
    config = {
        "arch": "ssdlite_mobilenet_v2",
        "num_classes": num_classes,
        "size": size,
        "width_mult": width_mult,
        "image_mean": list(mean),
        "image_std": list(std),
        "min_scale": min_scale,
        "max_scale": max_scale,
        "aspect_ratios": list(aspect_ratios),
        "reduce_lowest": reduce_lowest,
        "clip_boxes": clip_boxes,
        **kwargs,
    }
    backbone = MobileNetV2Backbone(width_mult=width_mult)
    if backbone_weights is not None:
        _load_backbone_weights(backbone, backbone_weights, width_mult)
    anchor_kwargs = dict(
        min_scale=min_scale, max_scale=max_scale, aspect_ratios=aspect_ratios, reduce_lowest=reduce_lowest, clip=clip_boxes
    )
    return SSDLite(
        backbone, num_classes, size, image_mean=mean, image_std=std, anchor_kwargs=anchor_kwargs, config=config, **kwargs
    )


def _load_backbone_weights(backbone: MobileNetV2Backbone, weights: str, width_mult: float) -> None:
    from ssdlite.errors import UserError

    if weights == "imagenet":
        from torchvision.models import MobileNet_V2_Weights

        if width_mult != 1.0:
            raise UserError(f"torchvision's ImageNet weights exist for width 1.0 only, not {width_mult}")
        state_dict = MobileNet_V2_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        backbone.load_torchvision_state_dict(state_dict, "torchvision IMAGENET1K_V1")
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
    arch = config.pop("arch", "ssdlite_mobilenet_v2")
    if arch != "ssdlite_mobilenet_v2":
        raise ValueError(f"unknown architecture {arch!r}; this version builds 'ssdlite_mobilenet_v2'")
    config.pop("backbone_weights", None)
    return ssdlite_mobilenet_v2(**config)

