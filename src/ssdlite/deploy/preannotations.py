"""Pre-annotations: ``ssdlite predict --annotations FORMAT`` writes its detections as a dataset to correct.

A model trained on a first batch of labels pre-annotates the next batch; a person corrects the boxes in a
labelling tool instead of drawing them all. Each format is a folder ``<out>/<format>/`` holding the predicted
images (hard links where the file system allows, else copies: the originals are never touched) and their
boxes in the layout the tools import and ssdlite's own readers read back (``ssdlite data check``, ``train
--data``):

- ``voc``: labelImg's layout, ``<name>.xml`` beside each image (Pascal VOC XML, 1-based pixel corners) and
  ``labels.txt`` (the class order);
- ``yolo``: labelImg's YOLO layout, ``<stem>.txt`` beside each image (``class cx cy w h`` normalized,
  0-based class) and ``classes.txt``;
- ``coco``: CVAT's COCO export layout, ``images/`` and ``annotations/instances_default.json`` (each box's
  ``score`` kept as an extra key);
- ``label-studio``: ``images/``, ``tasks.json`` (one task per image, the detections as its ``predictions``,
  ``RectangleLabels`` in percent of the image, each with its score) and ``label_config.xml`` (the labelling
  interface whose names the predictions use). Label Studio reads the images as local files: start it with
  ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<out>/label-studio``.

One file name per image and one stem per label file: two inputs sharing a name (``a.jpg`` in two folders, or
``a.jpg`` and ``a.png``, which would share ``a.txt``) get ``_1``, ``_2``... The folder is built beside and
put in place at the end, so a run never leaves half a dataset, and an earlier run's folder is replaced whole
(no stale label file of an image this run did not see).

This module imports neither PyTorch nor numpy at the top: ``ssdlite predict --help`` reads :data:`FORMATS`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssdlite.files import replace_folder

FROM_NAME, TO_NAME = "label", "image"  # the names of label_config.xml's RectangleLabels and Image


@dataclass
class Annotated:
    """One predicted image: where it is, and its detections in its own pixels."""

    source: Path
    height: int
    width: int
    boxes: list[list[float]]  # (M, 4) xyxy pixels
    labels: list[int]  # 1..K (classes[label - 1])
    scores: list[float]


def label_studio_region(box: Sequence[float], score: float, name: str, height: int, width: int, index: int,
                        from_name: str = FROM_NAME, to_name: str = TO_NAME) -> dict[str, Any]:
    """One detection as a Label Studio ``rectanglelabels`` result: position and size in percent of the image."""
    x1, y1, x2, y2 = box
    return {
        "id": f"{from_name}-{to_name}-{index}",
        "from_name": from_name,
        "to_name": to_name,
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "x": x1 / width * 100,
            "y": y1 / height * 100,
            "width": (x2 - x1) / width * 100,
            "height": (y2 - y1) / height * 100,
            "rotation": 0,
            "rectanglelabels": [name],
        },
        "score": score,
    }


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _place(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (no copy), or a copy where linking is not possible."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def _voc(root: Path, items: list[tuple[str, Annotated]], classes: list[str], model_version: str) -> None:
    import numpy as np

    from ssdlite.data.voc import write_voc_annotation

    _write_text(root / "labels.txt", "".join(c + "\n" for c in classes))
    for name, item in items:
        _place(item.source, root / name)
        names = [classes[label - 1] for label in item.labels]
        write_voc_annotation(root / f"{Path(name).stem}.xml", name, (item.height, item.width),
                             np.asarray(item.boxes, dtype=np.float64).reshape(-1, 4), names)


def _yolo(root: Path, items: list[tuple[str, Annotated]], classes: list[str], model_version: str) -> None:
    _write_text(root / "classes.txt", "".join(c + "\n" for c in classes))
    for name, item in items:
        _place(item.source, root / name)
        lines = []
        for (x1, y1, x2, y2), label in zip(item.boxes, item.labels):
            cx, cy = (x1 + x2) / 2 / item.width, (y1 + y2) / 2 / item.height
            w, h = (x2 - x1) / item.width, (y2 - y1) / item.height
            lines.append(f"{label - 1} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
        _write_text(root / f"{Path(name).stem}.txt", "".join(lines))


def _coco(root: Path, items: list[tuple[str, Annotated]], classes: list[str], model_version: str) -> None:
    images, annotations = [], []
    for image_id, (name, item) in enumerate(items, start=1):
        _place(item.source, root / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": item.width, "height": item.height})
        for (x1, y1, x2, y2), label, score in zip(item.boxes, item.labels, item.scores):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0, "score": score,
            })
    categories = [{"id": i, "name": name, "supercategory": ""} for i, name in enumerate(classes, start=1)]
    document = {"images": images, "annotations": annotations, "categories": categories}
    _write_text(root / "annotations" / "instances_default.json", json.dumps(document))


def _label_studio(root: Path, items: list[tuple[str, Annotated]], classes: list[str], model_version: str) -> None:
    interface = ET.Element("View")
    ET.SubElement(interface, "Image", name=TO_NAME, value="$image")
    rectangles = ET.SubElement(interface, "RectangleLabels", name=FROM_NAME, toName=TO_NAME)
    for name in classes:
        ET.SubElement(rectangles, "Label", value=name)
    ET.indent(interface)
    _write_text(root / "label_config.xml", ET.tostring(interface, encoding="unicode") + "\n")
    tasks = []
    for name, item in items:
        _place(item.source, root / "images" / name)
        result = [
            label_studio_region(box, score, classes[label - 1], item.height, item.width, i)
            for i, (box, label, score) in enumerate(zip(item.boxes, item.labels, item.scores))
        ]
        score = statistics.fmean(item.scores) if item.scores else 0.0  # the task's score: Label Studio sorts tasks by it
        tasks.append({
            "data": {TO_NAME: f"/data/local-files/?d=images/{name}"},
            "predictions": [{"model_version": model_version, "score": score, "result": result}],
        })
    _write_text(root / "tasks.json", json.dumps(tasks, indent=1))


#: ``--annotations`` choices -> the writer of that folder, ``(folder, [(file name, Annotated)], classes, model_version)``.
#: Adding a format: one function and one row.
FORMATS: dict[str, Callable[..., None]] = {"voc": _voc, "yolo": _yolo, "coco": _coco, "label-studio": _label_studio}


def unique_names(paths: Sequence[Path]) -> list[str]:
    """A file name per path, unique by stem (a label file is named by its image's stem): ``a.jpg``, ``a_1.png``."""
    stems: set[str] = set()
    names = []
    for path in paths:
        stem, n = path.stem, 0
        while stem in stems:
            n += 1
            stem = f"{path.stem}_{n}"
        stems.add(stem)
        names.append(stem + path.suffix.lower())
    return names


def write_preannotations(folder: str | os.PathLike, fmt: str, items: list[Annotated], classes: list[str],
                         model_version: str = "ssdlite") -> Path:
    """Write ``items`` as dataset ``folder`` in format ``fmt`` (:data:`FORMATS`), replacing an earlier one whole."""
    from ssdlite.deploy.draw import class_name

    named = list(zip(unique_names([item.source for item in items]), items))
    top = max((label for item in items for label in item.labels), default=0)
    classes = [class_name(label, classes) for label in range(1, max(top, len(classes)) + 1)]  # a name for every label
    return replace_folder(folder, lambda building: FORMATS[fmt](building, named, classes, model_version),
                          what="ssdlite predict --annotations")
