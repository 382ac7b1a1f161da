"""``ssdlite predict --annotations FORMAT``: the detections as a dataset a labelling tool imports, read back by
ssdlite's own readers with the same boxes and classes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from deploy_helpers import CLASSES, write_images

from ssdlite.cli import main
from ssdlite.data.build import detect_format, read_catalog
from ssdlite.deploy.preannotations import FORMATS, unique_names

# Pixel tolerance of a box read back: VOC stores whole 1-based pixels (rounding: 0.5 px, and the 1-based corner
# convention of the reader); YOLO 6 decimals of the image size; COCO floats.
TOLERANCE = {"voc": 1.01, "yolo": 0.01, "coco": 1e-3}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Five images, two sharing a name in two folders and one sharing a stem (a.jpg, a.png): one label file each."""
    root = tmp_path_factory.mktemp("inputs")
    paths = write_images(root / "one", 3, seed=1) + write_images(root / "two", 2, seed=2)
    shutil.copy(paths[0], root / "two" / "img0.png")  # img0.jpg is in one/: same stem, other suffix
    return root


def _predictions(out: Path) -> dict[str, list[dict]]:
    """predictions.jsonl by input file."""
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return {line["file"]: line["detections"] for line in lines}


@pytest.mark.parametrize("fmt", ["voc", "yolo", "coco"])
def test_predicted_dataset_reads_back_with_the_same_boxes(images, weights, tmp_path, fmt):
    out = tmp_path / "out"
    code = main(["predict", str(images), "--weights", str(weights), "--out", str(out), "--annotations", fmt,
                 "--score-threshold", "0.1", "--no-draw"])
    assert code == 0
    dataset = out / fmt
    assert detect_format(dataset) == fmt
    catalog = read_catalog(dataset, split=None)
    assert catalog.report.ok(strict=True), catalog.report.summary()
    assert catalog.classes == CLASSES
    predicted = _predictions(out)
    assert len(catalog.records) == len(predicted) == 6  # every input, none lost to a shared name or stem
    assert sum(len(d) for d in predicted.values()) > 0
    sources = sorted(predicted)
    by_name = dict(zip(unique_names([Path(s) for s in sources]), sources))
    for record in catalog.records:
        expected = predicted[by_name[record.image_path.name]]
        assert Path(record.image_path).read_bytes() == Path(by_name[record.image_path.name]).read_bytes()
        boxes = record.boxes
        if record.size is None:  # YOLO: normalized, scaled by the image's size when decoded
            with Image.open(record.image_path) as im:
                w, h = im.size
            boxes = boxes * np.array([w, h, w, h], dtype=np.float32)
        assert len(boxes) == len(expected)
        names = [CLASSES[label - 1] for label in record.labels]
        want = np.asarray([d["box"] for d in expected], dtype=np.float64).reshape(-1, 4)
        far = np.abs(want[:, None, :] - boxes[None, :, :]).max(axis=2)  # (expected, read back): largest corner error
        same_class = np.asarray([[d["class"] == n for n in names] for d in expected]).reshape(far.shape)
        far[~same_class] = np.inf
        assert (far.min(axis=1) <= TOLERANCE[fmt]).all() and (far.min(axis=0) <= TOLERANCE[fmt]).all()

def test_label_studio_tasks_hold_the_detections_in_percent(images, weights, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(images), "--weights", str(weights), "--out", str(out), "--annotations", "label-studio",
                 "--score-threshold", "0.1", "--no-draw"]) == 0
    folder = out / "label-studio"
    tasks = json.loads((folder / "tasks.json").read_text())
    config = (folder / "label_config.xml").read_text()
    assert all(f'<Label value="{name}"' in config for name in CLASSES)
    predicted = _predictions(out)
    assert len(tasks) == len(predicted)
    by_name = dict(zip(unique_names([Path(s) for s in sorted(predicted)]), sorted(predicted)))
    for task in tasks:
        name = task["data"]["image"].removeprefix("/data/local-files/?d=images/")
        assert (folder / "images" / name).read_bytes() == Path(by_name[name]).read_bytes()
        expected = predicted[by_name[name]]
        result = task["predictions"][0]["result"]
        assert len(result) == len(expected)
        for region, detection in zip(result, expected):
            v, (x1, y1, x2, y2) = region["value"], detection["box"]
            w, h = region["original_width"], region["original_height"]
            assert v["rectanglelabels"] == [detection["class"]] and region["score"] == detection["score"]
            assert np.allclose([v["x"] * w / 100, v["y"] * h / 100, (v["x"] + v["width"]) * w / 100,
                                (v["y"] + v["height"]) * h / 100], [x1, y1, x2, y2], atol=1e-6)


def test_a_second_run_replaces_the_dataset_whole(images, weights, tmp_path):
    """No stale label file of an image the second run did not see; the inputs are never touched."""
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in images.rglob("*") if p.is_file()}
    assert main(["predict", str(images), "--weights", str(weights), "--out", str(out), "--annotations", "yolo", "--no-draw"]) == 0
    assert main(["predict", str(images / "two"), "--weights", str(weights), "--out", str(out), "--annotations", "yolo", "--no-draw"]) == 0
    labels = sorted(p.name for p in (out / "yolo").glob("*.txt") if p.name != "classes.txt")
    assert labels == ["img0.txt", "img0_1.txt", "img1.txt"]
    assert {p: p.read_bytes() for p in images.rglob("*") if p.is_file()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no building folder left


def test_formats_are_the_flags_choices(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{" + ",".join(FORMATS) + "}" in text


def test_a_users_folder_in_the_way_is_refused_before_any_work(images, weights, tmp_path, capsys):
    (tmp_path / "out" / "voc").mkdir(parents=True)
    (tmp_path / "out" / "voc" / "labels_i_drew.xml").write_text("<annotation/>")
    code = main(["predict", str(images), "--weights", str(weights), "--out", str(tmp_path / "out"), "--annotations", "voc"])
    assert code != 0 and not (tmp_path / "out" / "predictions.jsonl").exists()
    assert [p.name for p in (tmp_path / "out" / "voc").iterdir()] == ["labels_i_drew.xml"]
    assert "--annotations" in capsys.readouterr().err
