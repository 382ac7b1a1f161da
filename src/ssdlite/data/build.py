"""One entry point for every format: find the format, read and check a split, build the dataset."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssdlite.data.catalog import Catalog, split_names
from ssdlite.data.coco import read_coco
from ssdlite.data.dataset import DetectionDataset
from ssdlite.data.decode import MAX_PIXELS
from ssdlite.data.problems import DataReport, Problem
from ssdlite.data.usable import usability_problems
from ssdlite.data.voc import IMAGE_SUFFIXES, read_voc, voc_has_split, voc_layout
from ssdlite.data.yolo import darknet_split, find_yolo_yaml, is_flat_yolo, read_darknet_data, read_yolo, read_yolo_yaml
from ssdlite.errors import DataError

FORMATS = ("voc", "coco", "yolo")


def detect_format(path: str | Path) -> str:
    """``voc``, ``coco`` or ``yolo`` from what ``path`` contains; ``DataError`` when it is none of them."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix == ".json":
            return "coco"
        if path.suffix in (".yaml", ".yml"):
            return "yolo"
        raise DataError(f"{path}: expected a dataset folder, a COCO .json or a YOLO .yaml file")
    if (path / "Annotations").is_dir():
        return "voc"
    if find_yolo_yaml(path) is not None or (path / "obj.data").is_file() or is_flat_yolo(path):
        return "yolo"
    if (path / "images").is_dir() and (path / "labels").is_dir():
        return "yolo"
    if list(path.glob("annotations/*.json")) or list(path.glob("*.json")) or list(path.glob("*/_annotations.coco.json")):
        return "coco"
    if voc_layout(path) is not None:  # labelImg's XML beside the images, Roboflow's VOC split folders
        return "voc"
    images = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if images:
        raise DataError(
            f"{path}: {len(images)} images and no annotations: a detector trains on boxes, so label the images first "
            "(labelImg saves VOC XML beside them; CVAT and Roboflow export VOC, COCO or YOLO), or, if this is a "
            "dataset's image folder, give the dataset's folder instead"
        )
    raise DataError(
        f"{path}: cannot tell the dataset format (expected Annotations/ or .xml files beside the images for VOC, "
        "annotations/*.json for COCO, or data.yaml, obj.data, images/ + labels/, or .txt files and classes.txt "
        "beside the images for YOLO); to read it as one of them, pass --format voc|coco|yolo (format= in Python)"
    )


def coco_annotation_file(root: Path, split: str | None) -> Path:
    """The COCO JSON of ``split`` under ``root``: ``annotations/instances_<split>*.json``,
    ``annotations/<split>.json``, ``<split>.json`` or ``<split>/_annotations.coco.json`` (Roboflow), where
    ``val`` is also found as ``valid`` or ``validation``."""
    if root.is_file():
        return root
    names = split_names(split) if split else ()
    patterns = (
        [p for name in names for p in (f"annotations/instances_{name}*.json", f"annotations/{name}.json", f"{name}.json", f"{name}/_annotations.coco.json")]
        if split
        else ["annotations/*.json", "*.json"]
    )
    for pattern in patterns:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
    present = sorted(
        str(p.relative_to(root)) for p in [*root.glob("annotations/*.json"), *root.glob("*.json"), *root.glob("*/_annotations.coco.json")]
    )
    raise DataError(f"{root}: no COCO annotation file for split {split!r} (JSON files present: {present or 'none'})")


# The share of the training images held out for validation when a dataset has no validation split.
HOLD_OUT = 0.2


def has_split(path: Path, format: str, split: str) -> bool:
    """Whether the dataset at ``path`` defines ``split`` (``val`` also as ``valid`` or ``validation``)."""
    names = split_names(split)
    if format == "voc":
        return voc_has_split(path, split)
    if format == "yolo":
        data_file = find_yolo_yaml(path)
        if data_file is not None:
            return bool(read_yolo_yaml(data_file).get(split))
        if (path / "obj.data").is_file():
            return darknet_split(read_darknet_data(path / "obj.data"), split) is not None
        return any((path / "images" / name).is_dir() or (path / name / "images").is_dir() for name in names)
    try:
        coco_annotation_file(path, split)
    except DataError:
        return False
    return True


