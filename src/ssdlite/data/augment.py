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
- ``fine``: for classes told apart by small marks (a die's pips, a card's index, a chess piece's crown): a crop
  that may cut an object may also cut away the mark that names its class, and zoom-out shrinks the mark below
  what the network resolves, so crops here only zoom in around *all* the boxes (every object stays whole), with
  flips and a brightness/contrast jitter that leaves hue alone (colour can be the class: white and black pieces).
- ``mosaic``: four training images in one (YOLOv4, Bochkovskiy et al. 2020, section 3.3 "Mosaic"): more objects
  and contexts per image and objects cut at the tiles' edges, for small datasets. Half the samples are mosaics
  (:class:`Mosaic`, a dataset wrapper: it needs other samples), the other half ``ssdlite``'s.
- ``none``: resize only, as for evaluation.

Work is done on uint8 until the final ``ToDtype``. Two steps run after the resize, where they cost
``size**2`` pixels instead of up to ``16 HW`` after a 4x zoom-out: the flip (it commutes exactly with
resizing) and the photometric distortion (per-pixel, so it commutes with resizing up to interpolation;
the zoomed-out border is distorted with the image instead of staying exactly the mean). Measured while
writing this on raccoon at 320, one thread: about 100 images/s against 55 in the paper's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import math

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torch.utils.data import Dataset
from torchvision.transforms.v2 import get_bounding_boxes, query_size

PRESETS = ("ssd", "ssdlite", "fine", "mosaic", "none")
#: The presets that are transforms of one image (``mosaic`` is a dataset wrapper, :class:`Mosaic`).
IMAGE_PRESETS = tuple(p for p in PRESETS if p != "mosaic")
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


class CropAroundBoxes(v2.Transform):
    """A random crop that contains every box whole: each side drawn uniformly between the image's edge and the
    nearest box edge. A zoom-in that never cuts an object (no-op when the boxes span the image)."""

    def make_params(self, flat_inputs: list) -> dict:
        height, width = query_size(flat_inputs)
        boxes = get_bounding_boxes(flat_inputs)
        xyxy = F.convert_bounding_box_format(boxes.as_subclass(torch.Tensor), boxes.format, tv_tensors.BoundingBoxFormat.XYXY)
        xyxy = xyxy.reshape(-1, 4)  # (M, 4)
        if len(xyxy) == 0:
            return {}
        x1, y1 = (float(v) for v in xyxy[:, :2].min(dim=0).values.clamp(min=0))
        x2, y2 = float(xyxy[:, 2].max().clamp(max=width)), float(xyxy[:, 3].max().clamp(max=height))
        r = torch.rand(4, dtype=torch.float64).tolist()
        left, top = int(x1 * r[0]), int(y1 * r[1])
        right, bottom = int(math.ceil(x2 + (width - x2) * r[2])), int(math.ceil(y2 + (height - y2) * r[3]))
        if right - left < 2 or bottom - top < 2:
            return {}
        return {"top": top, "left": left, "height": bottom - top, "width": right - left}

    def transform(self, inpt, params: dict):
        if not params:
            return inpt
        return self._call_kernel(F.crop, inpt, **params)


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
    """The training augmentation ``preset`` (one of :data:`PRESETS`) of one image at ``size x size``.

    ``mosaic`` mixes samples, so it is not a per-image transform: wrap the split in :class:`Mosaic`.

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
    elif preset == "fine":
        steps = [
            CropAroundBoxes(),
            v2.RandomHorizontalFlip(p=0.5),
            *_finish(size),
            v2.RandomApply([v2.ColorJitter(brightness=0.2, contrast=0.2)], p=0.5),
        ]
    elif preset == "none":
        steps = _finish(size)
    elif preset == "mosaic":
        raise ValueError("the mosaic preset mixes samples: wrap the untransformed split in Mosaic(dataset, size, mean_fill)")
    else:
        raise ValueError(f"unknown augmentation preset {preset!r}; expected one of {', '.join(PRESETS)}")
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True)])


def eval_transforms(size: int | None) -> v2.Compose:
    """Evaluation: resize to ``size x size`` (None keeps the original size; the model resizes itself),
    then float32 ``[0, 1]``. ``target["orig_size"]`` keeps the original ``(H, W)`` for mapping back."""
    # No SanitizeBoundingBoxes: evaluation must never lose a ground-truth box, however small.
    steps = [] if size is None else [v2.Resize((size, size), antialias=True)]
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True)])


class Mosaic(Dataset):
    """Training samples of which a share ``p`` are mosaics of four images (YOLOv4, section 3.3).

    A mosaic: a centre ``(xc, yc)`` drawn in the middle half of a ``2S x 2S`` canvas (``S`` the input size), the
    sample's image and three drawn at random each resized to a longer side of ``S`` (aspect kept) and placed
    with one corner at the centre (top-left, top-right, bottom-left, bottom-right), then the canvas's central
    ``S x S`` window is the training image: objects at about the scale a plain resize gives them, cut where
    the tiles and the window cut them. A box keeping under :attr:`MIN_KEPT` of its area is dropped (a sliver
    of an object would be taught as the whole object). The other samples get ``single`` (``ssdlite``'s steps).
    Draws come from the global generators, which the loader seeds per sample, so the epoch is reproducible.

    Args:
        dataset: the split **without transforms** (uint8 images, boxes in pixels); its attributes (``classes``,
            ``get_annotation``, ``load_failures``, ...) are this dataset's.
        size: the model's input side ``S``.
        mean_fill: RGB in ``[0, 1]`` for the canvas outside the tiles (the normalization mean: zero at the input).
    """

    MIN_KEPT = 0.25

    def __init__(self, dataset: Dataset, size: int, mean_fill: Sequence[float], p: float = 0.5) -> None:
        self.dataset, self.size, self.p = dataset, size, p
        self.fill = torch.tensor([int(round(255 * float(c))) for c in mean_fill], dtype=torch.uint8).view(3, 1, 1)
        self.single = train_transforms("ssdlite", size, mean_fill)
        self.finish = v2.Compose([
            v2.RandomHorizontalFlip(p=0.5),
            v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=target_fields),
            v2.ToDtype(torch.float32, scale=True),
        ])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        if float(torch.rand(())) >= self.p:
            return self.single(image, target)
        others = torch.randint(len(self.dataset), (3,)).tolist()
        return self.finish(*self.compose([(image, target), *(self.dataset[i] for i in others)]))

    def compose(self, pieces: list[tuple]) -> tuple[tv_tensors.Image, dict]:
        """Four ``(image, target)`` pairs (uint8, pixels) -> one ``(3, S, S)`` uint8 image and its target."""
        s = self.size
        canvas = self.fill.expand(3, s, s).clone()  # (3, S, S)
        xc, yc = (int(v) for v in torch.randint(s // 2, 3 * s // 2 + 1, (2,)))
        boxes, fields = [], {key: [] for key in ("labels", "difficult", "iscrowd")}
        for k, (image, target) in enumerate(pieces):
            h, w = image.shape[-2:]
            scale = s / max(h, w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            tile = F.resize(image.as_subclass(torch.Tensor), [nh, nw], antialias=True)  # (3, nh, nw)
            # The tile's top-left corner on the 2S canvas, then on the central window (origin S/2).
            x0 = (xc - nw if k in (0, 2) else xc) - s // 2
            y0 = (yc - nh if k in (0, 1) else yc) - s // 2
            cx1, cy1, cx2, cy2 = max(x0, 0), max(y0, 0), min(x0 + nw, s), min(y0 + nh, s)
            if cx2 <= cx1 or cy2 <= cy1:
                continue
            canvas[:, cy1:cy2, cx1:cx2] = tile[:, cy1 - y0 : cy2 - y0, cx1 - x0 : cx2 - x0]
            b = target["boxes"].as_subclass(torch.Tensor).reshape(-1, 4) * scale + torch.tensor([x0, y0, x0, y0])  # (M, 4)
            clipped = torch.stack([b[:, 0].clamp(cx1, cx2), b[:, 1].clamp(cy1, cy2), b[:, 2].clamp(cx1, cx2), b[:, 3].clamp(cy1, cy2)], 1)
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            kept = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
            keep = kept >= self.MIN_KEPT * area.clamp(min=1e-6)
            boxes.append(clipped[keep])
            for key in fields:
                fields[key].append(target[key][keep])
        first = pieces[0][1]
        out = {
            "boxes": tv_tensors.BoundingBoxes(torch.cat(boxes) if boxes else torch.zeros(0, 4), format="XYXY", canvas_size=(s, s)),
            **{key: torch.cat(v) if v else torch.zeros(0, dtype=first[key].dtype) for key, v in fields.items()},
            "image_id": first["image_id"],
            "orig_size": first["orig_size"],
        }
        return tv_tensors.Image(canvas), out

