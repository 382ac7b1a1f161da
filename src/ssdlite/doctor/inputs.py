"""Labels and inputs: labels within 1..K, a sane class histogram, inputs in the range the weights expect."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ssdlite.doctor.report import FAIL, PASS, WARN, Check
from ssdlite.models import backbones
from ssdlite.models.config import ModelConfig


def check_labels(annotations: Sequence[dict[str, Any]], num_classes: int, classes: Sequence[str] = ()) -> Check:
    """``annotations``: dicts with ``labels`` and ``file_name`` (``dataset.get_annotation(i)``).

    ``num_classes`` counts the background, so foreground labels must be in ``1..num_classes - 1``.
    """
    k = num_classes - 1
    histogram: Counter[int] = Counter()
    per_image = []
    evidence = []
    for ann in annotations:
        labels = np.asarray(ann["labels"]).astype(np.int64).ravel()
        per_image.append(labels.size)
        histogram.update(labels.tolist())
        bad = labels[(labels < 1) | (labels > k)]
        if bad.size:
            what = "0 is the background" if (bad == 0).any() else f"above K = {k}"
            evidence.append(f"{ann.get('file_name', '?')}: labels {sorted(set(bad.tolist()))} outside 1..{k} ({what})")
    name = lambda label: classes[label - 1] if 1 <= label <= len(classes) else str(label)  # noqa: E731
    hist_text = ", ".join(f"{name(c)}: {histogram[c]}" for c in sorted(histogram))
    boxes = np.asarray(per_image or [0])
    data = {
        "histogram": {name(c): histogram[c] for c in sorted(histogram)},
        "boxes_per_image": {"mean": float(boxes.mean()), "max": int(boxes.max()), "empty_images": int((boxes == 0).sum())},
    }
    summary_stats = f"{len(per_image)} images, {int(boxes.sum())} boxes ({boxes.mean():.1f} per image, {data['boxes_per_image']['empty_images']} empty)"
    if evidence:
        return Check(
            "labels",
            FAIL,
            f"{len(evidence)} images have labels outside 1..{k}; {summary_stats}",
            evidence + [f"histogram: {hist_text}"],
            "foreground labels start at 1 (class 0 is the background) and num_classes counts the background: "
            f"shift 0-based labels by one or build the model with num_classes = {max(histogram, default=0) + 1}",
            data,
        )
    missing = [classes[i] for i in range(min(len(classes), k)) if histogram[i + 1] == 0]
    if missing or (histogram and max(histogram.values()) > 50 * max(1, min(histogram.values()))):
        return Check(
            "labels",
            WARN,
            f"labels in range, but the classes are very unbalanced or missing; {summary_stats}",
            ([f"classes with no box: {', '.join(missing)}"] if missing else []) + [f"histogram: {hist_text}"],
            "a class the model never sees cannot be learned; add examples or drop the class",
            data,
        )
    return Check("labels", PASS, f"labels in 1..{k}; {summary_stats}; {hist_text}", data=data)


def check_inputs(
    images: Sequence[torch.Tensor], image_mean: Sequence[float], backbone_weights: str | None = None, arch: str = backbones.DEFAULT.name
) -> Check:
    """The images handed to the model are uint8 or float in [0, 1], and the normalization fits the weights.

    ``backbone_weights`` is what the ``arch`` backbone was initialized from; the mean it expects follows the
    configuration's one rule (:meth:`ModelConfig.resolved`): a TensorFlow-converted file such as the shared
    ``mobilenet_v2_imagenet.pth`` expects inputs in [-1, 1], torchvision's ``"imagenet"`` the ImageNet mean
    and std, VGG16 Caffe's mean.
    """
    evidence, status = [], PASS
    floats = [im for im in images if im.is_floating_point()]
    lo = min((float(im.min()) for im in floats), default=0.0)
    hi = max((float(im.max()) for im in floats), default=1.0)
    dtypes = sorted({str(im.dtype).replace("torch.", "") for im in images})
    if floats and hi > 1.0 + 1e-3:
        status = FAIL
        evidence.append(f"float images reach {hi:.1f}: they look like 0..255 pixels, but float inputs must be in [0, 1]")
    if floats and lo < -1e-3:
        status = FAIL
        evidence.append(f"float images go down to {lo:.2f}: they look normalized already; the model normalizes itself")
    if floats and hi <= 1.0 + 1e-3 and hi < 0.1:
        status = FAIL
        evidence.append(f"float images never exceed {hi:.3f}: pixels divided by 255 twice?")
    mean = tuple(round(float(m), 3) for m in image_mean)
    if backbone_weights:
        expected = ModelConfig(arch=arch, backbone_weights=backbone_weights).resolved().image_mean
        if tuple(round(m, 3) for m in expected) != mean:
            status = FAIL if status == FAIL else WARN
            evidence.append(
                f"the model normalizes with mean {mean} but weights {backbone_weights} expect mean {expected}"
            )
    summary = f"images {', '.join(dtypes)} in [{lo:.2f}, {hi:.2f}], model mean {mean}"
    if status == PASS:
        return Check("inputs", PASS, summary, data={"min": lo, "max": hi})
    return Check(
        "inputs",
        status,
        summary,
        evidence,
        "give the model uint8 images or floats in [0, 1] (ToDtype(float32, scale=True)); keep the normalization "
        "that the backbone weights were trained with",
        {"min": lo, "max": hi},
    )
