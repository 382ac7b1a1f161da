"""VOC, COCO and YOLO readers on small fixtures, and the same annotations in all three formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixture_writers import CLASSES, Sample, default_samples, write_coco, write_voc, write_voc_beside_images, write_yolo
from torchvision import tv_tensors

from ssdlite.data import build_dataset, detect_format
from ssdlite.data.build import dataset_splits, has_split
from ssdlite.errors import DataError


def _expected(sample: Sample, keep_difficult: bool):
    objects = [o for o in sample.objects if keep_difficult or not o[5]]
    boxes = np.array([o[1:5] for o in objects], dtype=np.float32).reshape(-1, 4)
    labels = np.array([CLASSES.index(o[0]) + 1 for o in objects], dtype=np.int64)
    flags = np.array([o[5] for o in objects], dtype=bool)
    return boxes, labels, flags


def test_voc_items_follow_the_target_contract(tmp_path):
    samples = default_samples()
    root = write_voc(tmp_path / "voc", samples, splits={"train": ["a", "b", "c"], "val": ["d"]})
    ds = build_dataset(root, split="train")
    assert ds.classes == CLASSES and ds.category_ids == [1, 2, 3] and len(ds) == 3
    for index, sample in enumerate(samples[:3]):
        image, target = ds[index]
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
        assert tuple(image.shape) == (3, *sample.size)
        assert isinstance(target["boxes"], tv_tensors.BoundingBoxes)
        assert target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
        assert tuple(target["boxes"].canvas_size) == sample.size
        boxes, labels, _ = _expected(sample, keep_difficult=False)
        np.testing.assert_allclose(target["boxes"].numpy(), boxes)
        assert target["labels"].tolist() == labels.tolist()
        assert target["image_id"] == index
        assert target["orig_size"].tolist() == list(sample.size)
        assert not target["difficult"].any() and not target["iscrowd"].any()
    assert len(build_dataset(root, split="val")) == 1


def test_voc_difficult_is_dropped_for_training_and_flagged_for_evaluation(tmp_path):
    sample = default_samples()[2]  # one difficult dog, one cat
    root = write_voc(tmp_path / "voc", [sample])
    train = build_dataset(root, split=None)
    assert train[0][1]["labels"].tolist() == [1]
    evaluation = build_dataset(root, split=None, keep_difficult=True)
    _, target = evaluation[0]
    assert target["labels"].tolist() == [2, 1] and target["difficult"].tolist() == [True, False]


def test_voc_without_split_files_reads_every_annotation_and_refuses_a_missing_split(tmp_path):
    root = write_voc(tmp_path / "voc", default_samples())
    assert len(build_dataset(root, split="train")) == 4
    write_voc(tmp_path / "split", default_samples(), splits={"train": ["a"]})
    with pytest.raises(DataError, match=r"val\.txt.*train"):
        build_dataset(tmp_path / "split", split="val")


def test_get_annotation_does_not_decode_the_image(tmp_path):
    root = write_voc(tmp_path / "voc", default_samples())
    ds = build_dataset(root, split=None, keep_difficult=True)
    (root / "JPEGImages" / "c.jpg").write_bytes(b"not an image any more")
    annotation = ds.get_annotation(2)
    assert annotation["height"] == 50 and annotation["width"] == 70
    assert annotation["file_name"].endswith("c.jpg") and annotation["image_id"] == 2
    np.testing.assert_allclose(annotation["boxes"], [[10, 12, 22, 30], [30, 5, 69, 49]])
    assert annotation["difficult"].tolist() == [True, False]


def test_coco_category_ids_map_to_contiguous_labels_and_crowd_is_an_ignore_region(tmp_path):
    samples = default_samples()
    samples[3].objects = []  # an image without annotations is kept
    root = write_coco(tmp_path / "coco", samples, category_ids=[3, 17, 90])
    train = build_dataset(root, split="train")
    assert train.classes == CLASSES and train.category_ids == [3, 17, 90]
    assert len(train) == 4
    assert [train[i][1]["image_id"] for i in range(4)] == [100, 101, 102, 103]
    assert train[2][1]["labels"].tolist() == [1]  # the crowd dog is not trained on
    assert len(train[3][1]["boxes"]) == 0
    assert train.report.counts()["no_objects"] == 1
    evaluation = build_dataset(root / "annotations" / "instances_train.json", keep_difficult=True)
    _, target = evaluation[2]
    assert target["labels"].tolist() == [2, 1]
    assert target["iscrowd"].tolist() == [True, False] and target["difficult"].tolist() == [True, False]


def test_yolo_class_zero_becomes_label_one_and_names_may_be_a_map(tmp_path):
    samples = default_samples()
    for names in ("list", "map"):
        root = write_yolo(tmp_path / names, samples, yaml_names=names)
        ds = build_dataset(root, split="train")
        assert ds.classes == CLASSES
        assert ds[0][1]["labels"].tolist() == [1, 2]  # cat is class 0 in the file, label 1 here
    bare = write_yolo(tmp_path / "bare", samples, yaml_names="none")
    with pytest.raises(DataError, match="class names"):
        build_dataset(bare, format="yolo", split="train")
    assert build_dataset(bare, format="yolo", split="train", classes=CLASSES).classes == CLASSES


def _assert_same_items(datasets: dict, samples: list[Sample], keep_difficult: bool) -> None:
    for index, sample in enumerate(samples):
        reference_image, reference = datasets["voc"][index]
        for fmt, ds in datasets.items():
            assert ds.classes == CLASSES
            image, target = ds[index]
            assert torch.equal(image, reference_image), fmt
            np.testing.assert_allclose(target["boxes"].numpy(), reference["boxes"].numpy(), atol=1e-3, err_msg=fmt)
            assert target["labels"].tolist() == reference["labels"].tolist(), fmt
            assert target["difficult"].tolist() == reference["difficult"].tolist(), fmt
            assert target["orig_size"].tolist() == list(sample.size)
        boxes, labels, flags = _expected(sample, keep_difficult)
        np.testing.assert_allclose(reference["boxes"].numpy(), boxes)
        assert reference["labels"].tolist() == labels.tolist()
        assert reference["difficult"].tolist() == flags.tolist()


def test_same_annotations_in_voc_coco_and_yolo_load_to_identical_targets(tmp_path):
    samples = default_samples()
    for sample in samples:  # YOLO cannot say "difficult"
        sample.objects = [(*o[:5], False) for o in sample.objects]
    roots = {
        "voc": write_voc(tmp_path / "voc", samples),
        "coco": write_coco(tmp_path / "coco", samples),
        "yolo": write_yolo(tmp_path / "yolo", samples),
    }
    datasets = {fmt: build_dataset(root, split="train") for fmt, root in roots.items()}
    _assert_same_items(datasets, samples, keep_difficult=False)


def test_voc_difficult_and_coco_crowd_travel_the_same_way(tmp_path):
    samples = default_samples()
    roots = {"voc": write_voc(tmp_path / "voc", samples), "coco": write_coco(tmp_path / "coco", samples)}
    for keep_difficult in (False, True):
        datasets = {fmt: build_dataset(root, split="train", keep_difficult=keep_difficult) for fmt, root in roots.items()}
        _assert_same_items(datasets, samples, keep_difficult)


def test_format_is_detected_from_the_layout(tmp_path):
    samples = default_samples()[:1]
    assert detect_format(write_voc(tmp_path / "voc", samples)) == "voc"
    assert detect_format(write_coco(tmp_path / "coco", samples)) == "coco"
    assert detect_format(write_yolo(tmp_path / "yolo", samples)) == "yolo"
    assert detect_format(tmp_path / "coco" / "annotations" / "instances_train.json") == "coco"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell the dataset format"):
        detect_format(tmp_path / "empty")
    # A folder of images alone (not labelled yet, or the images/ folder instead of the dataset) says so.
    (tmp_path / "photos").mkdir()
    for name in ("x.jpg", "y.PNG", "notes.txt"):
        (tmp_path / "photos" / name).write_bytes(b"")
    with pytest.raises(DataError, match="photos: 2 images and no annotations: .* label the images first"):
        detect_format(tmp_path / "photos")
    with pytest.raises(DataError, match="no such file"):
        build_dataset(tmp_path / "missing")


def test_coco_classes_argument_is_checked_against_the_categories(tmp_path):
    root = write_coco(tmp_path / "coco", default_samples())
    with pytest.raises(DataError, match="differ from the file's categories"):
        build_dataset(root, classes=["cat", "dog"])
    data = json.loads((root / "annotations" / "instances_train.json").read_text())
    assert build_dataset(root, classes=[c["name"] for c in data["categories"]]).classes == CLASSES


def test_changing_a_returned_target_does_not_change_the_dataset(tmp_path):
    ds = build_dataset(write_voc(tmp_path / "voc", default_samples()), split=None, keep_difficult=True)
    _, target = ds[0]
    target["boxes"].zero_()
    target["labels"].fill_(3)
    ds.get_annotation(0)["boxes"][:] = -1
    _, again = ds[0]
    np.testing.assert_allclose(again["boxes"].numpy(), [[4, 6, 30, 40], [20, 10, 60, 44]])
    assert again["labels"].tolist() == [1, 2]
    np.testing.assert_allclose(ds.get_annotation(0)["boxes"], [[4, 6, 30, 40], [20, 10, 60, 44]])


def _roboflow_coco(tmp_path, categories: list[dict], extra_annotation: dict | None = None):
    """Roboflow's COCO export: ``train/`` and ``valid/``, each with its images and ``_annotations.coco.json``."""
    source = write_coco(tmp_path / "src", default_samples())
    data = json.loads((source / "annotations" / "instances_train.json").read_text())
    data["categories"] = categories
    if extra_annotation:
        data["annotations"].append(extra_annotation)
    root = tmp_path / "roboflow"
    for folder in ("train", "valid"):
        (root / folder).mkdir(parents=True)
        for image in (source / "images" / "train").iterdir():
            (root / folder / image.name).write_bytes(image.read_bytes())
        (root / folder / "_annotations.coco.json").write_text(json.dumps(data))
    return root


