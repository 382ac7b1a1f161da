"""SSD default boxes.

SSD paper (Liu et al., 2016), section 2.2 "Choosing scales and aspect ratios for default boxes":
scales linear from ``s_min`` to ``s_max`` over the ``m`` maps,
``s_k = s_min + (s_max - s_min) (k - 1) / (m - 1)``, aspect ratios {1, 2, 1/2, 3, 1/3} with
width ``s_k sqrt(a)`` and height ``s_k / sqrt(a)``, plus one extra 1:1 box of scale
``sqrt(s_k s_{k+1})``; centres at ``((i + 0.5) / f, (j + 0.5) / f)``.

The TensorFlow reference used for SSDLite (``multiple_grid_anchor_generator`` with
``reduce_boxes_in_lowest_layer``) gives the first map only three boxes: (0.1, 1:1), (s_1, 2:1) and
(s_1, 1:2). That is the default here; ``reduce_lowest=False`` gives it the full six.
Counts: 19x19x3 + 834 = 1917 at input 300, 20x20x3 + 834 = 2034 at input 320.

Boxes are in normalized image coordinates ``(cx, cy, w, h)``; within a location they follow the
order of :meth:`DefaultBoxes.box_specs`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

class DefaultBoxes(nn.Module):
    """Generates the default boxes for a list of feature-map sizes.

    Args:
        feature_sizes: ``(H, W)`` of each map, largest first.
        min_scale, max_scale: ``s_min`` and ``s_max``.
        aspect_ratios: ratios ``a > 1``; each adds ``a`` and ``1/a`` (so ``(2, 3)`` gives {1, 2, 1/2, 3, 1/3}).
            One list for every map, or one list per map (SSD300: ``[[2], [2, 3], [2, 3], [2, 3], [2], [2]]``).
        reduce_lowest: give the first map the three TensorFlow boxes instead of six.
        lowest_scale: scale of the first map's 1:1 box when ``reduce_lowest`` (0.1 in the reference).
        clip: ``"none"`` (the TensorFlow reference), ``"image"`` (clip each box to the image) or
            ``"size"`` (cap width and height at 1, what torchvision's ``DefaultBoxGenerator`` does).
        scales: explicit ``s_1 .. s_m`` plus one past the last (for the extra 1:1 box), instead of
            ``min_scale``/``max_scale`` (SSD300: ``[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]``); None: derived.
        steps, image_size: explicit centre spacing in pixels per map (SSD300: ``[8, 16, 32, 64, 100, 300]``);
            None: ``1 / f`` of the map.

    The settings have no defaults here: they live in :class:`ssdlite.models.config.ModelConfig`, and
    :func:`ssdlite.models.factory.default_boxes_for` builds the boxes a configuration describes.

    The boxes are a non-persistent buffer ``boxes`` of shape ``(A, 4)`` as ``(cx, cy, w, h)``: built
    once, moved with the module, and never saved, since they are derived from the configuration.
    """

    def __init__(
        self,
        feature_sizes: Sequence[tuple[int, int]],
        *,
        min_scale: float,
        max_scale: float,
        aspect_ratios: Sequence[float] | Sequence[Sequence[float]],
        reduce_lowest: bool,
        lowest_scale: float,
        clip: str,
        scales: Sequence[float] | None = None,
        steps: Sequence[float] | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        m = len(feature_sizes)
        if m < 2:
            raise ValueError(f"need at least two feature maps, got {m}")
        if scales is None:
            if not 0 < min_scale < max_scale <= 1:
                raise ValueError(f"need 0 < min_scale < max_scale <= 1, got {min_scale}, {max_scale}")
            scales = [min_scale + (max_scale - min_scale) * k / (m - 1) for k in range(m)] + [1.0]
        elif len(scales) != m + 1 or any(b <= a for a, b in zip(scales[:-1], scales[1:])) or scales[0] <= 0:
            raise ValueError(f"scales must be {m + 1} increasing positive values (one per map and one past the last), got {list(scales)}")
        per_level = [list(r) for r in aspect_ratios] if aspect_ratios and isinstance(aspect_ratios[0], Sequence) else None
        ratios = per_level if per_level is not None else [list(aspect_ratios)] * m
        if len(ratios) != m:
            raise ValueError(f"per-map aspect ratios: need {m} lists, got {len(ratios)}")
        if any(a <= 1 for level in ratios for a in level):
            raise ValueError(f"aspect ratios must be > 1 (each adds a and 1/a), got {list(aspect_ratios)}")
        if steps is not None and (len(steps) != m or image_size is None):
            raise ValueError(f"steps need one value per map ({m}) and the image size, got {steps} and {image_size}")
        if clip not in ("none", "image", "size"):
            raise ValueError(f"clip must be 'none', 'image' (clip boxes to the image) or 'size' (cap w, h at 1), got {clip!r}")
        self.feature_sizes = [tuple(s) for s in feature_sizes]
        self.level_aspect_ratios = [tuple(float(a) for a in level) for level in ratios]
        self.aspect_ratios = self.level_aspect_ratios[0]
        self.reduce_lowest = reduce_lowest
        self.lowest_scale = lowest_scale
        self.clip = clip
        self.scales = [float(s) for s in scales]
        self.steps = None if steps is None else [float(s) for s in steps]
        self.image_size = image_size
        self.register_buffer("boxes", self._build(), persistent=False)

    def box_specs(self, level: int) -> list[tuple[float, float]]:
        """``(scale, aspect_ratio)`` of each box at one location of map ``level``, in output order."""
        s_k, s_next = self.scales[level], self.scales[level + 1]
        if level == 0 and self.reduce_lowest:
            return [(self.lowest_scale, 1.0), (s_k, 2.0), (s_k, 0.5)]
        specs = [(s_k, 1.0)]
        for a in self.level_aspect_ratios[level]:
            specs += [(s_k, a), (s_k, 1.0 / a)]
        specs.append((math.sqrt(s_k * s_next), 1.0))
        return specs

    def cells_per_unit(self, level: int) -> tuple[float, float]:
        """``(fy, fx)`` of map ``level``: its box centres lie at ``((i + 0.5) / fx, (j + 0.5) / fy)``.

        The map's own size (SSD paper 2.2), or ``S / step`` with explicit steps (the SSD300 reference: 38 cells of
        step 8 do not tile 300 exactly).
        """
        h, w = self.feature_sizes[level]
        return (h, w) if self.steps is None else (self.image_size / self.steps[level],) * 2

    @property
    def boxes_per_location(self) -> list[int]:
        return [len(self.box_specs(level)) for level in range(len(self.feature_sizes))]

    @property
    def boxes_per_level(self) -> list[int]:
        return [h * w * b for (h, w), b in zip(self.feature_sizes, self.boxes_per_location)]

    def _build(self) -> torch.Tensor:
        levels = []
        for level, (h, w) in enumerate(self.feature_sizes):
            specs = torch.tensor(
                [[s * math.sqrt(a), s / math.sqrt(a)] for s, a in self.box_specs(level)], dtype=torch.float64
            )  # (B, 2) as (w, h)
            fy, fx = self.cells_per_unit(level)
            cy = (torch.arange(h, dtype=torch.float64) + 0.5) / fy  # (H,)
            cx = (torch.arange(w, dtype=torch.float64) + 0.5) / fx  # (W,)
            cy, cx = torch.meshgrid(cy, cx, indexing="ij")  # (H, W) each
            centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)  # (H*W, 1, 2)
            b = specs.shape[0]
            boxes = torch.cat([centres.expand(-1, b, 2), specs.expand(h * w, b, 2)], dim=-1)  # (H*W, B, 4)
            levels.append(boxes.reshape(-1, 4))
        boxes = torch.cat(levels)  # (A, 4) cx, cy, w, h
        if self.clip == "size":
            boxes[:, 2:] = boxes[:, 2:].clamp(max=1.0)  # torchvision's DefaultBoxGenerator(clip=True)
        elif self.clip == "image":
            xyxy = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], dim=1).clamp(0, 1)
            boxes = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)
        return boxes.float()

    def xyxy(self) -> torch.Tensor:
        """The boxes as normalized ``(x1, y1, x2, y2)``, shape ``(A, 4)``."""
        centre, size = self.boxes[:, :2], self.boxes[:, 2:]
        return torch.cat([centre - size / 2, centre + size / 2], dim=1)

    def extra_repr(self) -> str:
        return f"feature_sizes={self.feature_sizes}, boxes={self.boxes.shape[0]}, reduce_lowest={self.reduce_lowest}, clip={self.clip}"
