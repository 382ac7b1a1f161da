"""Centre-size box encoding with variances.

SSD paper, equation 2: offsets of a ground-truth box ``g`` relative to a default box ``d`` are
``((g_cx - d_cx) / d_w, (g_cy - d_cy) / d_h, log(g_w / d_w), log(g_h / d_h))``; the reference
implementations divide them by the "variances" (0.1, 0.1, 0.2, 0.2), which is torchvision's
``BoxCoder(weights=(10, 10, 5, 5))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: Largest log-scale a decoded box may take, as in torchvision (boxes at most 1000/16 x the default box).
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


class BoxCoder:
    """Encodes xyxy boxes against ``(cx, cy, w, h)`` default boxes and decodes deltas back.

    Works on any leading batch shape: ``boxes (..., 4)`` with ``default_boxes`` broadcastable to it.
    """

    def __init__(self, variances: Sequence[float]) -> None:
        self.variances = tuple(float(v) for v in variances)

    def encode(self, boxes: torch.Tensor, default_boxes: torch.Tensor) -> torch.Tensor:
        """xyxy ``(..., 4)`` -> deltas ``(..., 4)``."""
        wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-12)  # (..., 2)
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2  # (..., 2)
        d_centre, d_wh = default_boxes[..., :2], default_boxes[..., 2:]
        v = boxes.new_tensor(self.variances)
        offset = (centre - d_centre) / d_wh / v[:2]  # (..., 2)
        scale = torch.log(wh / d_wh) / v[2:]  # (..., 2)
        return torch.cat([offset, scale], dim=-1)

    def decode(self, deltas: torch.Tensor, default_boxes: torch.Tensor) -> torch.Tensor:
        """deltas ``(..., 4)`` -> xyxy ``(..., 4)`` in the default boxes' coordinates."""
        v = deltas.new_tensor(self.variances)
        d_centre, d_wh = default_boxes[..., :2], default_boxes[..., 2:]
        centre = deltas[..., :2] * v[:2] * d_wh + d_centre  # (..., 2)
        wh = torch.exp((deltas[..., 2:] * v[2:]).clamp(max=BBOX_XFORM_CLIP)) * d_wh  # (..., 2)
        return torch.cat([centre - wh / 2, centre + wh / 2], dim=-1)
