"""A dataset without a validation split: the commands hold out 20% of its images, the same in every command."""

from __future__ import annotations

import pytest
from fixture_writers import Sample, write_voc, write_yolo

from ssdlite.data import build_dataset
from ssdlite.data.check import check_dataset
from ssdlite.errors import DataError


def _samples(n: int) -> list[Sample]:
    return [Sample(f"img{i:02d}", (32, 40), [("cat", 2, 3, 20, 25, False)]) for i in range(n)]


def _split(root, split):
    ds = build_dataset(root, split=split, hold_out=True)
    return ds, {r.image_path.stem for r in ds.records}


def test_flat_dataset_gives_disjoint_train_and_val_the_same_in_every_format(tmp_path):
    samples = _samples(11)
    voc, yolo = write_voc(tmp_path / "voc", samples), write_yolo(tmp_path / "yolo", samples, yaml_names="none")
    (yolo / "classes.txt").write_text("cat\ndog\nbird\n")
    parts = {}
    for root in (voc, yolo):
        train, train_stems = _split(root, "train")
        val, val_stems = _split(root, "val")
        assert len(val_stems) == 2 and len(train_stems) == 9  # round(0.2 * 11), at least one
        assert not train_stems & val_stems and train_stems | val_stems == {s.stem for s in samples}
        assert "split_held_out" in val.report.counts() and "2 of the 11" in val.report.problems[-1].detail
        assert len(train) == 9 and train.report.record()["usable"] == 9
        parts[root.name] = val_stems
    assert parts["voc"] == parts["yolo"]  # chosen by file name: no state, no seed
    assert _split(voc, "val")[1] == parts["voc"]
    # The library's own default reads the dataset as published.
    assert len(build_dataset(voc, split="train")) == 11


def test_train_split_without_val_is_split_in_two_and_a_dataset_with_val_is_untouched(tmp_path):
    samples = _samples(10)
    root = write_voc(tmp_path / "voc", samples, splits={"train": [s.stem for s in samples[:5]], "test": [samples[9].stem]})
    train, train_stems = _split(root, "train")
    val, val_stems = _split(root, "val")
    assert len(val_stems) == 1 and len(train_stems) == 4 and (train_stems | val_stems) == {f"img0{i}" for i in range(5)}
    assert "of the 'train' split" in val.report.problems[-1].detail
    both = write_voc(tmp_path / "both", samples, splits={"train": ["img00", "img01"], "valid": ["img02"]})
    assert _split(both, "val")[1] == {"img02"} and _split(both, "train")[1] == {"img00", "img01"}
    assert "split_held_out" not in build_dataset(both, split="val", hold_out=True).report.counts()


def test_yolo_split_folders_name_a_missing_split_instead_of_reading_every_image(tmp_path):
    root = write_yolo(tmp_path / "yolo", _samples(6), yaml_names="none")
    (root / "classes.txt").write_text("cat\ndog\nbird\n")
    with pytest.raises(DataError, match=r"no 'test' split .*folders in images/: train"):
        build_dataset(root, split="test")
    with pytest.raises(DataError, match="no 'val' split"):
        build_dataset(root, split="val")  # before: every image under images/, the training ones too
    assert len(build_dataset(root, split="val", hold_out=True)) == 1


def test_too_few_images_to_hold_out_is_a_clear_error(tmp_path):
    root = write_voc(tmp_path / "voc", _samples(1))
    with pytest.raises(DataError, match=r"1 usable sample\(s\) and no validation split.*--val-split ''"):
        build_dataset(root, split="val", hold_out=True)


def test_data_check_reads_every_file_once_and_a_named_split_as_training_does(tmp_path):
    root = write_voc(tmp_path / "voc", _samples(10))
    (whole,) = check_dataset(root)
    assert whole.num_samples == 10 and "split_held_out" not in whole.counts()
    (val,) = check_dataset(root, split="val")
    assert val.num_samples == 2 and val.counts()["split_held_out"] == 1


def test_a_flat_yolo_folder_is_every_split_for_the_library_and_held_out_for_the_commands(tmp_path):
    root = write_yolo(tmp_path / "yolo", _samples(5), yaml_names="none")
    for kind in ("images", "labels"):  # images/*.jpg and labels/*.txt, no split folders
        for f in (root / kind / "train").iterdir():
            f.rename(root / kind / f.name)
        (root / kind / "train").rmdir()
    (root / "classes.txt").write_text("cat\ndog\nbird\n")
    assert len(build_dataset(root, split="train")) == 5 and len(build_dataset(root, split="val")) == 5
    assert len(build_dataset(root, split="train", hold_out=True)) == 4 and len(build_dataset(root, split="val", hold_out=True)) == 1


def test_data_check_finds_a_yolo_valid_folder(tmp_path):
    root = write_yolo(tmp_path / "yolo", _samples(3), yaml_names="none")
    (root / "classes.txt").write_text("cat\ndog\nbird\n")
    for kind in ("images", "labels"):
        (root / kind / "train").rename(root / kind / "valid")
    write_yolo(tmp_path / "yolo", _samples(4)[3:], yaml_names="none")  # images/train: one more image
    reports = check_dataset(root)
    assert [r.num_samples for r in reports] == [1, 3]  # train, then val found as valid/
    assert len(build_dataset(root, split="val")) == 3


def test_each_part_reports_its_own_samples_problems(tmp_path):
    samples = _samples(10)
    for sample in samples:  # every image has one box past its right edge: one box_clipped warning each
        sample.objects.append(("dog", 30, 3, 45, 20, False))
    root = write_voc(tmp_path / "voc", samples)
    train, val = (build_dataset(root, split=s, hold_out=True) for s in ("train", "val"))
    clipped = {s: {p.file for p in ds.report.problems if p.kind == "box_clipped"} for s, ds in (("train", train), ("val", val))}
    assert clipped["train"] == {r.source for r in train.records} and clipped["val"] == {r.source for r in val.records}
    assert len(clipped["train"]) == 8 and len(clipped["val"]) == 2
    assert "split_held_out" in train.report.counts() and "split_held_out" in val.report.counts()
