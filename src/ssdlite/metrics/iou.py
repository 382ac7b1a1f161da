"""Pairwise intersection over union of xyxy boxes, in numpy for the metric code."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a (N, 4)`` with every box in ``b (M, 4)``: ``(N, M)``.

    Continuous coordinates: area ``(x2 - x1) * (y2 - y1)``. The VOC devkit adds 1 to widths
    because its boxes are 1-based inclusive pixel indices; converted to continuous coordinates
    (``xmin - 1``, ``ymin - 1``) such boxes give the devkit's overlap exactly. Zero-area pairs
    get IoU 0.
    """
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])  # (N,)
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # (M,)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    wh = np.clip(rb - lt, 0, None)  # (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = area_a[:, None] + area_b[None, :] - inter  # (N, M)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
