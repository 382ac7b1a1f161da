"""A split with no usable box is an error, with why: ``data check`` exits 1, and train, anchors fit and doctor refuse
it before any work.

Each case is a dataset that reads without a single box training would use: every label file missing (the labels
sit in a folder no layout reads), every box difficult or crowd, every box invalid, no annotations at all. Before,
``data check`` passed them with notes, training ran an epoch and crashed, ``anchors fit`` wrote ``coverage nan%``.
"""

from __future__ import annotations

import json

import pytest
from fixture_writers import Sample, default_samples, write_coco, write_voc, write_yolo

from ssdlite.cli import main
from ssdlite.data import build_dataset, check_dataset
from ssdlite.errors import DataError


def all_difficult() -> list[Sample]:
    return [Sample(s.stem, s.size, [(*o[:5], True) for o in s.objects]) for s in default_samples()]


def labels_in_labels_old(root):
    root = write_yolo(root, default_samples())
    (root / "labels").rename(root / "labels_old")
    return root, ["none of its 4 images has a label file", "labels/train/a.txt", f"4 in {root / 'labels_old' / 'train'}/"]


def voc_xml_beside_yolo_images(root):
    """A VOC export's XML dropped beside the images of a YOLO layout: the YOLO reader looks for labels/train/*.txt."""
    root = write_yolo(root, default_samples())
    for label in sorted((root / "labels" / "train").glob("*.txt")):
        (root / "images" / "train" / f"{label.stem}.xml").write_text("<annotation/>\n")
        label.unlink()
    return root, ["none of its 4 images has a label file", f"4 in {root / 'images' / 'train'}/"]


def every_box_difficult(root):
    return write_voc(root, all_difficult()), ["all 8 of its boxes are marked difficult (VOC) or iscrowd (COCO)"]


def every_box_crowd(root):
    return write_coco(root, all_difficult()), ["all 8 of its boxes are marked difficult (VOC) or iscrowd (COCO)"]


def every_box_invalid(root):
    root = write_yolo(root, default_samples())
    for label in (root / "labels" / "train").glob("*.txt"):
        label.write_text("".join(f"0 0.5 0.5 {i}\n" for i in range(2)))  # 4 fields: not a box
    return root, ["8 boxes were dropped as unusable (8 box_malformed; each is listed)"]


def no_annotations(root):
    root = write_coco(root, default_samples())
    path = root / "annotations" / "instances_train.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"annotations": []}))
    return root, ["the annotations of its 4 samples list no objects"]


CASES = [labels_in_labels_old, voc_xml_beside_yolo_images, every_box_difficult, every_box_crowd, every_box_invalid, no_annotations]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_data_check_exits_1_on_a_split_without_a_usable_box_and_says_why(tmp_path, capsys, case):
    root, words = case(tmp_path / "data")
    status = main(["data", "check", str(root)])
    captured = capsys.readouterr()
    assert status == 1 and "FAILED" in captured.err
    [line] = [line for line in captured.out.splitlines() if line.endswith("[no_boxes]")]
    assert ": fatal: no usable box: " in line and all(word in line for word in words), line
    assert ", 0 usable" in captured.out  # a refused dataset has no usable sample, whatever each one holds


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_every_command_reading_the_data_refuses_it_before_any_work(tmp_path, capsys, case):
    root, _ = case(tmp_path / "data")
    model = ["--size", "96", "--width-mult", "0.35"]
    commands = {
        "train": (["--data", str(root), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "2", *model], tmp_path / "run"),
        "anchors fit": (["--data", str(root), "--out", str(tmp_path / "anchors.yaml"), *model], tmp_path / "anchors.yaml"),
        "doctor": (["--data", str(root), "--out", str(tmp_path / "report"), *model], tmp_path / "report"),
    }
    for command, (flags, output) in commands.items():
        status = main([*command.split(), *flags])
        err = capsys.readouterr().err
        assert status == 2, (command, err)
        # train reads the training part that it holds out validation from; the others the whole split.
        assert ": fatal: no usable box: " in err and "[no_boxes]" in err and "Traceback" not in err, (command, err)
        assert not output.exists(), command


def test_voc_xml_beside_the_images_with_an_empty_annotations_folder_is_no_sample_and_says_where(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", default_samples())
    for xml in (root / "Annotations").glob("*.xml"):
        xml.rename(root / "JPEGImages" / xml.name)  # Pascal VOC reads Annotations/, which is now empty
    status = main(["data", "check", str(root)])
    captured = capsys.readouterr()
    assert status == 1 and "FAILED" in captured.err
    [line] = [line for line in captured.out.splitlines() if line.endswith("[no_samples]")]
    assert f"fatal: no usable sample: the split lists no sample; 4 annotation files lie where the layout does not read them: 4 in {root / 'JPEGImages'}/" in line


def test_a_voc_split_file_listing_only_images_without_a_usable_box_fails_the_whole_check(tmp_path, capsys):
    samples = default_samples()
    samples[2] = all_difficult()[2]  # c: every box difficult
    root = write_voc(tmp_path / "voc", samples, splits={"train": ["a", "b", "d"], "val": ["c"]})
    status = main(["data", "check", str(root)])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.endswith("[no_boxes]")]
    assert status == 1 and line.startswith(f"{root} [val]: fatal: no usable box: all 2 of its boxes are marked difficult")


def test_one_usable_box_is_enough(tmp_path):
    samples = all_difficult()
    samples[1] = default_samples()[1]  # b: one bird, not difficult
    root = write_voc(tmp_path / "voc", samples)
    [report] = check_dataset(root)
    assert report.ok() and "no_boxes" not in report.counts()
    assert len(build_dataset(root, split=None)) == 4


def test_a_held_out_part_without_a_box_is_refused_by_name(tmp_path):
    # Only d.jpg has a box, and d.jpg comes first in SHA-1 order: it is the held-out 'val' part, 'train' has no box.
    samples = [Sample(s.stem, s.size) for s in default_samples()]
    samples[3] = default_samples()[3]
    root = write_voc(tmp_path / "voc", samples)
    assert len(build_dataset(root, split="val", hold_out=True)) == 1
    with pytest.raises(DataError, match=r"train part: fatal: no usable box: the annotations of its 3 samples list no objects"):
        build_dataset(root, split="train", hold_out=True)
