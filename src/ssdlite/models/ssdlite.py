"""The detector's wiring: SSDLite (MobileNetV2 paper, section 6.2) and SSD (SSD paper) alike.

The model follows torchvision's detection contract: in train mode ``model(images, targets)``
returns the loss dict; in eval mode ``model(images)`` returns one ``{"boxes", "scores",
"labels"}`` dict per image, boxes as xyxy in that image's own pixels. Three explicit stages:
``preprocess`` (list of images -> normalized ``(N, 3, S, S)``), ``core`` (tensor in, tensors out:
the part that is exported) and ``postprocess``. The parts are built by :mod:`ssdlite.models.factory`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssdlite.models.anchors import DefaultBoxes
from ssdlite.models.box_coder import BoxCoder
from ssdlite.models.config import ModelConfig
from ssdlite.models.heads import SSDLiteHead
from ssdlite.models.loss import multibox_loss
from ssdlite.models.matcher import match
from ssdlite.models.postprocess import PostProcess
from ssdlite.models.transform import Preprocess


class SSDLiteCore(nn.Module):
    """The network: ``(N, 3, S, S)`` -> ``cls_logits (N, A, K)``, ``bbox_deltas (N, A, 4)``.

    ``neck`` (optional) maps the list of feature maps to a list of the same sizes, e.g. the FPN
    top-down pathway; it declares its ``out_channels``.
    """

    def __init__(self, backbone: nn.Module, extras: nn.Module, head: SSDLiteHead, neck: nn.Module | None) -> None:
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
    """A single-shot detector: preprocess, network, default boxes, matching, loss and postprocess.

    Every part is built outside and passed in (torchvision's ``SSD`` style); :func:`ssdlite.models.build_model`
    builds them from a :class:`~ssdlite.models.config.ModelConfig`.

    Args:
        core: the network, ``(N, 3, S, S)`` -> ``cls_logits (N, A, K)``, ``bbox_deltas (N, A, 4)``.
        default_boxes: the ``A`` default boxes, in the order of the head's outputs.
        preprocess: list of images -> normalized ``(N, 3, S, S)`` batch and each image's size.
        box_coder: encodes matched ground truth and decodes predictions (also used by ``postprocess``).
        postprocess: decoding, score filter, NMS and mapping back to each image's pixels.
        num_classes: number of classes including the background (class 0).
        iou_threshold: matching threshold (SSD paper 2.2: 0.5).
        neg_pos_ratio, min_negatives: hard negative mining (see :func:`multibox_loss`).
        config: the resolved configuration the parts were built from, kept as ``model.config``.
    """

    def __init__(
        self,
        core: SSDLiteCore,
        default_boxes: DefaultBoxes,
        preprocess: Preprocess,
        box_coder: BoxCoder,
        postprocess: PostProcess,
        num_classes: int,
        iou_threshold: float,
        neg_pos_ratio: float,
        min_negatives: int,
        config: ModelConfig,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.size = preprocess.size
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.min_negatives = min_negatives
        self.config = config
        self.default_boxes = default_boxes
        self.preprocess = preprocess
        self.core = core
        self.box_coder = box_coder
        self.postprocess_detections = postprocess
        self._has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules())

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
