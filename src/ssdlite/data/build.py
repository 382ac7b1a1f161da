"""One entry point for every format: find the format, read and check a split, build the dataset.

Every format-specific step goes through the format's row (:mod:`ssdlite.data.formats`): its module detects it, lists
and reads its splits; this module holds what is the same for all of them (the hold-out split, the checks)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssdlite.data import formats
from ssdlite.data.catalog import Catalog
from ssdlite.data.dataset import DetectionDataset
from ssdlite.data.decode import MAX_PIXELS
from ssdlite.data.problems import DataReport, Problem
from ssdlite.data.usable import usability_problems
from ssdlite.data.voc import IMAGE_SUFFIXES
from ssdlite.errors import DataError

FORMATS = formats.names()  # the public name of the table's choices (ssdlite.data.FORMATS)


def detect_format(path: str | Path) -> str:
    """The format whose ``detect`` is surest of what ``path`` holds (:mod:`ssdlite.data.formats`), or of a file the
    format's ``files`` suffix; ``DataError`` when it is none of them."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        found = formats.for_file(path.suffix)
        if found is None:
            whole = " or ".join(f"a {f.title} {f.files[0]}" for f in formats.FORMATS if f.files)
            raise DataError(f"{path}: expected a dataset folder, {whole} file")
        return found.name
    sureness = {f.name: formats.implementation(f.name).detect(path) for f in formats.FORMATS}
    best = max(sureness.values())
    if best > 0:
        return next(name for name, sure in sureness.items() if sure == best)  # a tie: the first row
    images = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if images:
        raise DataError(
            f"{path}: {len(images)} images and no annotations: a detector trains on boxes, so label the images first "
            "(labelImg saves VOC XML beside them; CVAT and Roboflow export VOC, COCO or YOLO), or, if this is a "
            "dataset's image folder, give the dataset's folder instead"
        )
    *first, last = [f"{f.signs} for {f.title}" for f in formats.FORMATS]
    raise DataError(
        f"{path}: cannot tell the dataset format (expected {', '.join(first)}, or {last}); to read it as one of them, "
        f"pass --format {'|'.join(formats.names())} (format= in Python)"
    )


# The share of the training images held out for validation when a dataset has no validation split.
HOLD_OUT = 0.2


def has_split(path: Path, format: str, split: str) -> bool:
    """Whether the dataset at ``path`` defines ``split`` (``val`` also as ``valid`` or ``validation``)."""
    return formats.implementation(format).has_split(path, split)


def read_split(path: Path, format: str, split: str | None, classes: list[str] | None = None, max_pixels: int = MAX_PIXELS) -> Catalog:
    """One split as the dataset defines it (None: every sample), without :func:`held_out_split`: what ``ssdlite data
    check`` reads, so that it checks every file once."""
    return formats.implementation(format).read(path, split, classes, max_pixels)


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
    """Splits to check when none is named: the format's ``splits`` (VOC: every annotation once, ``[None]``; COCO and
    YOLO each split they have); a file given as the dataset is read whole."""
    path = Path(path)
    format = format or detect_format(path)
    return [None] if path.is_file() else formats.implementation(format).splits(path)
