"""Augmentation presets on ``tv_tensors`` with ``torchvision.transforms.v2``; plain functions, no registry.

Every preset takes and returns ``(image, target)``: ``image`` a uint8 ``tv_tensors.Image`` ``(3, H, W)``
in, float32 ``[0, 1]`` ``(3, size, size)`` out; ``target["boxes"]`` follows every geometric step, and
``labels``, ``difficult`` and ``iscrowd`` are filtered together with their boxes by
``SanitizeBoundingBoxes`` so they stay aligned.

- ``ssd``: the SSD paper's pipeline (Liu et al. 2016, section 2.2 "Data augmentation", and its
  Caffe implementation): photometric distortion, zoom-out ("expansion") up to 4x filled with the
  mean, min-IoU random crop with a choice of {none, 0.1, 0.3, 0.5, 0.7, 0.9}, horizontal flip,
  resize to ``size x size``, box sanitizing.
- ``ssdlite``: torchvision's lighter recipe for its SSDlite320 (IoU crop with torchvision's default
  options, which add "any patch" (0.0) to SSD's, + flip; no zoom-out, no photometric distortion).
- ``none``: resize only, as for evaluation.

Work is done on uint8 until the final ``ToDtype``. Two steps run after the resize, where they cost
``size**2`` pixels instead of up to ``16 HW`` after a 4x zoom-out: the flip (it commutes exactly with
resizing) and the photometric distortion (per-pixel, so it commutes with resizing up to interpolation;
the zoomed-out border is distorted with the image instead of staying exactly the mean). Measured while
writing this on raccoon at 320, one thread: about 100 images/s against 55 in the paper's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2 import get_bounding_boxes, query_size

PRESETS = ("ssd", "ssdlite", "none")
# SSD's min-IoU crop choices; 1.0 is torchvision's code for "keep the whole image".
SSD_CROP_CHOICES = (1.0, 0.1, 0.3, 0.5, 0.7, 0.9)


class MinIoURandomCrop(v2.RandomIoUCrop):
    """``v2.RandomIoUCrop`` (SSD's min-IoU crop) with its search vectorized.

    Same sampling as torchvision: pick a minimum IoU from ``sampler_options`` (1.0 or more keeps the image),
    then up to ``trials`` crops of side ``[min_scale, max_scale]`` of the image with aspect ratio in
    ``[min_aspect_ratio, max_aspect_ratio]``; the first crop that contains at least one box centre and
    overlaps one of those boxes with IoU >= the minimum wins, else another minimum is drawn. All trials
    are drawn at once (one ``torch.rand`` call, so ``torch.manual_seed`` governs it) and tested with
    numpy: torchvision's loop of small tensor ops cost 15 ms an image on the synthetic shapes after a
    zoom-out, this costs well under 1 ms.
    """

    def make_params(self, flat_inputs: list) -> dict:
        orig_h, orig_w = query_size(flat_inputs)
        boxes = get_bounding_boxes(flat_inputs)
        xyxy = F.convert_bounding_box_format(boxes.as_subclass(torch.Tensor), boxes.format, tv_tensors.BoundingBoxFormat.XYXY)
        xyxy = xyxy.reshape(-1, 4).double().numpy()  # (M, 4)
        cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2  # (M,)
        areas = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])  # (M,)
        while True:
            min_iou = self.options[int(torch.randint(len(self.options), (1,)))]
            if min_iou >= 1.0:
                return {}
            r = torch.rand(self.trials, 4, dtype=torch.float64).numpy()  # (T, 4)
            scale = self.min_scale + (self.max_scale - self.min_scale) * r[:, :2]
            new_w, new_h = (orig_w * scale[:, 0]).astype(np.int64), (orig_h * scale[:, 1]).astype(np.int64)  # (T,)
            left = ((orig_w - new_w) * r[:, 2]).astype(np.int64)
            top = ((orig_h - new_h) * r[:, 3]).astype(np.int64)
            right, bottom = left + new_w, top + new_h
            with np.errstate(divide="ignore", invalid="ignore"):
                aspect = new_w / new_h
            ok = (new_w > 0) & (new_h > 0) & (self.min_aspect_ratio <= aspect) & (aspect <= self.max_aspect_ratio)
            within = (left[:, None] < cx) & (cx < right[:, None]) & (top[:, None] < cy) & (cy < bottom[:, None])  # (T, M)
            iw = np.clip(np.minimum(right[:, None], xyxy[:, 2]) - np.maximum(left[:, None], xyxy[:, 0]), 0, None)
            ih = np.clip(np.minimum(bottom[:, None], xyxy[:, 3]) - np.maximum(top[:, None], xyxy[:, 1]), 0, None)
            inter = iw * ih  # (T, M)
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = inter / ((new_w * new_h)[:, None] + areas - inter)  # (T, M)
            best = np.where(within, iou, -1.0).max(axis=1, initial=-1.0)  # (T,)
            ok &= within.any(axis=1) & (best >= min_iou)
            if ok.any():
                t = int(np.argmax(ok))
                return {
                    "top": int(top[t]),
                    "left": int(left[t]),
                    "height": int(new_h[t]),
                    "width": int(new_w[t]),
                    "is_within_crop_area": torch.from_numpy(within[t]).reshape(boxes.shape[:-1]),
                }


def target_fields(inputs) -> tuple[torch.Tensor, ...]:
    """Per-box tensors of a ``(image, target)`` sample that must be filtered with the boxes."""
    target = inputs[1]
    return tuple(target[key] for key in ("labels", "difficult", "iscrowd") if key in target)


def _finish(size: int) -> list[v2.Transform]:
    return [
        v2.Resize((size, size), antialias=True),
        v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=target_fields),
    ]


def train_transforms(preset: str, size: int, mean_fill: Sequence[float]) -> v2.Compose:
    """The training augmentation ``preset`` (``"ssd"``, ``"ssdlite"`` or ``"none"``) at ``size x size``.

    Args:
        preset: see the module docstring.
        size: the model's input side; output images are ``(3, size, size)`` float32 in ``[0, 1]``.
        mean_fill: RGB in ``[0, 1]`` that fills the zoom-out canvas: the model's normalization mean
            (``ModelConfig.resolved().image_mean``), so the canvas is zero at the network input.
    """
    if preset == "ssd":
        fill = tuple(int(round(255 * float(c))) for c in mean_fill)
        steps = [
            v2.RandomZoomOut(fill={tv_tensors.Image: fill, "others": 0}, side_range=(1.0, 4.0), p=0.5),
            MinIoURandomCrop(sampler_options=list(SSD_CROP_CHOICES)),
            v2.Resize((size, size), antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=target_fields),
            v2.RandomPhotometricDistort(p=0.5),
        ]
    elif preset == "ssdlite":
        steps = [MinIoURandomCrop(), v2.RandomHorizontalFlip(p=0.5), *_finish(size)]
    elif preset == "none":
        steps = _finish(size)
    else:
        raise ValueError(f"unknown augmentation preset {preset!r}; expected one of {', '.join(PRESETS)}")
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True)])


def eval_transforms(size: int | None) -> v2.Compose:
    """Evaluation: resize to ``size x size`` (None keeps the original size; the model resizes itself),
    then float32 ``[0, 1]``. ``target["orig_size"]`` keeps the original ``(H, W)`` for mapping back."""
    # No SanitizeBoundingBoxes: evaluation must never lose a ground-truth box, however small.
    steps = [] if size is None else [v2.Resize((size, size), antialias=True)]
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True)])
