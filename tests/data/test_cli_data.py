"""``ssdlite data check`` and ``ssdlite data synth`` from the command line, and the shared datasets."""

from __future__ import annotations

import pytest
import torch
from fixture_writers import (
    SHARED_DATASETS,
    XXE,
    default_samples,
    voc_object_xml,
    voc_raw_object,
    voc_xml,
    write_coco,
    write_voc,
    write_yolo,
)

from ssdlite.cli import main
from ssdlite.data import SHAPES, build_dataset


def test_check_names_each_bad_file_and_exits_1(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", default_samples())
    jpeg = root / "JPEGImages" / "a.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2])  # corrupt image
    (root / "Annotations" / "b.xml").write_text(voc_xml("b.jpg", (40, 40), voc_object_xml("&xxe;", 1, 1, 5, 5), XXE))
    (root / "Annotations" / "c.xml").write_text(voc_xml("c.jpg", (50, 70), voc_raw_object("cat", 5, 5, 95, 30)))
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith(str(jpeg)) and "[image_truncated]" in line and "sample skipped" in line for line in lines)
    assert any(line.startswith(str(root / "Annotations" / "b.xml")) and "[annotation_unsafe]" in line for line in lines)
    assert any(line.startswith(str(root / "Annotations" / "c.xml")) and "[box_clipped]" in line for line in lines)
    assert "4 samples, 2 usable" in out
    counts = {line.split()[0]: int(line.split()[1]) for line in lines if line.startswith("  ")}
    assert counts == {"annotation_unsafe": 1, "image_truncated": 1, "box_clipped": 1}


def test_check_exits_0_with_only_warnings_and_1_with_strict(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", default_samples())
    (root / "Annotations" / "c.xml").write_text(voc_xml("c.jpg", (50, 70), voc_raw_object("cat", 5, 5, 95, 30)))
    assert main(["data", "check", str(root), "--format", "voc"]) == 0
    assert main(["data", "check", str(root), "--strict", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert out.count("[box_clipped]") == 1  # --quiet printed only the counts the second time


def test_check_reads_coco_and_yolo_layouts(tmp_path, capsys):
    coco = write_coco(tmp_path / "coco", default_samples())
    yolo = write_yolo(tmp_path / "yolo", default_samples())
    (yolo / "labels" / "train" / "b.txt").write_text("5 0.5 0.5 0.2 0.2\n")  # class id 5 of 3 names
    assert main(["data", "check", str(coco)]) == 0
    assert "instances_train.json: 4 samples, 4 usable, no problems" in capsys.readouterr().out
    assert main(["data", "check", str(yolo / "data.yaml"), "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert "[class_unknown]" in out and "id 5" in out and "b.txt" in out


def test_check_of_something_that_is_not_a_dataset_exits_2(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nothing")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_synth_writes_a_loadable_dataset_and_check_passes(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["data", "synth", str(out), "--num-train", "5", "--num-val", "2", "--size", "96", "--seed", "3"]) == 0
    assert str(out) in capsys.readouterr().out
    train = build_dataset(out, split="train")
    assert len(train) == 5 and train.classes == list(SHAPES)
    assert tuple(train[0][0].shape) == (3, 96, 96)
    assert main(["data", "check", str(out), "--strict"]) == 0
    assert main(["data", "synth", str(out), "--num-train", "1", "--num-val", "1"]) == 2  # exists: refused
    assert main(["data", "synth", str(out), "--num-train", "1", "--num-val", "1", "--size", "64", "--overwrite"]) == 0


@pytest.mark.parametrize("name", ["raccoon", "bccd"])
def test_shared_datasets_pass_the_check(name, capsys):
    path = SHARED_DATASETS / name
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is not part of the repository)")
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "usable" in out
    train, val = build_dataset(path, split="train"), build_dataset(path, split="val", keep_difficult=True)
    assert len(train) + len(val) == {"raccoon": 200, "bccd": 364}[name]
    assert train.classes == {"raccoon": ["raccoon"], "bccd": ["RBC", "WBC", "Platelets"]}[name]


@pytest.mark.skipif(not (SHARED_DATASETS / "raccoon").exists(), reason="../shared/datasets/raccoon not present")
def test_raccoon_grayscale_photos_load_as_rgb():
    ds = build_dataset(SHARED_DATASETS / "raccoon", split=None)
    grayscale = {"raccoon-150.jpg", "raccoon-152.jpg", "raccoon-161.jpg"}  # stored as 8-bit L JPEGs
    found = [i for i, record in enumerate(ds.records) if record.image_path.name in grayscale]
    assert len(found) == 3
    for index in found:
        image, _ = ds[index]
        assert image.shape[0] == 3 and torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