ROBOFLOW_GROUP = {"id": 0, "name": "animals", "supercategory": "none"}


def test_roboflow_coco_export_valid_split_and_grouping_category(tmp_path):
    members = [{"id": i + 1, "name": name, "supercategory": "animals"} for i, name in enumerate(CLASSES)]
    root = _roboflow_coco(tmp_path, [ROBOFLOW_GROUP, *members])
    assert detect_format(root) == "coco"
    assert dataset_splits(root) == ["train", "val"]  # val is found as valid/
    for split in ("train", "val"):
        ds = build_dataset(root, split=split)
        assert ds.classes == CLASSES and ds.category_ids == [1, 2, 3]  # category 0 only groups the others
        assert ds.report.counts() == {"category_group": 1}
        assert "'animals' is the supercategory of cat, dog, bird" in ds.report.problems[0].detail
        assert len(ds) == 4
    with pytest.raises(DataError, match=r"split 'test' .*train/_annotations.coco.json"):
        build_dataset(root, split="test")


def test_a_category_without_boxes_stays_a_class_unless_it_groups_the_others(tmp_path):
    # A class nobody annotated yet is still a class; so is a group category that boxes use.
    members = [{"id": i + 1, "name": name, "supercategory": "animals"} for i, name in enumerate([*CLASSES, "fish"])]
    root = _roboflow_coco(tmp_path / "a", [*members])
    assert build_dataset(root, split="val").classes == [*CLASSES, "fish"]
    used = {"id": 999, "image_id": 100, "category_id": 0, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0}
    root = _roboflow_coco(tmp_path / "b", [ROBOFLOW_GROUP, *members], extra_annotation=used)
    ds = build_dataset(root, split="train")
    assert ds.classes == ["animals", *CLASSES, "fish"] and "category_group" not in ds.report.counts()


