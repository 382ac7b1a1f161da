"""The detector's configuration: every model default and every choice list, defined once.

:class:`ModelConfig` is what :func:`ssdlite.models.build_model` builds from, what ``model.config`` is
(resolved, see below), what ``model.safetensors``, checkpoints and exported files store (as
:meth:`ModelConfig.to_dict`), the ``model:`` section of a training configuration, and the source of
the model flags of every command that builds a model (``train``, ``summary``, ``benchmark``,
``doctor``, ``anchors fit``, ``demo``): see :mod:`ssdlite.models.options`.

Some defaults depend on the architecture or on the backbone weights (``None`` in a field means "the
architecture's default"): :meth:`ModelConfig.resolved` fills them in, once, before anything reads
them (the data side reads ``size`` for its resize and ``image_mean`` for the zoom-out fill):

=================  ==========================================  =====================================
field              MobileNets                                  vgg16 (SSD300, SSD paper section 3)
=================  ==========================================  =====================================
size               320                                         300
head               lite (depthwise-separable, SSDLite)         ssd (3x3)
image_mean / std   0.5 / 0.5, inputs in [-1, 1] (TF weights);  Caffe VGG: 0-255 minus the ImageNet
                   the ImageNet mean / std with                mean
                   ``backbone_weights="imagenet"``
aspect_ratios      2 3 on every map                            SSD300's per-map ratios
reduce_lowest      on (three boxes on the first map, TF)       off
clip_boxes         off (TF reference)                          size (torchvision)
scales, steps      from min_scale / max_scale                  SSD300's explicit ones at 300
=================  ==========================================  =====================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ssdlite.models import options
from ssdlite.models.options import option

#: Backbones the builder knows, by name (``arch``).
ARCHS = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v1", "vgg16")
#: Prediction heads: depthwise-separable (SSDLite, MobileNetV2 paper section 6.2) or regular 3x3 (SSD).
HEADS = ("lite", "ssd")
#: Optional necks over the prediction maps.
NECKS = ("none", "fpn", "residual_fpn")
#: Default-box clipping: none (TF reference), to the image, or width and height capped at 1 (torchvision).
CLIPS = ("none", "image", "size")
#: Names earlier versions wrote into ``model.config``.
LEGACY_ARCHS = {"ssdlite_mobilenet_v2": "mobilenet_v2"}

#: Upper ends of the ranges, far beyond any real detector, so a mistyped value is an error rather than an
#: allocation that takes the machine down: classes (LVIS has 1203), input side, width multiplier (the papers
#: use up to 1.4), an aspect ratio and an explicit scale (SSD300's largest is 1.05).
MAX_CLASSES, MAX_SIZE, MAX_WIDTH, MAX_RATIO, MAX_SCALE = 10_000, 4096, 4.0, 100.0, 10.0

#: Inputs in [-1, 1]: what the TensorFlow MobileNet weights (and the shared MobileNetV2) expect.
SIGNED_UNIT = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
#: torchvision's ImageNet classifiers.
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class ModelConfig(options.Settings):
    """A detector: backbone, neck, heads, default boxes, matching, loss and postprocess settings."""

    # -- the network
    arch: str = option("mobilenet_v2", "backbone", ARCHS)
    num_classes: int | None = option(None, "classes including the background", ge=2, le=MAX_CLASSES, shown="the dataset's classes + 1; 91, COCO's, when no dataset is given")
    size: int | None = option(None, "square input size in pixels", ge=1, le=MAX_SIZE, shown="320; 300 for vgg16")
    width_mult: float = option(1.0, "MobileNet width multiplier", gt=0, le=MAX_WIDTH)
    head: str | None = option(None, "prediction heads: depthwise-separable or regular 3x3", HEADS, shown="lite; ssd for vgg16")
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
    reduce_lowest: bool | None = option(None, "default boxes: three boxes on the first map, as the TensorFlow reference", shown="on; off for vgg16")
    lowest_scale: float = option(0.1, "default boxes: scale of the first map's 1:1 box with --reduce-lowest (the TensorFlow reference's 0.1)", gt=0, le=1)
    clip_boxes: str | None = option(None, "default boxes: clip to the image, cap width and height at 1, or neither", CLIPS, shown="none; size for vgg16")
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
            if data.get("arch") in LEGACY_ARCHS:
                data["arch"] = LEGACY_ARCHS[data["arch"]]
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
        vgg = self.arch == "vgg16"
        if vgg:
            from ssdlite.models.vgg import SSD300_ANCHORS, SSD300_SIZE, VGG_MEAN_STD

            mean, std = VGG_MEAN_STD
        else:
            mean, std = IMAGENET if self.backbone_weights == "imagenet" else SIGNED_UNIT
        size = self.size if self.size is not None else (SSD300_SIZE if vgg else 320)
        scales, steps = self.scales, self.steps
        # SSD300's explicit scales and steps belong to its six maps at 300; other sizes use min/max scales.
        if vgg and scales is None and steps is None and size == SSD300_SIZE:
            scales, steps = tuple(SSD300_ANCHORS["scales"]), tuple(SSD300_ANCHORS["steps"])
        ratios = self.aspect_ratios
        if ratios is None:
            ratios = tuple(tuple(r) for r in SSD300_ANCHORS["aspect_ratios"]) if vgg else (2.0, 3.0)
        return dataclasses.replace(
            self,
            size=size,
            head=self.head or ("ssd" if vgg else "lite"),
            image_mean=self.image_mean or mean,
            image_std=self.image_std or std,
            aspect_ratios=ratios,
            reduce_lowest=(not vgg) if self.reduce_lowest is None else self.reduce_lowest,
            clip_boxes=self.clip_boxes or ("size" if vgg else "none"),
            scales=scales,
            steps=steps,
        )