def read_split(path: Path, format: str, split: str | None, classes: list[str] | None = None, max_pixels: int = MAX_PIXELS) -> Catalog:
    """One split as the dataset defines it (None: every sample), without :func:`held_out_split`: what ``ssdlite data
    check`` reads, so that it checks every file once."""
    if format == "voc":
        return read_voc(path, split, classes, max_pixels)
    if format == "coco":
        return read_coco(coco_annotation_file(path, split), None, classes, max_pixels, split=split)
    if format == "yolo":
        return read_yolo(path, split, classes)
    raise DataError(f"unknown dataset format {format!r}; expected one of {', '.join(FORMATS)}")


def held_out_split(catalog: Catalog, split: str, of: str) -> Catalog:
    """``split`` (``train`` or ``val``) of a dataset without a validation split: ``val`` is
    :data:`HOLD_OUT` of ``catalog``'s samples (at least one), ``train`` the others.

    The held-out samples are those whose image file names come first in SHA-1 order: no state and no seed,
    so training, ``eval``, ``quantize`` and the exports' ``--val`` all see the same split of the same files,
    and adding images moves few of the old ones across.
    """
    records = catalog.records
    if len(records) < 2:
        raise DataError(
            f"{catalog.source}: {len(records)} usable sample(s) and no validation split: nothing to hold out for "
            "validation; add images, or train without validation (--val-split '')"
        )
    count = max(1, round(HOLD_OUT * len(records)))
    ranked = sorted(range(len(records)), key=lambda i: hashlib.sha1(records[i].image_path.name.encode()).hexdigest())
    held = set(ranked[:count])
    part = [r for i, r in enumerate(records) if (i in held) == (split == "val")]
    other = {r.source for i, r in enumerate(records) if (i in held) != (split == "val")}
    old = catalog.report
    # A usable sample's problems go with its part; the rest (the class list, unusable samples) with both.
    report = DataReport(f"{old.source}, {split} part", problems=[p for p in old.problems if p.file not in other])
    report.num_samples = len(part) + len(report.unusable_files())
    detail = (
        f"no validation split: 'val' is {count} of the {len(records)} usable images of {of} ({HOLD_OUT:.0%}, the first "
        f"file names in SHA-1 order), 'train' the other {len(records) - count}"
    )
    report.add(Problem(old.source, "split_held_out", detail))
    return Catalog(catalog.source, part, catalog.classes, catalog.category_ids, report)


def read_catalog(
    path: str | Path,
    format: str | None = None,
    split: str | None = "train",
    classes: list[str] | None = None,
    max_pixels: int = MAX_PIXELS,
    hold_out: bool = False,
) -> Catalog:
    """Read and check the annotations of one split (no image decoded); see :func:`build_dataset`.

    With ``hold_out`` (what the command line does), a dataset folder without a validation split (no
    ``ImageSets/Main/val.txt`` or ``val/`` folder, no YOLO ``val`` entry or folder, no COCO ``val`` file) gives ``train`` and
    ``val`` by :func:`held_out_split` from its ``train`` split, or from every sample when it has no splits at
    all, so that training never validates on the images it trains on. A COCO JSON file given as ``path`` is
    read whole for any split.
    """
    path = Path(path)
    format = format or detect_format(path)
    if hold_out and split in ("train", "val") and path.is_dir() and not has_split(path, format, "val"):
        source = "train" if has_split(path, format, "train") else None
        whole = read_split(path, format, source, classes, max_pixels)
        catalog = held_out_split(whole, split, f"the '{source}' split" if source else "the dataset")
    else:
        catalog = read_split(path, format, split, classes, max_pixels)
    return flag_unusable(catalog, path)


