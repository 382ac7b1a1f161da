"""Datasets (Pascal VOC, COCO, YOLO, synthetic shapes), checks, SSD augmentation and loading.

The entry points the training engine and the CLI use:

- :func:`build_dataset` reads and checks one split of a VOC, COCO or YOLO dataset;
- :func:`train_transforms` / :func:`eval_transforms` build the augmentation presets;
- :func:`build_loader` makes the ``DataLoader`` of one epoch (order and workers seeded from
  ``(seed, epoch, rank)``, distributed sampling, images stacked by :func:`collate`);
- :class:`SyntheticShapes` and :func:`write_synthetic` are the built-in shapes dataset;
- :func:`check_dataset` is ``ssdlite data check``; :func:`data_summary` is what training prints
  about a dataset's problems before it starts, with the counts its log records.

Item format and class conventions: ``docs/ARCHITECTURE.md`` ("Images and targets").
"""

from ssdlite.data.augment import PRESETS, Mosaic, eval_transforms, train_transforms
from ssdlite.data.build import FORMATS, build_dataset, detect_format, read_catalog
from ssdlite.data.catalog import Catalog, Record
from ssdlite.data.check import check_dataset
from ssdlite.data.coco import read_coco
from ssdlite.data.dataset import DetectionDataset
from ssdlite.data.decode import MAX_PIXELS, ImageError, decode_image
from ssdlite.data.loader import build_loader, collate
from ssdlite.data.problems import KINDS, DataReport, Problem, data_summary
from ssdlite.data.synthetic import SHAPES, SyntheticShapes, write_synthetic
from ssdlite.data.voc import read_voc
from ssdlite.data.yolo import read_yolo

__all__ = [
    "FORMATS",
    "KINDS",
    "MAX_PIXELS",
    "Mosaic",
    "PRESETS",
    "SHAPES",
    "Catalog",
    "DataReport",
    "DetectionDataset",
    "ImageError",
    "Problem",
    "Record",
    "SyntheticShapes",
    "build_dataset",
    "build_loader",
    "check_dataset",
    "collate",
    "data_summary",
    "decode_image",
    "detect_format",
    "eval_transforms",
    "read_catalog",
    "read_coco",
    "read_voc",
    "read_yolo",
    "train_transforms",
    "write_synthetic",
]
