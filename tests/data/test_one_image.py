"""One annotation, one image: every name an annotation gives its image is checked against the image it is applied to.

A VOC XML names its image by ``<filename>``, by ``<path>`` and by its own stem; a YOLO label file by its stem; a
COCO image entry by ``file_name``. When those disagree, or two annotations claim one image, or two images one label
file, the boxes could land on an image they were not written for: each such sample is an error (skipped), and the
check says which files collide. A likely rename is a warning. The ordinary cases (labelImg's ``<path>`` on the
annotator's machine, a ``<filename>`` without or with another extension, Roboflow's renamed images) are no problem.
"""

from __future__ import annotations

import json

import pytest
from fixture_writers import (
    assert_good_samples_loaded,
    default_samples,
    index_of,
    write_coco,
    write_image,
    write_voc,
    write_voc_beside_images,
    write_yolo,
)

from ssdlite.cli import main
from ssdlite.data import build_dataset, check_dataset


def check(capsys, root, *flags):
    """``ssdlite data check``: exit status and the problem lines."""
    status = main(["data", "check", str(root), *flags])
    return status, [line for line in capsys.readouterr().out.splitlines() if line.endswith("]")]


def set_xml(root, stem: str, old: str, new: str) -> None:
    path = root / "Annotations" / f"{stem}.xml"
    path.write_text(path.read_text().replace(old, new))


def naming_problems(lines):
    return [line for line in lines if line.endswith(("[annotation_ambiguous]", "[image_renamed]"))]


def only(lines, kind):
    found = [line for line in lines if line.endswith(f"[{kind}]")]
    assert found, lines
    return found


# Two images, one label file.


def test_yolo_images_sharing_one_label_file_are_both_refused(tmp_path, capsys):
    root = write_yolo(tmp_path / "yolo", default_samples())
    write_image(root / "images" / "train" / "a.png", (48, 64), seed=7)  # a.jpg and a.png would both take a.txt
    status, lines = check(capsys, root)
    assert status == 1
    first, second = only(lines, "annotation_ambiguous")
    label = root / "labels" / "train" / "a.txt"
    assert first.startswith(f"{root / 'images' / 'train' / 'a.jpg'}: error: its label file {label} is also the label file of ")
    assert second.startswith(f"{root / 'images' / 'train' / 'a.png'}: error: ") and first.count("a.png") == 1
    ds = build_dataset(root)
    assert index_of(ds, "a") is None and len(ds) == 3  # neither takes a's boxes; b, c, d intact
    assert ds.get_annotation(index_of(ds, "b"))["labels"].tolist() == [3]


# VOC: <filename>, <path> and the XML's own name.