def _assert_same_targets(ds, samples: list[Sample]) -> None:
    assert [r.image_path.stem for r in ds.records] == [s.stem for s in samples]
    for index, sample in enumerate(samples):
        _, target = ds[index]
        boxes, labels, _ = _expected(sample, keep_difficult=False)
        np.testing.assert_allclose(target["boxes"].numpy(), boxes)
        assert target["labels"].tolist() == labels.tolist()


def test_labelimg_folder_with_the_xml_beside_the_images(tmp_path):
    samples = default_samples()
    root = write_voc_beside_images(tmp_path / "labelimg", samples)
    assert detect_format(root) == "voc" and not has_split(root, "voc", "val")
    ds = build_dataset(root, split=None)
    # No labels.txt: the classes are the names of every annotation, sorted, and the report says so.
    assert ds.classes == sorted(CLASSES) and "classes_inferred" in ds.report.counts()
    _assert_same_targets(build_dataset(root, split=None, classes=CLASSES), samples)
    # The commands hold out a validation part, disjoint from training.
    train, val = (build_dataset(root, split=s, classes=CLASSES, hold_out=True) for s in ("train", "val"))
    assert len(train) == 3 and len(val) == 1
    assert not {r.image_path for r in train.records} & {r.image_path for r in val.records}
    # A missing image is named with the folder it was looked for in; an image without XML (not labelled yet) is
    # a note, not a sample.
    (root / "b.png").unlink()
    (root / "c.xml").unlink()
    report = build_dataset(root, split=None, classes=CLASSES).report
    assert [p.detail for p in report.problems if p.kind == "image_missing"] == [f"no image b.png in {root}/"]
    assert [p.detail for p in report.problems if p.kind == "image_unannotated"] == ["1 image(s) without an annotation (c.png)"]
    assert report.record()["usable"] == 2


