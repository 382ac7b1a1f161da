"""The detector's configuration: every model default and every choice list, defined once.

:class:`ModelConfig` is what :func:`ssdlite.models.build_model` builds from, what ``model.config`` is
(resolved, see below), what ``model.safetensors``, checkpoints and exported files store (as
:meth:`ModelConfig.to_dict`), the ``model:`` section of a training configuration, and the source of
the model flags of every command that builds a model (``train``, ``summary``, ``benchmark``,
``doctor``, ``anchors fit``, ``demo``): see :mod:`ssdlite.models.options`.

Some defaults depend on the architecture or on the backbone weights (``None`` in a field means "the
architecture's default"): :meth:`ModelConfig.resolved` fills them in, once, before anything reads
them (the data side reads ``size`` for its resize and ``image_mean`` for the zoom-out fill), from the
backbone's row of :mod:`ssdlite.models.backbones` (its ``Defaults``: SSDLite's 320, lite heads, ratios 2 3
on every map and three boxes on the first, [-1, 1] inputs or ImageNet's with ``backbone_weights="imagenet"``;
vgg16's SSD300 at 300 with 3x3 heads, its per-map ratios, explicit scales and steps, Caffe normalization).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ssdlite.models import backbones, options
from ssdlite.models.options import option

#: Backbones the builder knows, by name (``arch``): the rows of the table.
ARCHS = backbones.names()
#: Prediction heads: depthwise-separable (SSDLite, MobileNetV2 paper section 6.2) or regular 3x3 (SSD).
HEADS = ("lite", "ssd")
#: Optional necks over the prediction maps.
NECKS = ("none", "fpn", "residual_fpn")
#: Default-box clipping: none (TF reference), to the image, or width and height capped at 1 (torchvision).
CLIPS = ("none", "image", "size")

#: Upper ends of the ranges, far beyond any real detector, so a mistyped value is an error rather than an
#: allocation that takes the machine down: classes (LVIS has 1203), input side, width multiplier (the papers
#: use up to 1.4), an aspect ratio and an explicit scale (SSD300's largest is 1.05).
MAX_CLASSES, MAX_SIZE, MAX_WIDTH, MAX_RATIO, MAX_SCALE = 10_000, 4096, 4.0, 100.0, 10.0



@dataclass(frozen=True)
class ModelConfig(options.Settings):
    """A detector: backbone, neck, heads, default boxes, matching, loss and postprocess settings."""

    # -- the network
    arch: str = option(backbones.DEFAULT.name, "backbone", ARCHS)
    num_classes: int | None = option(None, "classes including the background", ge=2, le=MAX_CLASSES, shown="the dataset's classes + 1; 91, COCO's, when no dataset is given")
    size: int | None = option(None, "square input size in pixels", ge=1, le=MAX_SIZE, shown=backbones.default_text("size"))
    width_mult: float = option(1.0, "MobileNet width multiplier", gt=0, le=MAX_WIDTH)
    head: str | None = option(None, "prediction heads: depthwise-separable or regular 3x3", HEADS, shown=backbones.default_text("head"))
    neck: str = option("none", "neck over the prediction maps: fpn (FPN-Lite, 128-channel outputs) or residual_fpn (the top-down path added to the pretrained maps; docs/training.md)", NECKS)
    fpn_stride8: bool = option(False, "FPN neck: also predict on a stride-8 map (small objects)")
    reduced_tail: bool = option(False, "MobileNetV3: halve the last stage (torchvision's reduced_tail)")
    backbone_weights: str | None = option(None, "backbone classifier weights: a torchvision state dict file (e.g. ../shared/weights/mobilenet_v2_imagenet.pth), 'imagenet' (torchvision's, downloaded once; the default of `ssdlite train`) or 'none' (random)")
    image_mean: tuple[float, ...] | None = option(None, "RGB mean subtracted after scaling pixels to [0, 1]", length=3, shown="0.5 0.5 0.5; ImageNet's with --backbone-weights imagenet; Caffe's for vgg16")
    image_std: tuple[float, ...] | None = option(None, "RGB standard deviation the input is divided by", gt=0, length=3, shown="0.5 0.5 0.5; ImageNet's with --backbone-weights imagenet; 1/255 for vgg16")
    # -- default boxes (SSD paper, section 2.2)
    min_scale: float = option(0.2, "default boxes: scale of the first map (SSD paper 2.2; `ssdlite anchors fit` searches it)", gt=0, le=1)
    max_scale: float = option(0.95, "default boxes: scale of the last map", gt=0, le=1)
    # One flat tuple (the same ratios on every map) or one tuple per map.
    aspect_ratios: tuple[tuple[float, ...], ...] | None = option(None, "default boxes: ratios a > 1, each adding a and 1/a; one list for every map or per map separated by /", gt=1, le=MAX_RATIO, shown="2 3; SSD300's per-map ratios for vgg16")
    reduce_lowest: bool | None = option(None, "default boxes: three boxes on the first map, as the TensorFlow reference", shown=backbones.default_text("reduce_lowest"))
    lowest_scale: float = option(0.1, "default boxes: scale of the first map's 1:1 box with --reduce-lowest (the TensorFlow reference's 0.1)", gt=0, le=1)
    clip_boxes: str | None = option(None, "default boxes: clip to the image, cap width and height at 1, or neither", CLIPS, shown=backbones.default_text("clip_boxes"))
    scales: tuple[float, ...] | None = option(None, "default boxes: explicit scales, one per map and one past the last, instead of --min-scale/--max-scale", gt=0, le=MAX_SCALE, shown="SSD300's for vgg16 at 300")
    steps: tuple[float, ...] | None = option(None, "default boxes: explicit centre spacing in pixels per map", gt=0, le=MAX_SIZE, shown="SSD300's for vgg16 at 300")
    # -- matching, box coding and loss (SSD paper, section 2.2)
    iou_threshold: float = option(0.5, "matching: a default box is positive above this IoU with a ground-truth box", gt=0, lt=1)
    variances: tuple[float, ...] = option((0.1, 0.1, 0.2, 0.2), "box coding: the offsets are divided by these (cx, cy, w, h)", gt=0, length=4)
    neg_pos_ratio: float = option(3.0, "hard negative mining: negatives per positive", ge=0)
    min_negatives: int = option(3, "hard negative mining: negatives kept per image even without positives (the TensorFlow reference's min_negatives_per_image)", ge=0)
    # -- postprocess
    score_threshold: float = option(0.01, "postprocess: drop detections scoring below this", ge=0, lt=1)
    nms_threshold: float = option(0.45, "postprocess: non-maximum suppression IoU", gt=0, le=1)
    topk_candidates: int = option(200, "postprocess: best-scoring candidates per class kept before NMS", ge=1)
    detections_per_image: int = option(200, "postprocess: detections kept per image", ge=1)

    def __post_init__(self) -> None:
        if isinstance(self.backbone_weights, str) and self.backbone_weights.lower() in ("none", ""):
            object.__setattr__(self, "backbone_weights", None)  # `--backbone-weights none`: from scratch, said explicitly
        for f in dataclasses.fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices and value is not None and value not in choices:
                what = {"arch": "architecture"}.get(f.name, f.name.replace("_", " "))
                raise ValueError(f"unknown {what} {value!r}; choose one of {choices}")
        super().__post_init__()  # every field within its declared range

    # -- reading, writing, resolving

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists instead of tuples), for YAML, JSON and checkpoints."""
        return options.plain(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "model configuration", prefix: str = "") -> ModelConfig:
        """Read a dict; accepts what earlier versions wrote (``model.config`` dicts, old names)."""
        if isinstance(data, dict):
            data = dict(data)
            if "arch" in data:
                data["arch"] = backbones.canonical(data["arch"])  # names earlier versions wrote
            if isinstance(data.get("clip_boxes"), bool):  # earlier versions: False / True
                data["clip_boxes"] = "image" if data["clip_boxes"] else "none"
        return options.from_dict(cls, data, source, prefix)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with fields replaced, checked as if read from a file."""
        return ModelConfig.from_dict({**self.to_dict(), **options.plain(changes)}, "model settings")

    def resolved(self) -> ModelConfig:
        """Every architecture-dependent default filled in (see the module docstring); idempotent."""
        if self.neck == "none" and self.fpn_stride8:
            raise ValueError("fpn_stride8 adds a level to the FPN neck: use it with neck='fpn' or 'residual_fpn'")
        defaults = backbones.get(self.arch).defaults
        mean, std = defaults.normalization_for(self.backbone_weights)
        size = self.size if self.size is not None else defaults.size
        scales, steps = self.scales, self.steps
        # Explicit scales and steps (SSD300's) belong to the backbone's maps at its own size; other sizes use min/max.
        if scales is None and steps is None and size == defaults.size:
            scales, steps = defaults.scales, defaults.steps
        return dataclasses.replace(
            self,
            size=size,
            head=self.head or defaults.head,
            image_mean=self.image_mean or mean,
            image_std=self.image_std or std,
            aspect_ratios=defaults.aspect_ratios if self.aspect_ratios is None else self.aspect_ratios,
            reduce_lowest=defaults.reduce_lowest if self.reduce_lowest is None else self.reduce_lowest,
            clip_boxes=self.clip_boxes or defaults.clip_boxes,
            scales=scales,
            steps=steps,
        )