def test_voc_xml_naming_another_image_than_its_own_is_refused(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", default_samples())
    set_xml(root, "a", "<filename>a.jpg", "<filename>b.jpg")  # a copied XML, or a typo
    status, lines = check(capsys, root)
    assert status == 1
    [line] = only(lines, "annotation_ambiguous")
    assert line.startswith(f"{root / 'Annotations' / 'a.xml'}: error: it names b.jpg, but a.jpg lies beside it")
    ds = build_dataset(root, split=None)
    assert index_of(ds, "a") is None
    assert ds.get_annotation(index_of(ds, "b"))["labels"].tolist() == [3]  # b keeps only its own bird


def test_two_voc_xmls_naming_one_image_are_both_refused(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", default_samples())
    (root / "Annotations" / "e.xml").write_text((root / "Annotations" / "c.xml").read_text().replace("c.jpg", "a.jpg"))
    status, lines = check(capsys, root)
    assert status == 1
    errors = only(lines, "annotation_ambiguous")
    assert [line.split(":")[0] for line in errors] == [str(root / "Annotations" / f"{s}.xml") for s in ("a", "e")]
    assert f"{root / 'Annotations' / 'e.xml'} also names {root / 'JPEGImages' / 'a.jpg'}" in errors[0]
    assert index_of(build_dataset(root, split=None), "a") is None


def test_voc_filename_and_path_naming_two_images_is_refused(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", default_samples())
    set_xml(root, "a", "</filename>", "</filename><path>/home/me/photos/b.jpg</path>")
    status, lines = check(capsys, root)
    assert status == 1
    [line] = only(lines, "annotation_ambiguous")
    assert "its <filename> and <path> name two different images" in line and line.startswith(str(root / "Annotations" / "a.xml"))


def test_voc_xml_beside_two_images_of_its_name_naming_neither_is_refused(tmp_path, capsys):
    root = write_voc_beside_images(tmp_path / "labelimg", default_samples())
    (root / "a.jpg").write_bytes((root / "a.png").read_bytes())
    (root / "a.xml").write_text((root / "a.xml").read_text().replace("a.png</", "a</"))  # <filename> and <path>: "a"
    status, lines = check(capsys, root, "--format", "voc")
    assert status == 1
    [line] = only(lines, "annotation_ambiguous")
    assert "a.jpg and a.png both lie under the annotation's name and it names neither" in line


def test_voc_xml_naming_a_missing_image_is_applied_to_its_own_with_a_warning(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", default_samples())
    set_xml(root, "a", "<filename>a.jpg", "<filename>IMG_0001.jpg")  # the image was renamed after labelling
    status, lines = check(capsys, root)
    assert status == 0
    [line] = only(lines, "image_renamed")
    assert line.startswith(f"{root / 'Annotations' / 'a.xml'}: warning: it names IMG_0001.jpg, which is not in ")
    assert "(a.jpg is); applied to the image under the annotation's own name" in line
    assert check(capsys, root, "--strict")[0] == 1
    assert_good_samples_loaded(build_dataset(root, split=None))


@pytest.mark.parametrize(
    "old, new",
    [
        ("<filename>a.jpg", "<filename>a"),  # no extension (many VOC sets)
        ("<filename>a.jpg", "<filename>a.png"),  # the image converted since
        ("</filename>", "</filename><path>C:\\Users\\me\\Desktop\\data\\a.jpg</path>"),  # labelImg on another machine
        ("</filename>", "</filename><path>/home/pi/JPEGImages/a</path>"),
    ],
)
def test_ordinary_voc_names_are_no_problem(tmp_path, capsys, old, new):
    root = write_voc(tmp_path / "voc", default_samples())
    set_xml(root, "a", old, new)
    status, lines = check(capsys, root)
    assert status == 0 and lines == []
    assert_good_samples_loaded(build_dataset(root, split=None))


def test_labelimg_and_roboflow_names_are_no_problem(tmp_path, capsys):
    # labelImg: <path> on the annotator's machine (C:\Users\me\a.png), XML beside the image.
    root = write_voc_beside_images(tmp_path / "labelimg", default_samples())
    status, lines = check(capsys, root)
    assert status == 0 and naming_problems(lines) == [] and lines  # (its one line: classes inferred, no labels.txt)
    # Roboflow renames each image to <stem>_<ext>.rf.<hash>.<ext>, and names the XML and <filename> after it.
    root = write_voc(tmp_path / "rf", default_samples())
    for sample in default_samples():
        new = f"{sample.stem}_jpg.rf.0123456789abcdef.jpg"
        (root / "JPEGImages" / f"{sample.stem}.jpg").rename(root / "JPEGImages" / new)
        xml = root / "Annotations" / f"{sample.stem}.xml"
        xml.write_text(xml.read_text().replace(f"{sample.stem}.jpg", new))
        xml.rename(xml.with_name(new.replace(".jpg", ".xml")))
    status, lines = check(capsys, root)
    assert status == 0 and lines == []


# COCO: file_name.


def test_coco_entries_naming_one_file_are_both_refused(tmp_path, capsys):
    root = write_coco(tmp_path / "coco", default_samples())
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["images"][1]["file_name"] = "./a.jpg"  # b's entry, pointed at a's image
    path.write_text(json.dumps(data))
    status, lines = check(capsys, root)
    assert status == 1
    first, second = only(lines, "annotation_ambiguous")
    assert first.startswith(f"{path} (a.jpg): error: image id 100 and image id 101 name the same file ")
    assert second.startswith(f"{path} (./a.jpg): error: image id 101 and image id 100 ")
    [report] = check_dataset(root)
    assert report.usable() == 2
