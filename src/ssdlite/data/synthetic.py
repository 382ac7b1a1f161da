"""The built-in synthetic dataset: coloured shapes on noisy, textured backgrounds.

Five classes (:data:`SHAPES`) that differ only in shape: colour is random, so a detector must learn
the shape. Each image holds 0 to 8 objects of size 8% to about 50% of the image side (log-uniform,
never under 8% on either side), aspect ratio 0.7 to 1.4, with some overlap (no box more than 30%
covered by another, so none is hidden); boxes fit the drawn shapes tightly. Backgrounds are a colour gradient plus low-frequency blotches, faint lines and pixel noise.

Everything derives from ``seed``: image ``i`` of split ``s`` uses
``numpy.random.default_rng([seed, s, i])``, so any image can be made alone, in any order, in any
process, and :func:`write_synthetic` with the same arguments writes the same bytes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision import tv_tensors

from ssdlite.data.problems import DataReport
from ssdlite.data.voc import write_voc_annotation
from ssdlite.errors import UserError

SHAPES = ("circle", "square", "triangle", "star", "ring")
SPLITS = ("train", "val")
MAX_OBJECTS = 8
MIN_SIDE, MAX_SIDE = 0.08, 0.5  # box side as a fraction of the image side
MAX_COVERED = 0.3  # no box may be covered more than this by another
JPEG_QUALITY = 90
MARKER = "synthetic.json"


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size, 3)`` float32: gradient + blotches + faint lines (pixel noise comes last, over objects too)."""
    c0, c1 = rng.uniform(40, 215, 3).astype(np.float32), rng.uniform(40, 215, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    t = (np.float32(math.cos(angle)) * ramp[None, :] + np.float32(math.sin(angle)) * ramp[:, None]) + 0.5  # (size, size)
    image = c0 + (c1 - c0) * t[:, :, None]
    cells = rng.normal(0.0, rng.uniform(5, 20), (6, 6, 3)).astype(np.float32)
    for c in range(3):  # low-frequency blotches: a 6x6 grid upsampled smoothly
        image[:, :, c] += np.asarray(Image.fromarray(cells[:, :, c]).resize((size, size), Image.BICUBIC))
    texture = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(texture)
    for _ in range(int(rng.integers(0, 12))):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, size, 4))
        draw.line([x0, y0, x1, y1], fill=int(rng.integers(10, 30)), width=int(rng.integers(1, 3)))
    sign = np.float32(rng.choice([-1.0, 1.0]))
    return image + sign * np.asarray(texture, dtype=np.float32)[:, :, None]


def _star(rng: np.random.Generator) -> np.ndarray:
    """``(10, 2)`` vertices of a five-pointed star with a random rotation, in its own units."""
    rotation = rng.uniform(0, 2 * math.pi / 5)
    inner = rng.uniform(0.38, 0.5)
    angles = rotation + np.arange(10) * math.pi / 5
    radius = np.where(np.arange(10) % 2 == 0, 1.0, inner)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _triangle(rng: np.random.Generator) -> np.ndarray:
    """``(3, 2)`` vertices of an isosceles triangle pointing up, down, left or right."""
    base = np.array([[0.0, 1.0], [1.0, 1.0], [0.5, 0.0]])  # pointing up
    turns = int(rng.integers(0, 4))
    for _ in range(turns):
        base = np.stack([base[:, 1], 1.0 - base[:, 0]], axis=1)  # rotate 90 degrees in the unit square
    return base


def _fit(points: np.ndarray, box: tuple[int, int, int, int]) -> list[tuple[float, float]]:
    """Scale ``points`` so their bounding box is the pixels ``x1..x2-1``, ``y1..y2-1`` of ``box``."""
    x1, y1, x2, y2 = box
    lo, hi = points.min(axis=0), points.max(axis=0)
    unit = (points - lo) / (hi - lo)
    return [(x1 + u * (x2 - 1 - x1), y1 + v * (y2 - 1 - y1)) for u, v in unit]