def flag_unusable(catalog: Catalog, path: Path) -> Catalog:
    """Add ``no_samples`` or ``no_boxes`` (fatal) to ``catalog``'s report when the split cannot be used
    (:func:`ssdlite.data.usable.usability_problems`); returns ``catalog``."""
    catalog.report.extend(usability_problems(catalog, path if path.is_dir() else path.parent))
    return catalog


def raise_if_unusable(catalog: Catalog, strict: bool = False) -> None:
    """``DataError`` for fatal problems (unknown classes, a bad class list, no usable sample or box, as
    :func:`read_catalog` found them), and with ``strict`` for any warning or skipped sample; the message
    lists each problem."""
    report = catalog.report
    failures = report.failures(strict) if strict else [p for p in report.problems if p.severity == "fatal"]
    if not failures:
        return
    lines = [p.line() for p in failures]
    shown = lines[:20] + ([f"... and {len(lines) - 20} more"] if len(lines) > 20 else [])
    raise DataError(f"{catalog.source}: cannot be used:\n  " + "\n  ".join(shown))


def build_dataset(
    path: str | Path,
    format: str | None = None,
    split: str | None = "train",
    transforms: Callable[[Any, dict], tuple[Any, dict]] | None = None,
    keep_difficult: bool = False,
    classes: list[str] | None = None,
    strict: bool = False,
    max_pixels: int = MAX_PIXELS,
    hold_out: bool = False,
) -> DetectionDataset:
    """Read, check and wrap one split of a VOC, COCO or YOLO dataset.

    Args:
        path: dataset folder (VOC root, COCO root, YOLO root), a COCO ``.json`` or a YOLO ``.yaml``.
        format: ``"voc"``, ``"coco"``, ``"yolo"`` or None to detect it (:func:`detect_format`).
        split: ``"train"``, ``"val"``, ...; VOC without split files and None read every annotation.
        transforms: callable on ``(image, target)``: :func:`~ssdlite.data.train_transforms` or
            :func:`~ssdlite.data.eval_transforms`; None yields uint8 images at the original size.
        keep_difficult: keep VOC ``difficult`` and COCO ``iscrowd`` boxes (flagged) for evaluation.
        classes: foreground class names (VOC: instead of ``labels.txt``; YOLO: instead of ``data.yaml``'s
            names; COCO: checked against the categories).
        strict: refuse the dataset for any warning or unusable sample, not only for fatal problems.
        max_pixels: per-image decompression-bomb limit.
        hold_out: where the dataset has no validation split, ``train`` and ``val`` are the two parts of
            :func:`held_out_split` (every ``ssdlite`` command reads the user's data this way).

    Returns:
        a :class:`~ssdlite.data.dataset.DetectionDataset`; its ``report`` lists the problems found, each
        fixed or skipped sample once.

    Raises:
        DataError: unknown class names (listed), a class list with background or duplicates, no usable
            sample, a layout that is not the format, or with ``strict`` any problem above a note.
    """
    catalog = read_catalog(path, format, split, classes, max_pixels, hold_out)
    raise_if_unusable(catalog, strict)
    return DetectionDataset(catalog, transforms=transforms, keep_difficult=keep_difficult, max_pixels=max_pixels)


def dataset_splits(path: str | Path, format: str | None = None) -> list[str | None]:
    """Splits to check when none is named: VOC reads every annotation once (``[None]``), COCO and YOLO
    each split they have (COCO: the JSON itself when ``path`` is a file)."""
    path = Path(path)
    format = format or detect_format(path)
    if format == "voc" or path.is_file():
        return [None]
    if format == "yolo":
        data_file = find_yolo_yaml(path)
        if data_file is not None:
            data = read_yolo_yaml(data_file)
            return [s for s in ("train", "val", "test") if data.get(s)] or ["train"]
        return [s for s in ("train", "val", "test") if has_split(path, "yolo", s)] or [None]
    splits = []
    for split in ("train", "val", "test"):
        try:
            coco_annotation_file(path, split)
            splits.append(split)
        except DataError:
            continue
    return splits or [None]
