"""Annotation entries that cannot become a box: each is reported with its file and entry, nothing else is lost.

One test per kind the issue names (a VOC coordinate that is not a number, a split entry without its
annotation, a COCO annotation naming no image, a YOLO line with the wrong field count), each through the
command line as a user runs it, then a property test: plant ``k`` broken entries among a dataset's
objects and exactly ``k`` problems come back, every other object still loaded.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fixture_writers import (
    CLASSES,
    assert_good_samples_loaded,
    default_samples,
    index_of,
    voc_object_xml,
    voc_raw_object,
    voc_with_bad,
    voc_xml,
    write_coco,
    write_voc,
    write_yolo,
    yolo_line,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssdlite.cli import main
from ssdlite.data import build_dataset, check_dataset, data_summary
from ssdlite.errors import DataError


def check_lines(capsys, path: Path, *flags: str) -> tuple[int, list[str], str]:
    """``ssdlite data check PATH [flags]``: exit status, stdout lines and stderr."""
    status = main(["data", "check", str(path), *flags])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def assert_warning_then_strict_failure(capsys, path: Path, file: Path, kind: str, *entry: str) -> str:
    """Exit 0 with one warning line naming ``file`` and ``entry``; ``--strict`` exits 1. Returns the line."""
    status, lines, err = check_lines(capsys, path)
    assert status == 0
    [line] = [line for line in lines if f"[{kind}]" in line]
    assert line.startswith(f"{file}: warning: ") and all(part in line for part in entry), line
    assert "passed with 1 warning; --strict fails on them" in err
    status, _, err = check_lines(capsys, path, "--strict")
    assert status == 1 and "FAILED" in err
    return line


# VOC: a coordinate that is not a number.


@pytest.mark.parametrize(
    "value, kind, words",
    [
        ("abc", "box_malformed", "xmax 'abc' is not a number"),
        ("nan", "box_nonfinite", "xmax=nan"),
        ("inf", "box_nonfinite", "non-finite"),
    ],
)
def test_voc_coordinate_that_is_not_a_number_is_a_named_warning(tmp_path, capsys, value, kind, words):
    root = voc_with_bad(tmp_path, voc_raw_object("cat", 2, 5, value, 30) + voc_object_xml("dog", 2, 2, 10, 10))
    bad_xml = root / "Annotations" / "bad.xml"
    line = assert_warning_then_strict_failure(capsys, root, bad_xml, kind, "object 0 'cat'", words, "box dropped")
    assert "no_objects" not in "\n".join(check_lines(capsys, root)[1])  # the dog is still there
    ds = build_dataset(root, split=None)
    assert ds[index_of(ds, "bad")][1]["labels"].tolist() == [2]
    assert_good_samples_loaded(ds)
    text, counts = data_summary(ds)  # what training prints before its first step
    assert line in text.splitlines() and counts["by_kind"] == {kind: 1} and counts["by_severity"]["warning"] == 1


def test_voc_image_whose_only_object_is_unreadable_says_so(tmp_path, capsys):
    root = voc_with_bad(tmp_path, voc_raw_object("cat", "abc", 5, 20, 30))
    _, lines, _ = check_lines(capsys, root)
    bad_xml = root / "Annotations" / "bad.xml"
    warning = "warning: object 0 'cat' has no usable bndbox: xmin 'abc' is not a number; box dropped [box_malformed]"
    assert f"{bad_xml}: {warning}" in lines
    # The background-only outcome is stated as a consequence of the warning, not as an empty annotation.
    assert f"{bad_xml}: note: all 1 of its objects were dropped; kept as a background-only image [no_objects]" in lines


# VOC: a sample listed in ImageSets/Main/<split>.txt whose annotation is missing.


def test_voc_split_entry_without_annotation_fails_the_check_of_the_whole_dataset(tmp_path, capsys):
    splits = {"train": ["a", "b", "ghost", "c"], "val": ["d", "ghost"]}
    root = write_voc(tmp_path / "voc", default_samples(), splits=splits)
    ghost = root / "Annotations" / "ghost.xml"
    main_dir = root / "ImageSets" / "Main"
    for flags, listed, counts in [
        ((), f"{main_dir / 'train.txt'} line 3, {main_dir / 'val.txt'} line 2", "5 samples, 4 usable, 1 problem:"),
        (("--split", "train"), f"{main_dir / 'train.txt'} line 3", "4 samples, 3 usable, 1 problem:"),
    ]:
        status, lines, err = check_lines(capsys, root, *flags)
        assert status == 1 and "FAILED" in err
        [line] = [line for line in lines if "[annotation_missing]" in line]
        error = f"error: 'ghost' is listed in {listed}, but there is no annotation file; sample skipped [annotation_missing]"
        assert line == f"{ghost}: {error}"
        assert any(counts in line for line in lines)
    assert check_lines(capsys, root, "--split", "val")[0] == 1
    ds = build_dataset(root, split=None)  # what is there is still usable
    assert len(ds) == 4
    assert_good_samples_loaded(ds)


# COCO: an annotation whose image_id names no image.


def test_coco_annotation_naming_no_image_is_a_named_warning(tmp_path, capsys):
    root = write_coco(tmp_path / "coco", default_samples())
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 999, "image_id": 12345, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0})
    path.write_text(json.dumps(data))
    words = ("annotation 999", "image id 12345", "annotation ignored")
    assert_warning_then_strict_failure(capsys, root, path, "annotation_orphan", *words)
    ds = build_dataset(root)
    assert len(ds) == 4 and sum(len(ds.get_annotation(i)["labels"]) for i in range(4)) == 7  # 8 less the crowd box


def test_coco_entries_that_are_not_objects_or_have_unusable_ids_are_named_not_a_traceback(tmp_path):
    root = write_coco(tmp_path / "coco", default_samples())
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"] += ["not an object", {"id": 7001, "image_id": [100], "category_id": 1, "bbox": [1, 1, 5, 5]}]
    data["annotations"] += [{"image_id": 100, "category_id": 1, "bbox": [1, 1, "x", 5]}]
    path.write_text(json.dumps(data))
    [report] = check_dataset(root)
    lines = [p.line() for p in report.problems if p.severity == "warning"]
    assert len(lines) == 3 and report.ok() and not report.ok(strict=True)
    position = len(data["annotations"]) - 3
    assert f"annotations[{position}] is not a JSON object" in lines[0]
    assert "annotation 7001 refers to image id [100]" in lines[1]
    assert f"annotations[{position + 2}] bbox=[1, 1, 'x', 5] is not 4 numbers" in lines[2]


def test_coco_iscrowd_written_as_a_string_or_boolean_is_read_as_written(tmp_path, capsys):
    # Each of the 8 annotations' iscrowd rewritten as some exporter writes it; only d's first bird (the sixth) is a
    # crowd. bool("0") is True: read as truth, every "0" box was a crowd and training had none.
    root = write_coco(tmp_path / "coco", default_samples())
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    written = ["0", 0, False, "false", "0", "1", "False", 0.0]
    for annotation, value in zip(data["annotations"], written):
        annotation["iscrowd"] = value
    path.write_text(json.dumps(data))
    ds = build_dataset(root, keep_difficult=True)
    crowd = [flag for i in range(len(ds)) for flag in ds.get_annotation(i)["iscrowd"].tolist()]
    assert crowd == [False, False, False, False, False, True, False, False]
    assert ds.report.problems == []
    # Anything else is no flag at all: the box is dropped and its annotation named.
    for annotation, value in zip(data["annotations"], ["yes", 2, None]):
        annotation["iscrowd"] = value
    path.write_text(json.dumps(data))
    status, lines, _ = check_lines(capsys, root)
    bad = [line for line in lines if line.endswith("[box_malformed]")]
    assert status == 0 and len(bad) == 3
    for line, words in zip(bad, ["annotation 1 iscrowd='yes'", "annotation 2 iscrowd=2", "annotation 3 iscrowd=None"]):
        assert f"{words} is not 0, 1, true or false; box dropped" in line, line


# YOLO: a label line with the wrong number of fields (and the other ways a line cannot be read).


def test_yolo_label_line_with_the_wrong_field_count_is_a_named_warning(tmp_path, capsys):
    root = write_yolo(tmp_path / "yolo", default_samples())
    label_file = root / "labels" / "train" / "b.txt"
    label_file.write_text(yolo_line(2, (0, 0, 40, 40), (40, 40)) + "\n0 0.5 0.5\n")
    words = ("line 2 '0 0.5 0.5' has 3 fields; a box has 5 (class cx cy w h)", "box dropped")
    assert_warning_then_strict_failure(capsys, root / "data.yaml", label_file, "box_malformed", *words)
    ds = build_dataset(root)
    assert ds[1][1]["labels"].tolist() == [3]
    assert [len(ds[i][1]["labels"]) for i in range(4)] == [2, 1, 2, 3]  # YOLO has no difficult flag


@pytest.mark.parametrize(
    "line, kind, words",
    [
        ("1 0.5 abc 0.2 0.2", "box_malformed", "field 3 'abc' is not a number"),
        ("nan 0.5 0.5 0.2 0.2", "box_malformed", "class 'nan' is not an integer class id"),
        ("1.5 0.5 0.5 0.2 0.2", "box_malformed", "class '1.5' is not an integer class id"),
        ("1 0.5 0.5 0.2 0.2 0.3", "box_malformed", "has 6 fields"),
        ("1 0.2 0.2 nan 0.3 0.4 0.5", "box_nonfinite", "non-finite"),  # min() of a polygon would skip the NaN
    ],
)
def test_yolo_line_that_is_not_a_box_is_named_with_its_line(tmp_path, line, kind, words):
    root = write_yolo(tmp_path / "yolo", default_samples())
    label_file = root / "labels" / "train" / "b.txt"
    label_file.write_text(line + "\n" + yolo_line(2, (0, 0, 40, 40), (40, 40)) + "\n")
    ds = build_dataset(root)
    [problem] = [p for p in ds.report.problems if p.severity != "note"]
    assert (problem.kind, problem.file) == (kind, str(label_file))
    assert problem.detail.startswith(f"line 1 {line!r}") and words in problem.detail
    assert ds[1][1]["labels"].tolist() == [3]


# What training prints before its first step.


def test_data_summary_names_the_first_problems_and_counts_them_all(tmp_path):
    import torch

    root = write_yolo(tmp_path / "yolo", default_samples())
    (root / "labels" / "train" / "b.txt").write_text("".join(f"0 0.5 0.5 {i}\n" for i in range(5)))
    (root / "labels" / "train" / "d.txt").unlink()
    ds = build_dataset(root)
    text, counts = data_summary(torch.utils.data.Subset(ds, [0, 1]), max_lines=3)
    lines = text.splitlines()
    assert [line.split(": ")[1] for line in lines[:3]] == ["warning"] * 3 and "line 1 " in lines[0]
    assert lines[3] == "... and 2 more (ssdlite data check lists every one)"
    assert lines[4:] == ds.report.summary().splitlines()  # notes are counted there, not listed
    assert json.loads(json.dumps(counts)) == {
        "source": f"{root} [train]",
        "samples": 4,
        "usable": 4,
        "problems": 7,
        "by_severity": {"note": 2, "warning": 5, "error": 0, "fatal": 0},
        "by_kind": {"box_malformed": 5, "label_missing": 1, "no_objects": 1},
    }


# Property: k broken entries among N objects give exactly k problems and lose nothing else.

SAMPLES = default_samples()
OBJECTS = [(index, position) for index, sample in enumerate(SAMPLES) for position in range(len(sample.objects))]  # N = 8

# Four ways to break an entry per format, each a function of the good entry. VOC gets an object
# ``(name, x1, y1, x2, y2, difficult)``, YOLO a label line, COCO an annotation dict.
BREAKS = {
    "voc": [
        lambda o: voc_raw_object(o[0], "abc", o[2] + 1, o[3], o[4]),  # not a number
        lambda o: voc_raw_object(o[0], o[1] + 1, o[2] + 1, "nan", o[4]),  # non-finite
        lambda o: f"<object><name>{o[0]}</name></object>",  # no bndbox
        lambda o: voc_raw_object(o[0], o[1] + 1, "", o[3], o[4]),  # empty field
    ],
    "yolo": [
        lambda line: " ".join(line.split()[:3]),  # 3 fields
        lambda line: line.replace(" ", " inf ", 1).rsplit(" ", 1)[0],  # non-finite
        lambda line: line + " 0.5",  # 6 fields
        lambda line: line.rsplit(" ", 1)[0] + " x",  # not a number
    ],
    "coco": [
        lambda a: a | {"bbox": a["bbox"][:3]},  # 3 numbers
        lambda a: a | {"image_id": 99999},  # names no image
        lambda a: a | {"bbox": None},  # no box
        lambda a: a | {"bbox": [a["bbox"][0], float("nan"), *a["bbox"][2:]]},  # non-finite (json writes NaN)
    ],
}


def plant(root: Path, fmt: str, broken: dict[int, int]) -> dict[tuple[int, int], tuple[str, str]]:
    """Rewrite the objects ``broken`` (index in OBJECTS -> index in BREAKS) in place; returns each
    object's ``(file, entry)`` as a problem names them."""
    names = {}
    for index, sample in enumerate(SAMPLES):
        entries = []
        for position, obj in enumerate(sample.objects):
            how = broken.get(OBJECTS.index((index, position)))
            if fmt == "voc":
                entries.append(voc_object_xml(*obj) if how is None else BREAKS["voc"][how](obj))
                names[index, position] = (str(root / "Annotations" / f"{sample.stem}.xml"), f"object {position} '{obj[0]}'")
            elif fmt == "yolo":
                line = yolo_line(CLASSES.index(obj[0]), obj[1:5], sample.size)
                entries.append(line if how is None else BREAKS["yolo"][how](line))
                names[index, position] = (str(root / "labels" / "train" / f"{sample.stem}.txt"), f"line {position + 1} ")
        if fmt == "voc":
            (root / "Annotations" / f"{sample.stem}.xml").write_text(voc_xml(f"{sample.stem}.jpg", sample.size, "".join(entries)))
        elif fmt == "yolo":
            (root / "labels" / "train" / f"{sample.stem}.txt").write_text("\n".join(entries) + "\n")
    if fmt == "coco":
        path = root / "annotations" / "instances_train.json"
        data = json.loads(path.read_text())
        for k, annotation in enumerate(data["annotations"]):  # write_coco's order is OBJECTS' order
            how = broken.get(k)
            data["annotations"][k] = annotation if how is None else BREAKS["coco"][how](annotation)
            names[OBJECTS[k]] = (str(path), f"annotation {annotation['id']} ")  # a box's problem names "<json> (a.jpg)"
        path.write_text(json.dumps(data))
    return names


