"""COCO results files: exact round trip, original category ids, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssdlite.errors import UserError
from ssdlite.metrics import ImageDetections, read_coco_results, to_coco_results, write_coco_results


def test_round_trip_is_exact_and_uses_category_ids(tmp_path):
    boxes = np.array([[1.1, 2.2, 33.3, 44.4], [0.1, 0.2, 0.30000001, 0.7]], dtype=np.float32).astype(np.float64)
    detections = ImageDetections(boxes, np.array([0.123456789, 0.5], dtype=np.float32).astype(np.float64), np.array([2, 1]))
    results = to_coco_results(17, detections, category_ids=[5, 90])
    assert [r["category_id"] for r in results] == [90, 5]
    path = tmp_path / "sub" / "predictions.json"
    write_coco_results(path, results)
    loaded = read_coco_results(path)
    assert loaded == results
    x, y, w, h = np.array([r["bbox"] for r in loaded]).T
    np.testing.assert_array_equal(np.stack([x, y, x + w, y + h], axis=1), boxes)  # xyxy back bit for bit
    assert [p.name for p in path.parent.iterdir()] == ["predictions.json"]  # no temporary file left


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a readable JSON file"),
        ('{"annotations": []}', "a JSON list of detections"),
        ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]', "result 0 has no score"),
        ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}]', "bbox must be four finite numbers"),
        ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5}]', "negative width"),
        ('[{"image_id": 1, "category_id": "cat", "bbox": [0, 0, 1, 1], "score": 0.5}]', "category_id must be an integer"),
        ('[{"image_id": 1.5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]', "image_id must be an integer or a file name"),
        ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": NaN}]', "score must be a finite number"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as info:
        read_coco_results(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_coco_results(tmp_path / "absent.json")


def test_string_image_ids_are_accepted(tmp_path):
    path = tmp_path / "voc.json"
    path.write_text(json.dumps([{"image_id": "000005", "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]))
    assert read_coco_results(path)[0]["image_id"] == "000005"