def test_roboflow_voc_export_with_one_folder_per_split(tmp_path):
    samples = default_samples()
    root = write_voc_beside_images(tmp_path / "rf", samples, folders={"train": ["a", "b", "c"], "valid": ["d"]})
    (root / "README.roboflow.txt").write_text("exported\n")
    assert detect_format(root) == "voc" and has_split(root, "voc", "val") and not has_split(root, "voc", "test")
    train, val = build_dataset(root, split="train", classes=CLASSES), build_dataset(root, split="val", classes=CLASSES)
    _assert_same_targets(train, samples[:3])
    _assert_same_targets(val, samples[3:])
    # The classes come from every split's annotations, so both splits agree even when one lacks a class.
    # (e.xml names e.png: a copy naming d.png would be a second annotation of d.png, refused as ambiguous.)
    (root / "valid" / "e.xml").write_text((root / "valid" / "d.xml").read_text().replace("bird", "fish").replace("d.png", "e.png"))
    (root / "valid" / "e.png").write_bytes((root / "valid" / "d.png").read_bytes())
    assert build_dataset(root, split="train").classes == build_dataset(root, split="val").classes == ["bird", "cat", "dog", "fish"]
    assert len(build_dataset(root, split=None)) == 5 and dataset_splits(root) == [None]
    with pytest.raises(DataError, match=r"test: no such split folder \(folders with annotations: train/, valid/\)"):
        build_dataset(root, split="test")
    # Folders named otherwise (a labelImg user's batches) are one dataset without splits: every command reads them all
    # (the commands then hold out a validation part).
    for old, new in (("train", "batch1"), ("valid", "batch2")):
        (root / old).rename(root / new)
    assert not has_split(root, "voc", "train") and len(build_dataset(root, split="train")) == 5
    train, val = (build_dataset(root, split=s, hold_out=True) for s in ("train", "val"))
    assert (len(train), len(val)) == (4, 1)


def test_annotations_and_images_folders_in_lower_case_are_voc_unless_they_hold_coco_json(tmp_path):
    samples = default_samples()
    root = write_voc(tmp_path / "voc", samples, classes=None)
    (root / "Annotations").rename(root / "annotations")
    (root / "JPEGImages").rename(root / "images")
    assert detect_format(root) == "voc"
    _assert_same_targets(build_dataset(root, split=None, classes=CLASSES), samples)
    coco = write_coco(tmp_path / "coco", samples)
    (coco / "annotations" / "stray.xml").write_text("<annotation/>")
    assert detect_format(coco) == "coco"


