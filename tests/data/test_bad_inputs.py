"""One test per kind of bad input: the documented outcome, the file named, and every good sample kept.

Each test adds one bad sample ``bad`` to four good ones (``a`` to ``d``), then checks the problem kind
and file in the report, what happened to ``bad``, and that ``a`` to ``d`` still load with their boxes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixture_writers import (
    LAUGHS,
    XXE,
    assert_good_samples_loaded,
    default_samples,
    index_of,
    voc_object_xml,
    voc_raw_object,
    voc_with_bad,
    write_coco,
    write_image,
    write_voc,
    write_yolo,
    yolo_line,
)
from PIL import Image

from ssdlite.data import build_dataset, check_dataset
from ssdlite.errors import DataError

def only_problem(ds_or_report, kind: str, file_part: str):
    report = getattr(ds_or_report, "report", ds_or_report)
    found = [p for p in report.problems if p.kind == kind]
    assert len(found) == 1, report.problems
    assert file_part in found[0].file
    return found[0]


# Boxes: clipped, or dropped with the rest of the sample kept.


def test_box_partly_outside_is_clipped(tmp_path):
    root = voc_with_bad(tmp_path, voc_raw_object("cat", -4, 5, 70, 30) + voc_object_xml("dog", 2, 2, 10, 10))
    ds = build_dataset(root, split=None)
    problem = only_problem(ds, "box_clipped", "bad.xml")
    assert problem.severity == "warning" and "clipped" in problem.line()
    _, target = ds[index_of(ds, "bad")]
    np.testing.assert_allclose(target["boxes"].numpy(), [[0, 4, 60, 30], [2, 2, 10, 10]])
    assert_good_samples_loaded(ds)


def test_an_overshoot_within_the_file_s_rounding_is_clipped_without_a_warning():
    from ssdlite.data.box_checks import check_boxes

    # A YOLO line written to 6 decimals (cx 0.5, w 1.000001) and one past the edge by a visible 0.1%.
    boxes = np.array([[-5e-7, 0.1, 1.0000005, 0.5], [0.2, 0.2, 1.001, 0.6]])
    checked, keep, problems = check_boxes(boxes, (1.0, 1.0), "a.txt", ["line 1", "line 2"])
    assert keep.tolist() == [0, 1] and checked.min() >= 0 and checked.max() <= 1
    assert [(p.kind, p.detail.split()[:2]) for p in problems] == [("box_clipped", ["line", "2"])]


@pytest.mark.parametrize(
    "kind, fields",
    [
        ("box_outside", (70, 5, 90, 30)),  # entirely right of the 60-wide image
        ("box_empty", (11, 5, 10, 30)),  # xmin - 1 == xmax: zero width
        ("box_inverted", (40, 30, 10, 5)),
        ("box_nonfinite", ("nan", 5, 20, 30)),
        ("box_malformed", ("abc", 5, 20, 30)),
    ],
)
def test_unusable_box_is_dropped_and_the_rest_of_the_image_kept(tmp_path, kind, fields):
    root = voc_with_bad(tmp_path, voc_raw_object("cat", *fields) + voc_object_xml("dog", 2, 2, 10, 10))
    ds = build_dataset(root, split=None)
    problem = only_problem(ds, kind, "bad.xml")
    assert problem.action == "box dropped" and "object 0 'cat'" in problem.detail
    _, target = ds[index_of(ds, "bad")]
    assert target["labels"].tolist() == [2]
    np.testing.assert_allclose(target["boxes"].numpy(), [[2, 2, 10, 10]])
    assert_good_samples_loaded(ds)


def test_object_without_bndbox_is_dropped(tmp_path):
    root = voc_with_bad(tmp_path, "<object><name>cat</name></object>" + voc_object_xml("bird", 1, 1, 5, 5))
    ds = build_dataset(root, split=None)
    only_problem(ds, "box_malformed", "bad.xml")
    assert ds[index_of(ds, "bad")][1]["labels"].tolist() == [3]
    assert_good_samples_loaded(ds)


def test_empty_annotation_is_kept_as_a_background_image(tmp_path):
    root = voc_with_bad(tmp_path, "")
    ds = build_dataset(root, split=None, strict=True)  # a note, not a warning: strict accepts it
    problem = only_problem(ds, "no_objects", "bad.xml")
    assert problem.severity == "note"
    _, target = ds[index_of(ds, "bad")]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert_good_samples_loaded(ds)


# Sizes.


def test_missing_size_is_read_from_the_image(tmp_path):
    root = voc_with_bad(tmp_path, voc_object_xml("cat", 50, 5, 80, 30), recorded=False)
    ds = build_dataset(root, split=None)
    only_problem(ds, "size_missing", "bad.xml")
    only_problem(ds, "box_clipped", "bad.xml")  # checked against the real 60-pixel width
    _, target = ds[index_of(ds, "bad")]
    np.testing.assert_allclose(target["boxes"].numpy(), [[50, 5, 60, 30]])
    assert_good_samples_loaded(ds)


def test_size_mismatch_skips_the_sample_when_loaded_and_in_check(tmp_path):
    root = voc_with_bad(tmp_path, voc_object_xml("cat", 1, 1, 20, 20), size=(40, 60))
    write_image(root / "JPEGImages" / "bad.jpg", (30, 30), seed=3)  # replaced after annotating
    ds = build_dataset(root, split=None)
    bad = index_of(ds, "bad")
    _, target = ds[bad]  # falls back to the next sample instead of training on wrong boxes
    assert target["image_id"] == (bad + 1) % len(ds)
    [failure] = ds.load_failures()
    assert failure.kind == "size_mismatch" and failure.file.endswith("bad.jpg")
    [report] = check_dataset(root)
    problem = only_problem(report, "size_mismatch", "bad.jpg")
    assert "60x40" in problem.detail and "30x30" in problem.detail
    assert not report.ok()
    assert_good_samples_loaded(ds)


# Images.


def test_missing_image_is_skipped(tmp_path):
    root = voc_with_bad(tmp_path, voc_object_xml("cat", 1, 1, 20, 20))
    (root / "JPEGImages" / "bad.jpg").unlink()
    ds = build_dataset(root, split=None)
    problem = only_problem(ds, "image_missing", "bad.xml")
    assert problem.severity == "error" and "bad.jpg" in problem.detail
    assert len(ds) == 4 and index_of(ds, "bad") is None
    assert_good_samples_loaded(ds)


@pytest.mark.parametrize(
    "kind, data",
    [
        ("image_corrupt", b""),
        ("image_corrupt", b"GIF89a but not really" + bytes(range(256))),
        ("image_truncated", None),  # the first half of a real JPEG
    ],
)
def test_undecodable_image_is_an_error_never_a_black_image(tmp_path, caplog, kind, data):
    if data is None:
        write_image(tmp_path / "full.jpg", (40, 60), seed=5)
        whole = (tmp_path / "full.jpg").read_bytes()
        data = whole[: len(whole) // 2]
    root = voc_with_bad(tmp_path, voc_object_xml("cat", 1, 1, 20, 20), image=data)
    ds = build_dataset(root, split=None)
    bad = index_of(ds, "bad")
    for _ in range(2):
        image, target = ds[bad]
        assert target["image_id"] != bad and image.float().std() > 0
    assert [p.kind for p in ds.load_failures()] == [kind]
    [logged] = [r.getMessage() for r in caplog.records if "bad.jpg" in r.getMessage()]  # said once, when found
    assert f"[{kind}]" in logged and "skipped" in logged
    [report] = check_dataset(root)
    only_problem(report, kind, "bad.jpg")
    assert report.unusable_files() == {str(root / "JPEGImages" / "bad.jpg")}
    assert_good_samples_loaded(ds)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    root = voc_with_bad(tmp_path, voc_object_xml("cat", 1, 1, 20, 20), size=(12000, 12000), image=b"")
    (root / "JPEGImages" / "bad.jpg").unlink()
    # 144 million pixels, 18 kB on disk: over the 2**27 default limit.
    Image.new("1", (12000, 12000)).save(root / "JPEGImages" / "bad.png")
    ds = build_dataset(root, split=None)
    _, target = ds[index_of(ds, "bad")]
    assert target["image_id"] != index_of(ds, "bad")
    [failure] = ds.load_failures()
    assert failure.kind == "image_too_large" and failure.file.endswith("bad.png")
    [report] = check_dataset(root)
    assert "decompression-bomb" in only_problem(report, "image_too_large", "bad.png").detail
    assert_good_samples_loaded(ds)


# Annotation files.

@pytest.mark.parametrize("prolog, name", [(XXE, "&xxe;"), (LAUGHS, "&lol9;")], ids=["external-entity", "billion-laughs"])
def test_xml_entity_attacks_are_refused(tmp_path, prolog, name):
    root = voc_with_bad(tmp_path, voc_object_xml(name, 1, 1, 20, 20), prolog=prolog)
    ds = build_dataset(root, split=None)
    problem = only_problem(ds, "annotation_unsafe", "bad.xml")
    assert "refused" in problem.line() and "root:" not in problem.detail
    assert len(ds) == 4
    assert_good_samples_loaded(ds)


def test_malformed_xml_is_skipped(tmp_path):
    root = voc_with_bad(tmp_path, "<object><name>cat</name>")
    ds = build_dataset(root, split=None)
    assert "not well-formed" in only_problem(ds, "annotation_malformed", "bad.xml").detail
    assert len(ds) == 4
    assert_good_samples_loaded(ds)


def test_split_entry_without_annotation_is_skipped(tmp_path):
    root = write_voc(tmp_path / "voc", default_samples(), splits={"train": ["a", "b", "ghost", "c", "d"]})
    ds = build_dataset(root, split="train")
    only_problem(ds, "annotation_missing", "ghost.xml")
    assert_good_samples_loaded(ds)


# Classes.


def test_unknown_class_names_stop_with_every_name_listed(tmp_path):
    root = voc_with_bad(tmp_path, voc_object_xml("dgo", 1, 1, 20, 20) + voc_object_xml("Cat", 2, 2, 9, 9))
    with pytest.raises(DataError) as err:
        build_dataset(root, split=None)
    message = str(err.value)
    assert "'dgo'" in message and "'Cat'" in message and "bad.xml" in message and "class_unknown" in message
    [report] = check_dataset(root)
    assert not report.ok() and report.counts()["class_unknown"] == 1


@pytest.mark.parametrize(
    "classes, words",
    [(["__background__", "cat", "dog", "bird"], "collides with label 0"), (["cat", "dog", "cat", "bird"], "duplicate")],
)
def test_class_list_colliding_with_background_or_repeated_is_refused(tmp_path, classes, words):
    root = write_voc(tmp_path / "voc", default_samples(), classes=classes)
    with pytest.raises(DataError, match=words):
        build_dataset(root, split=None)


def test_without_labels_txt_classes_come_sorted_from_the_annotations_with_a_warning(tmp_path):
    root = write_voc(tmp_path / "voc", default_samples(), classes=None)
    ds = build_dataset(root, split=None)
    assert ds.classes == ["bird", "cat", "dog"]
    only_problem(ds, "classes_inferred", "Annotations")
    labels = {stem: ds[index_of(ds, stem)][1]["labels"].tolist() for stem in ("a", "b")}
    assert labels == {"a": [2, 3], "b": [1]}  # cat, dog; bird


def test_yolo_class_id_outside_the_names_stops_and_bad_lines_are_dropped(tmp_path):
    samples = default_samples()
    root = write_yolo(tmp_path / "yolo", samples)
    label_file = root / "labels" / "train" / "b.txt"
    label_file.write_text(yolo_line(2, (0, 0, 40, 40), (40, 40)) + "\n0 0.5 0.5\n1 0.5 0.5 inf 0.2\n")
    ds = build_dataset(root)
    only_problem(ds, "box_malformed", "b.txt")
    only_problem(ds, "box_nonfinite", "b.txt")
    assert ds[1][1]["labels"].tolist() == [3]
    label_file.write_text(yolo_line(7, (0, 0, 40, 40), (40, 40)) + "\n")
    with pytest.raises(DataError, match="id 7"):
        build_dataset(root)


def test_coco_annotation_for_an_unknown_image_is_ignored(tmp_path):
    root = write_coco(tmp_path / "coco", default_samples())
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 999, "image_id": 12345, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    path.write_text(json.dumps(data))
    ds = build_dataset(root)
    assert "12345" in only_problem(ds, "annotation_orphan", "instances_train.json").detail
    assert len(ds) == 4


# Policy switches.


def test_strict_turns_a_warning_into_an_error(tmp_path):
    root = voc_with_bad(tmp_path, voc_raw_object("cat", -4, 5, 70, 30))
    assert len(build_dataset(root, split=None)) == 5
    with pytest.raises(DataError, match="box_clipped"):
        build_dataset(root, split=None, strict=True)
    [report] = check_dataset(root)
    assert report.ok() and not report.ok(strict=True)