def _draw_shape(mask: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    x1, y1, x2, y2 = box
    inclusive = [x1, y1, x2 - 1, y2 - 1]  # PIL boxes include their last pixel
    if shape == "circle":
        mask.ellipse(inclusive, fill=255)
    elif shape == "square":
        mask.rectangle(inclusive, fill=255)
    elif shape == "triangle":
        mask.polygon(_fit(_triangle(rng), box), fill=255)
    elif shape == "star":
        mask.polygon(_fit(_star(rng), box), fill=255)
    elif shape == "ring":
        mask.ellipse(inclusive, fill=255)
        inset = rng.uniform(0.25, 0.4) * min(x2 - x1, y2 - y1) / 2
        mask.ellipse([x1 + inset, y1 + inset, x2 - 1 - inset, y2 - 1 - inset], fill=0)


def _place(rng: np.random.Generator, size: int, boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
    """A box of random size and aspect that no existing box covers (or is covered by) more than allowed."""
    for _ in range(30):
        side = math.exp(rng.uniform(math.log(MIN_SIDE), math.log(MAX_SIDE))) * size
        aspect = math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
        w = int(round(min(max(side * math.sqrt(aspect), MIN_SIDE * size), size)))
        h = int(round(min(max(side / math.sqrt(aspect), MIN_SIDE * size), size)))
        x1, y1 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        box = (x1, y1, x1 + w, y1 + h)
        if all(_covered(box, other) <= MAX_COVERED for other in boxes):
            return box
    return None


def _covered(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Largest fraction of either box's area inside the other."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def _colour(rng: np.random.Generator, behind: np.ndarray) -> tuple[int, int, int]:
    """A random colour whose luminance differs from the background under it by at least 60 of 255."""
    weights = np.array([0.299, 0.587, 0.114])
    target = float(behind.mean(axis=(0, 1)) @ weights)
    colour = rng.uniform(0, 255, 3)
    for _ in range(20):
        if abs(float(colour @ weights) - target) >= 60:
            break
        colour = rng.uniform(0, 255, 3)
    else:
        colour = np.full(3, 235.0 if target < 128 else 20.0)
    return tuple(int(c) for c in colour)


def make_shapes_image(seed: int, split_index: int, index: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic sample: ``(image (size, size, 3) uint8, boxes (M, 4) float32 xyxy pixels, labels (M,) int64 1..K)``."""
    rng = np.random.default_rng([seed, split_index, index])
    canvas = _background(rng, size)  # (size, size, 3) float32
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    boxes: list[tuple[int, int, int, int]] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(0, MAX_OBJECTS + 1))):
        box = _place(rng, size, boxes)
        if box is None:
            continue
        label = int(rng.integers(0, len(SHAPES)))
        x1, y1, x2, y2 = box
        mask = Image.new("L", (x2 - x1, y2 - y1), 0)  # drawn in box coordinates, pasted at the box
        _draw_shape(ImageDraw.Draw(mask), SHAPES[label], (0, 0, x2 - x1, y2 - y1), rng)
        image.paste(_colour(rng, canvas[y1:y2, x1:x2]), box, mask)
        boxes.append(box)
        labels.append(label + 1)
    # Uniform pixel noise (std 3 to 12): a quarter of the cost of Gaussian noise, and a detector cannot tell.
    noise = (rng.random((size, size, 3), dtype=np.float32) - np.float32(0.5)) * np.float32(rng.uniform(3, 12) * math.sqrt(12))
    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float32) + noise), 0, 255).astype(np.uint8)
    return pixels, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64)


class SyntheticShapes(torch.utils.data.Dataset):
    """The shapes dataset generated in memory, with the interface of :class:`~ssdlite.data.DetectionDataset`.

    Args:
        num_images: samples in this split.
        size: image side in pixels (square images).
        seed: base seed; the same ``(seed, split, index)`` always gives the same sample.
        split: ``"train"`` or ``"val"``: independent streams from one seed.
        transforms: callable on ``(image, target)`` (e.g. :func:`ssdlite.data.train_transforms`).
        keep_difficult: accepted for symmetry with the file datasets (no synthetic box is difficult).
    """

    def __init__(
        self,
        num_images: int = 1000,
        size: int = 320,
        seed: int = 0,
        split: str = "train",
        transforms: Callable[[Any, dict], tuple[Any, dict]] | None = None,
        keep_difficult: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if size < 32:
            raise ValueError(f"size must be at least 32 pixels, got {size}")
        self.num_images, self.size, self.seed, self.split = num_images, size, seed, split
        self.transforms = transforms
        self.keep_difficult = keep_difficult
        self.classes = list(SHAPES)
        self.category_ids = list(range(1, len(SHAPES) + 1))
        self.report = DataReport(f"synthetic shapes [{split}]", num_samples=num_images)

    def __len__(self) -> int:
        return self.num_images

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image (S, S, 3) uint8, boxes (M, 4) float32 xyxy, labels (M,) int64)`` of sample ``index``."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} samples")
        return make_shapes_image(self.seed, SPLITS.index(self.split), index, self.size)

    def get_annotation(self, index: int) -> dict[str, Any]:
        """Annotation of sample ``index`` (same keys as ``DetectionDataset.get_annotation``; regenerates the sample)."""
        _, boxes, labels = self.sample(index)
        m = len(labels)
        return {
            "boxes": boxes,
            "labels": labels,
            "difficult": np.zeros(m, dtype=bool),
            "iscrowd": np.zeros(m, dtype=bool),
            "image_id": index,
            "height": self.size,
            "width": self.size,
            "file_name": f"{self.split}-{index:06d}.jpg",
        }

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        pixels, boxes, labels = self.sample(index)
        image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1))  # (3, S, S) uint8
        m = len(labels)
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY", canvas_size=(self.size, self.size)),
            "labels": torch.from_numpy(labels),
            "difficult": torch.zeros(m, dtype=torch.bool),
            "iscrowd": torch.zeros(m, dtype=torch.bool),
            "image_id": index,
            "orig_size": torch.tensor([self.size, self.size], dtype=torch.int64),
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def _replaceable(out_dir: Path) -> bool:
    return not out_dir.exists() or (out_dir.is_dir() and (not any(out_dir.iterdir()) or (out_dir / MARKER).is_file()))


def write_synthetic(
    out_dir: str | os.PathLike,
    num_train: int = 1000,
    num_val: int = 200,
    size: int = 320,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write the shapes dataset in Pascal VOC layout and return ``out_dir``.

    Writes ``JPEGImages/<split>-<index>.jpg`` (JPEG quality 90), ``Annotations/<split>-<index>.xml``,
    ``ImageSets/Main/{train,val}.txt``, ``labels.txt`` and ``synthetic.json`` (the arguments). The
    dataset is built in a temporary folder beside ``out_dir`` and renamed into place, so ``out_dir``
    is either complete or absent. An existing ``out_dir`` is replaced only with ``overwrite`` and only
    if it is empty or was written by this function (it has ``synthetic.json``).

    ``progress(n)`` is called after each image with the number written so far.
    """
    out_dir = Path(out_dir)
    if num_train < 0 or num_val < 0:
        raise UserError(f"{out_dir}: image counts must be >= 0, got train={num_train} val={num_val}")
    if size < 32:
        raise UserError(f"{out_dir}: image size must be at least 32 pixels, got {size}")
    if out_dir.exists() and not (overwrite and _replaceable(out_dir)):
        reason = "pass overwrite" if _replaceable(out_dir) else "it is not a synthetic dataset written by ssdlite"
        raise UserError(f"{out_dir}: already exists; not replacing it ({reason})")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (tmp / folder).mkdir(parents=True)
        written = 0
        for split, count in zip(SPLITS, (num_train, num_val)):
            dataset = SyntheticShapes(count, size=size, seed=seed, split=split)
            ids = []
            for index in range(count):
                pixels, boxes, labels = dataset.sample(index)
                sample_id = f"{split}-{index:06d}"
                Image.fromarray(pixels).save(tmp / "JPEGImages" / f"{sample_id}.jpg", quality=JPEG_QUALITY)
                names = [SHAPES[label - 1] for label in labels]
                write_voc_annotation(tmp / "Annotations" / f"{sample_id}.xml", f"{sample_id}.jpg", (size, size), boxes, names)
                ids.append(sample_id)
                written += 1
                if progress is not None:
                    progress(written)
            (tmp / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        (tmp / "labels.txt").write_text("".join(f"{name}\n" for name in SHAPES), encoding="utf-8")
        params = {"generator": "ssdlite synthetic shapes", "num_train": num_train, "num_val": num_val, "size": size, "seed": seed}
        (tmp / MARKER).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
