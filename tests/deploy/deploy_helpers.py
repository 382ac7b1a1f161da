"""Tiny models and images for the deployment tests."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from PIL import Image
from torchvision.ops import batched_nms

import ssdlite

CLASSES = ["cat", "dog", "bird"]

#: runtime -> (the package its export needs, the file suffix)
RUNTIMES = {"executorch": ("executorch", ".pte"), "tflite": ("litert_torch", ".tflite"), "openvino": ("openvino", ".xml")}


def skip_without(runtime: str) -> None:
    package = RUNTIMES[runtime][0]
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"needs the '{package}' package: pip install 'ssdlite[{runtime}]'")


def varied_model(seed: int = 0, background_bias: float = 2.0, arch: str = "mobilenet_v2", size: int = 128, width_mult: float = 0.35, **kwargs) -> ssdlite.SSDLite:
    """A small ``arch`` model (SSDLite heads) whose scores differ from box to box (an untrained one scores every
    box alike).

    Every convolution gets He-initialized weights (activations keep their scale through the
    network) and the background a bias, so that images have some confident detections, many low
    ones, and no exactly tied scores.
    """
    settings = {"topk_candidates": 50, "detections_per_image": 20} | kwargs
    torch.manual_seed(seed)
    model = ssdlite.create_model(len(CLASSES) + 1, arch, size=size, width_mult=width_mult, **settings).eval()
    with torch.no_grad():
        for conv in model.core.modules():
            if isinstance(conv, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        for predictor in model.core.head.classification.predictors:
            predictor[-1].bias.view(-1, len(CLASSES) + 1)[:, 0] = background_bias
        for predictor in model.core.head.regression.predictors:
            predictor[-1].weight.mul_(0.1)  # boxes near their default boxes
    return model


def weights_file(model, folder):
    """``model`` saved as ``folder/model.safetensors`` with :data:`CLASSES`: what ``ssdlite export --weights`` reads."""
    from ssdlite.models.io import save_safetensors

    path = folder / "model.safetensors"
    save_safetensors(model, path, classes=CLASSES)
    return path


def write_images(folder, n: int, seed: int = 0) -> list:
    """``n`` small RGB photos-like JPEG/PNG files of varied sizes."""
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = 90 + 17 * i, 120 + 11 * i
        array = (torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()
        path = folder / f"img{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def reference_postprocess(post, cls_logits, bbox_deltas, default_boxes):
    """Plain SSD postprocess: every candidate above the threshold through one batched NMS, then the cap."""
    n, a, k = cls_logits.shape
    boxes = post.box_coder.decode(bbox_deltas, default_boxes).clamp(0, 1)  # (N, A, 4)
    scores = cls_logits.softmax(dim=-1)[..., 1:]  # (N, A, K-1)
    top_scores, top_anchor = scores.topk(min(post.topk_candidates, a), dim=1)  # (N, k, K-1)
    out = []
    for i in range(n):
        s, anchor = top_scores[i].T.reshape(-1), top_anchor[i].T.reshape(-1)  # (C*k,)
        labels = torch.arange(1, k).repeat_interleave(top_scores.shape[1])
        keep = s > post.score_threshold
        b, s, labels = boxes[i][anchor[keep]].double(), s[keep].double(), labels[keep]
        kept = batched_nms(b, s, labels, post.nms_threshold)[: post.detections_per_image]
        out.append({"boxes": b[kept], "scores": s[kept], "labels": labels[kept]})
    return out