@pytest.mark.parametrize("fmt", ["voc", "yolo", "coco"])
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(broken=st.dictionaries(st.integers(0, len(OBJECTS) - 1), st.integers(0, 3)))
def test_k_broken_entries_give_k_problems_and_lose_nothing_else(fmt, broken):
    with tempfile.TemporaryDirectory() as folder:
        writer = {"voc": write_voc, "yolo": write_yolo, "coco": write_coco}[fmt]
        root = writer(Path(folder) / fmt, SAMPLES)
        names = plant(root, fmt, broken)
        split = None if fmt == "voc" else "train"
        if all(k in broken or SAMPLES[i].objects[p][5] for k, (i, p) in enumerate(OBJECTS)):
            # Every box training would use is broken (the rest are difficult): the dataset is refused, saying why.
            with pytest.raises(DataError, match=r"no usable box: .*\[no_boxes\]"):
                build_dataset(root, split=split, keep_difficult=True)
            return
        ds = build_dataset(root, split=split, keep_difficult=True)

        problems = ds.report.failures(strict=True)
        shown = [p.line() for p in problems]
        assert len(problems) == len(broken), shown
        for k in broken:  # each planted entry is named, with its file, by exactly one problem
            file, entry = names[OBJECTS[k]]
            assert sum(p.file.startswith(file) and entry in p.detail for p in problems) == 1, (file, entry, shown)

        assert len(ds) == 4
        emptied = 0
        for index, sample in enumerate(SAMPLES):
            kept = [obj for position, obj in enumerate(sample.objects) if OBJECTS.index((index, position)) not in broken]
            emptied += not kept
            annotation = ds.get_annotation(index_of(ds, sample.stem))
            expected = np.array([obj[1:5] for obj in kept], dtype=np.float32).reshape(-1, 4)
            np.testing.assert_allclose(annotation["boxes"], expected, atol=1e-4)  # YOLO: 8 decimals, normalized
            assert annotation["labels"].tolist() == [CLASSES.index(obj[0]) + 1 for obj in kept]
        # The only notes: "all of its objects were dropped" for images whose every entry was broken.
        assert [p.kind for p in ds.report.problems if p.severity == "note"] == ["no_objects"] * emptied
