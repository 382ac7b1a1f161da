"""``ssdlite data check``: read every annotation and decode every image of a dataset, collect the problems."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ssdlite.data.build import dataset_splits, detect_format, flag_unusable, has_split, read_catalog, read_split
from ssdlite.data.dataset import DetectionDataset
from ssdlite.data.decode import MAX_PIXELS
from ssdlite.data.problems import DataReport, Problem
from ssdlite.data.usable import usability_problems


def check_dataset(
    path: str | Path,
    format: str | None = None,
    split: str | None = None,
    classes: list[str] | None = None,
    max_pixels: int = MAX_PIXELS,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> list[DataReport]:
    """Run every check training runs, plus decoding every image, and return one report per split.

    Args:
        path, format, classes, max_pixels: as for :func:`ssdlite.data.build_dataset`.
        split: the split to check; None checks them all (VOC: every annotation once).
        progress: ``progress(description, total)`` returns a callable invoked after each decoded image.

    A report's ``ok(strict)`` is False when a sample (or the dataset) would be unusable; with ``strict``
    also when anything was fixed. Layout errors (not a dataset at all) raise ``DataError``.
    """
    reports = []
    for name in [split] if split is not None else dataset_splits(path, format):
        # A named split is read as training reads it (held out where the dataset has no val split); the
        # whole check reads each of the dataset's own splits, so every file is checked once.
        if split is not None:
            catalog = read_catalog(path, format, name, classes, max_pixels, hold_out=True)
        else:
            fmt = format or detect_format(path)
            catalog = flag_unusable(read_split(Path(path), fmt, name, classes, max_pixels), Path(path))
            if name is None:
                # VOC is read whole, once; a split of it without a usable box is still refused by every
                # command that reads that split, so it fails the check too (its XML parsed again, no image decoded).
                catalog.report.extend(split_usability(Path(path), fmt, classes, max_pixels))
        dataset = DetectionDataset(catalog, keep_difficult=True, max_pixels=max_pixels)
        tick = progress(f"decoding {catalog.report.source}", len(dataset)) if progress is not None else None
        dataset.check_images(tick)
        reports.append(dataset.report)
    return reports


def split_usability(path: Path, format: str, classes: list[str] | None, max_pixels: int) -> list[Problem]:
    """``no_samples`` / ``no_boxes`` of each split the dataset defines (``train``, ``val``, ``test``)."""
    if not path.is_dir():
        return []
    problems = []
    for split in ("train", "val", "test"):
        if has_split(path, format, split):
            part = read_split(path, format, split, classes, max_pixels)
            problems += usability_problems(part, path)
    return problems
