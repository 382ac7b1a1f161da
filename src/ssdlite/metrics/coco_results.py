"""Detections in the COCO results format: a JSON list of
``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``, the format every COCO tool reads.

Boxes and scores are written with full float precision (no rounding), so reading a saved file
back gives exactly the detections that were saved.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssdlite.errors import UserError
from ssdlite.metrics.annotations import ImageDetections
from ssdlite.files import write_bytes_atomic


def to_coco_results(image_id: int | str, detections: ImageDetections, category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """One image's detections as result entries; label ``k`` is written as ``category_ids[k - 1]``."""
    results = []
    for (x1, y1, x2, y2), score, label in zip(detections.boxes.tolist(), detections.scores.tolist(), detections.labels.tolist()):
        results.append(
            {
                "image_id": image_id,
                "category_id": int(category_ids[label - 1]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": score,
            }
        )
    return results


def write_coco_results(path: str | os.PathLike, results: list[dict[str, Any]]) -> None:
    """Write ``results`` as JSON, atomically (a crash never leaves half a file)."""
    write_bytes_atomic(path, json.dumps(results).encode("utf-8"))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_entry(path: Path, index: int, entry: Any) -> None:
    where = f"{path}: result {index}"
    if not isinstance(entry, dict):
        raise UserError(f"{where} is a {type(entry).__name__}, expected an object with image_id, category_id, bbox, score")
    missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in entry]
    if missing:
        raise UserError(f"{where} has no {', '.join(missing)} (COCO results need image_id, category_id, bbox, score)")
    if not isinstance(entry["image_id"], (int, str)) or isinstance(entry["image_id"], bool):
        raise UserError(f"{where}: image_id must be an integer or a file name, got {entry['image_id']!r}")
    if not isinstance(entry["category_id"], int) or isinstance(entry["category_id"], bool):
        raise UserError(f"{where}: category_id must be an integer, got {entry['category_id']!r}")
    bbox = entry["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise UserError(f"{where}: bbox must be four finite numbers [x, y, width, height], got {bbox!r}")
    if bbox[2] < 0 or bbox[3] < 0:
        raise UserError(f"{where}: bbox {bbox} has a negative width or height (COCO boxes are [x, y, width, height])")
    if not _is_number(entry["score"]):
        raise UserError(f"{where}: score must be a finite number, got {entry['score']!r}")


def read_coco_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and check a COCO results file; a bad file raises :class:`UserError` naming the entry."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except FileNotFoundError as err:
        raise UserError(f"{path}: no such file") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a readable JSON file ({err})") from err
    if not isinstance(results, list):
        raise UserError(f"{path}: a COCO results file is a JSON list of detections, found a {type(results).__name__}")
    for index, entry in enumerate(results):
        _check_entry(path, index, entry)
    return results