def _yolo_beside_images(tmp_path, folders: dict[str, list[Sample]]):
    """``tmp_path/beside/<folder>/`` with each sample's image and YOLO label file side by side (no difficult
    objects: YOLO cannot say "difficult"); returns the root."""
    samples = [sample for members in folders.values() for sample in members]
    for sample in samples:
        sample.objects = [(*o[:5], False) for o in sample.objects]
    yolo = write_yolo(tmp_path / "yolo", samples, yaml_names="none")
    root = tmp_path / "beside"
    for name, members in folders.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for sample in members:
            for kind, suffix in (("images", ".jpg"), ("labels", ".txt")):
                (root / name / f"{sample.stem}{suffix}").write_bytes((yolo / kind / "train" / f"{sample.stem}{suffix}").read_bytes())
    return root


def test_labelimg_yolo_folder_with_the_labels_beside_the_images(tmp_path):
    samples = default_samples()
    root = _yolo_beside_images(tmp_path, {"": samples})  # labelImg's YOLO mode: a.jpg, a.txt and classes.txt in one folder
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    assert detect_format(root) == "yolo" and not has_split(root, "yolo", "val")
    ds = build_dataset(root, split=None)
    assert ds.classes == CLASSES
    _assert_same_items({"voc": build_dataset(write_voc(tmp_path / "voc", samples), split=None), "yolo": ds}, samples, False)
    train, val = (build_dataset(root, split=s, hold_out=True) for s in ("train", "val"))
    assert (len(train), len(val)) == (3, 1)


def test_cvat_voc_export_labelmap_gives_the_classes_in_its_order(tmp_path):
    samples = default_samples()
    root = write_voc(tmp_path / "cvat", samples, classes=None, splits={"default": [s.stem for s in samples]})
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\ndog:61,245,61::\ncat:250,50,83::\nbird:0,0,255::\n")
    ds = build_dataset(root, split=None)
    assert ds.classes == ["dog", "cat", "bird"] and "classes_inferred" not in ds.report.counts()
    # CVAT names its one split "default": the commands hold out a validation part of every annotation.
    train, val = (build_dataset(root, split=s, hold_out=True) for s in ("train", "val"))
    assert (len(train), len(val)) == (3, 1) and train.classes == val.classes == ["dog", "cat", "bird"]


def test_cvat_yolo_export_darknet_layout(tmp_path):
    """CVAT's "YOLO 1.1": obj.data names obj.names and the image lists; labels lie beside the images."""
    samples = default_samples()
    subsets = {"train": samples[:3], "valid": samples[3:]}
    root = _yolo_beside_images(tmp_path, {f"obj_{subset}_data": members for subset, members in subsets.items()})
    # Older CVAT versions write the lists' paths under Darknet's data/ folder, newer ones relative to the export.
    (root / "train.txt").write_text("".join(f"data/obj_train_data/{s.stem}.jpg\n" for s in subsets["train"]))
    (root / "valid.txt").write_text("".join(f"obj_valid_data/{s.stem}.jpg\n" for s in subsets["valid"]))
    (root / "obj.names").write_text("\n".join(CLASSES) + "\n")
    (root / "obj.data").write_text("classes = 3\nnames = data/obj.names\ntrain = data/train.txt\nvalid = data/valid.txt\nbackup = backup/\n")
    assert detect_format(root) == "yolo" and has_split(root, "yolo", "val") and dataset_splits(root) == ["train", "val"]
    voc = write_voc(tmp_path / "voc", samples, splits={"train": ["a", "b", "c"], "val": ["d"]})
    for split, subset in (("train", "train"), ("val", "valid")):
        datasets = {"voc": build_dataset(voc, split=split), "yolo": build_dataset(root, split=split)}
        _assert_same_items(datasets, subsets[subset], False)
    with pytest.raises(DataError, match=r"no 'test' image list \(lists present: train, valid\)"):
        build_dataset(root, split="test")
