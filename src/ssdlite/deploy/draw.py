"""Boxes, class names and scores drawn on an image (``torchvision.utils.draw_bounding_boxes``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.utils import draw_bounding_boxes

# Tableau-10: distinct, readable on photos; class k uses PALETTE[(k - 1) % 10].
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


def class_name(label: int, classes: Sequence[str]) -> str:
    return classes[label - 1] if 1 <= label <= len(classes) else f"class{label}"


def draw_detections(image: torch.Tensor, detections: dict[str, torch.Tensor], classes: Sequence[str]) -> torch.Tensor:
    """uint8 ``(3, H, W)`` image + ``{"boxes" (D, 4) xyxy pixels, "scores", "labels"}`` -> uint8 ``(3, H, W)``."""
    boxes = detections["boxes"].float().cpu()
    if boxes.shape[0] == 0:
        return image
    labels = detections["labels"].tolist()
    text = [f"{class_name(label, classes)} {score:.2f}" for label, score in zip(labels, detections["scores"].tolist())]
    colors = [PALETTE[(label - 1) % len(PALETTE)] for label in labels]
    width = max(1, round(max(image.shape[-2:]) / 300))  # 1 px at 300 px, thicker on large photos
    return draw_bounding_boxes(image, boxes, labels=text, colors=colors, width=width)
