"""What a format reader hands to the dataset: checked annotations, no pixels.

A :class:`Catalog` is the result of reading one split's annotations (VOC XML, COCO JSON, YOLO txt):
one :class:`Record` per usable sample with its boxes already checked (clipped or dropped, see
:mod:`ssdlite.data.box_checks`), the class list, and a :class:`~ssdlite.data.problems.DataReport` of
what was wrong. Samples with an ``error`` problem are not in ``records``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssdlite.data.problems import DataReport

# Other names exporters give a split's folder or file: Roboflow writes valid/, Hugging Face and others validation.
SPLIT_ALIASES = {"val": ("val", "valid", "validation")}


def split_names(split: str) -> tuple[str, ...]:
    """The names ``split`` may have on disk, the usual one first (``val``: also ``valid``, ``validation``)."""
    return SPLIT_ALIASES.get(split, (split,))


@dataclass
class Record:
    """One sample's annotation.

    ``boxes`` are ``(M, 4)`` float32 xyxy in pixels of the recorded ``size`` ``(H, W)``, or normalized to
    ``[0, 1]`` when ``size`` is None (YOLO: scaled by the decoded image's size). ``labels`` int64
    ``(M,)`` in ``1..K``; ``difficult`` and ``iscrowd`` bool ``(M,)``. ``source`` is the annotation file
    the problems name. ``area`` float64 ``(M,)`` is the area a COCO file gives each object (the
    segmentation's, which COCO's small/medium/large split reads), None for formats without one.
    """

    image_path: Path
    image_id: int
    source: str
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    iscrowd: np.ndarray
    size: tuple[int, int] | None
    area: np.ndarray | None = None


@dataclass
class Catalog:
    """A split's usable records, its classes (label ``i`` is ``classes[i - 1]``, written to COCO results
    as ``category_ids[i - 1]``) and the report of the problems found reading it."""

    source: str
    records: list[Record]
    classes: list[str]
    category_ids: list[int]
    report: DataReport


def empty_annotation() -> dict[str, np.ndarray]:
    """Arrays of a record with no objects."""
    return {
        "boxes": np.zeros((0, 4), dtype=np.float32),
        "labels": np.zeros((0,), dtype=np.int64),
        "difficult": np.zeros((0,), dtype=bool),
        "iscrowd": np.zeros((0,), dtype=bool),
    }
