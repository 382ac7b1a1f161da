"""The dataset formats: one row each, read by :mod:`ssdlite.data.build` (detection, splits, reading), the training
configuration's ``format`` choices and every command's ``--format``.

This module is the table and nothing else: it imports none of the readers itself (the ``ssdlite.data`` package's
``__init__`` does). A row names the module that reads the format (``ssdlite.data.<module>``,
imported by :func:`implementation`); that module defines

- ``detect(folder) -> int``: how sure it is that ``folder`` holds this format (0: not at all; see the ranks below);
- ``has_split(folder, split) -> bool``: whether the dataset defines ``split`` (``val`` also as ``valid``/``validation``);
- ``splits(folder) -> list[str | None]``: the splits ``ssdlite data check`` reads when none is named (None: every
  annotation once);
- ``read(path, split, classes, max_pixels) -> Catalog``: one split as the dataset defines it (None: every sample).

A file given as the dataset is read by the row whose ``files`` has its suffix.

Adding a format: write ``data/<module>.py`` with those four functions, add its row below; ``tests/data/
test_dataset_formats.py`` then reads a small dataset of every row (and the ``--format`` choices follow the rows).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from ssdlite.errors import DataError

# How sure a format's ``detect`` is: the surest format wins, ties go to the first row. A marker only this format
# writes comes before annotation files of its kind in the usual places, which come before loose files beside the
# images (a YOLO folder with a stray .json is YOLO; a folder of COCO JSONs and of images with XML is COCO).
OWN_LAYOUT = 3  # VOC's Annotations/; YOLO's data.yaml, obj.data, images/ + labels/, classes.txt beside the labels
ANNOTATION_FILES = 2  # COCO's annotations/*.json, *.json, <split>/_annotations.coco.json
LOOSE_FILES = 1  # VOC's XML beside the images (labelImg), in split folders (Roboflow)


@dataclass(frozen=True)
class Format:
    """One dataset format: its name, where its reader lives, and how a person recognises it."""

    name: str  # --format, DataConfig.format
    title: str  # for messages: "VOC"
    module: str  # its module in ssdlite.data (detect, has_split, splits, read), imported when a dataset is read
    signs: str  # what detection looks for, as the error for an unknown folder lists it
    files: tuple[str, ...] = ()  # suffixes of a file that is a whole dataset of this format (a COCO .json)


FORMATS: tuple[Format, ...] = (
    Format("voc", "VOC", "voc", "Annotations/ or .xml files beside the images"),
    Format("coco", "COCO", "coco", "annotations/*.json", files=(".json",)),
    Format("yolo", "YOLO", "yolo", "data.yaml, obj.data, images/ + labels/, or .txt files and classes.txt beside the images",
           files=(".yaml", ".yml")),
)


def names() -> tuple[str, ...]:
    """Every format's name: the ``--format`` choices."""
    return tuple(f.name for f in FORMATS)


def get(name: str) -> Format:
    """The row called ``name``; ``DataError`` listing the rows for any other."""
    for row in FORMATS:
        if row.name == name:
            return row
    raise DataError(f"unknown dataset format {name!r}; expected one of {', '.join(names())}")


def for_file(suffix: str) -> Format | None:
    """The format of a file with ``suffix`` given as the dataset (``.json``: COCO), or None."""
    return next((f for f in FORMATS if suffix in f.files), None)


def implementation(name: str) -> ModuleType:
    """The module that reads format ``name``."""
    return importlib.import_module(f"ssdlite.data.{get(name).module}")
