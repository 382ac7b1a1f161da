"""The detection dataset: checked records in, ``(image, target)`` in the model's format out.

Annotation checks ran when the :class:`~ssdlite.data.catalog.Catalog` was read; what can only be
found by decoding (a corrupt, truncated or oversized image, a size that contradicts the annotation)
is found in ``__getitem__``. Such a sample must not crash an epoch, so the dataset records it and
deterministically returns the next decodable sample instead (``index + 1``, wrapping around). The
record is a per-sample code in a shared-memory tensor, so failures met in ``DataLoader`` workers are
visible to the main process (:meth:`DetectionDataset.load_failures` lists them) and no process tries
the sample again; each failure is also logged once (logger ``ssdlite.data.dataset``) when it happens.

Problems found when reading the annotations are in ``dataset.report``; whoever builds the dataset
prints ``dataset.report.summary()`` once (the CLI commands and the trainer do).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors

from ssdlite.data.catalog import Catalog, Record
from ssdlite.data.decode import MAX_PIXELS, ImageError, decode_image, image_size
from ssdlite.data.problems import DataReport, Problem
from ssdlite.errors import DataError

_log = logging.getLogger(__name__)

# Codes of the shared failure tensor; 0 = not failed (so far).
_FAILURE_KINDS = ("", "image_missing", "image_corrupt", "image_truncated", "image_too_large", "size_mismatch")


class DetectionDataset(torch.utils.data.Dataset):
    """Images and targets of one split.

    Item ``i`` is ``(image, target)``: ``image`` a ``tv_tensors.Image`` uint8 ``(3, H, W)`` RGB at the
    original size (or whatever ``transforms`` makes of it), ``target`` a dict with ``boxes``
    (``tv_tensors.BoundingBoxes`` float32 ``(M, 4)`` XYXY pixels, ``canvas_size=(H, W)``), ``labels``
    int64 ``(M,)`` in ``1..K``, ``difficult`` and ``iscrowd`` bool ``(M,)``, ``image_id`` int and
    ``orig_size`` int64 ``(2,)`` = ``(H, W)``. ``transforms(image, target)`` returns the pair.

    Args:
        catalog: the checked annotations (:func:`ssdlite.data.read_voc`, ``read_coco``, ``read_yolo``).
        transforms: a callable on ``(image, target)``, e.g. :func:`ssdlite.data.train_transforms`.
        keep_difficult: keep ``difficult`` and ``iscrowd`` boxes (evaluation); training drops them.
        max_pixels: decompression-bomb limit per image.

    Attributes:
        classes: foreground names (label ``i`` is ``classes[i - 1]``); ``category_ids`` the ids for COCO results.
        report: the problems found reading the annotations (:class:`~ssdlite.data.problems.DataReport`).
    """

    def __init__(
        self,
        catalog: Catalog,
        transforms: Callable[[Any, dict], tuple[Any, dict]] | None = None,
        keep_difficult: bool = False,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        self.records: list[Record] = catalog.records
        self.classes: list[str] = list(catalog.classes)
        self.category_ids: list[int] = list(catalog.category_ids)
        self.report: DataReport = catalog.report
        self.source = catalog.source
        self.transforms = transforms
        self.keep_difficult = keep_difficult
        self.max_pixels = max_pixels
        # uint8 code per sample, in shared memory so DataLoader workers' writes reach the main process.
        self._failures = torch.zeros(len(self.records), dtype=torch.uint8).share_memory_()
        self._reported: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    def _keep(self, record: Record) -> slice | np.ndarray:
        return slice(None) if self.keep_difficult else ~(record.difficult | record.iscrowd)

    def _arrays(self, record: Record) -> dict[str, np.ndarray]:
        keep = self._keep(record)
        return {
            "boxes": record.boxes[keep],
            "labels": record.labels[keep],
            "difficult": record.difficult[keep],
            "iscrowd": record.iscrowd[keep],
        }

    def get_annotation(self, index: int) -> dict[str, Any]:
        """The annotation of sample ``index`` without decoding its image.

        Returns a dict with ``boxes`` float32 ``(M, 4)`` xyxy original pixels, ``labels``, ``difficult``,
        ``iscrowd``, ``area`` (numpy arrays; difficult/crowd boxes only with ``keep_difficult``),
        ``image_id``, ``height``, ``width`` and ``file_name``. ``area`` float64 ``(M,)`` is what COCO's
        small/medium/large split reads: the file's ``area`` for COCO (a segmentation's area, as
        pycocotools uses it), the box area otherwise. YOLO records have no recorded size: their image
        header is read.
        """
        record = self.records[index]
        arrays = self._arrays(record)
        size = record.size
        if size is None:
            size = image_size(record.image_path, self.max_pixels)
            arrays["boxes"] = arrays["boxes"] * np.array([size[1], size[0], size[1], size[0]], dtype=np.float32)
        if record.area is not None:
            arrays["area"] = record.area[self._keep(record)]
        else:  # float64, as ImageGroundTruth computes a box area, so passing it changes no number
            boxes = arrays["boxes"].astype(np.float64)  # (M, 4)
            arrays["area"] = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (M,)
        arrays = {key: value.copy() for key, value in arrays.items()}
        return {**arrays, "image_id": record.image_id, "height": size[0], "width": size[1], "file_name": str(record.image_path)}

    def load(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        """Decode sample ``index`` without transforms; raises ``ImageError`` if it cannot be used."""
        record = self.records[index]
        image = decode_image(record.image_path, record.size, self.max_pixels)  # (3, H, W) uint8
        height, width = image.shape[-2:]
        # Copies (torch.tensor), never views: a transform or caller writing into a target must not
        # change the annotations every later epoch reads.
        arrays = self._arrays(record)
        boxes = torch.tensor(arrays["boxes"], dtype=torch.float32)  # (M, 4)
        if record.size is None:  # normalized (YOLO) -> pixels of the decoded image
            boxes = boxes * torch.tensor([width, height, width, height], dtype=torch.float32)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor(arrays["labels"], dtype=torch.int64),  # (M,)
            "difficult": torch.tensor(arrays["difficult"], dtype=torch.bool),  # (M,)
            "iscrowd": torch.tensor(arrays["iscrowd"], dtype=torch.bool),  # (M,)
            "image_id": record.image_id,
            "orig_size": torch.tensor([height, width], dtype=torch.int64),
        }
        return image, target

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        n = len(self.records)
        for offset in range(n):
            candidate = (index + offset) % n
            if self._failures[candidate]:
                continue
            try:
                image, target = self.load(candidate)
            except ImageError as err:
                # The shared flag makes every process skip this sample from now on, so this line is
                # printed once per failure for the whole run, whichever worker met it.
                self._failures[candidate] = _FAILURE_KINDS.index(err.kind)
                _log.warning("%s: %s; sample skipped, the next one used instead [%s]", err.path, err.detail, err.kind)
                continue
            if self.transforms is not None:
                image, target = self.transforms(image, target)
            return image, target
        raise DataError(f"{self.source}: none of the {n} images can be decoded (see dataset.load_failures())")

    def load_failures(self, new_only: bool = False) -> list[Problem]:
        """Samples skipped because their image could not be used, in any process so far.

        With ``new_only``, only those not returned by an earlier ``new_only`` call: a trainer calling it
        after each epoch reports every failure exactly once.
        """
        problems = []
        for index in torch.nonzero(self._failures).flatten().tolist():
            if new_only and index in self._reported:
                continue
            self._reported.add(index)
            kind = _FAILURE_KINDS[int(self._failures[index])]
            problems.append(Problem(str(self.records[index].image_path), kind, "found when loading"))
        return problems

    def check_images(self, progress: Callable[[int], None] | None = None) -> list[Problem]:
        """Decode every image once (what ``ssdlite data check`` does); add and return the problems found.

        ``progress(i)`` is called after each image.
        """
        problems = []
        for index, record in enumerate(self.records):
            try:
                decode_image(record.image_path, record.size, self.max_pixels)
            except ImageError as err:
                self._failures[index] = _FAILURE_KINDS.index(err.kind)
                self._reported.add(index)
                problems.append(Problem(str(record.image_path), err.kind, err.detail))
            if progress is not None:
                progress(index)
        self.report.extend(problems)
        return problems

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {len(self)} samples, {len(self.classes)} classes)"
