"""The dataset format table: every row's module reads a small dataset of its format through ``data/build.py``, the
detection ranks decide between formats in one folder, and every --format offers exactly the rows."""

from __future__ import annotations

import argparse
import json

import pytest
from fixture_writers import default_samples, write_coco, write_voc, write_voc_beside_images, write_yolo

from ssdlite.data import build_dataset, detect_format, formats
from ssdlite.data.build import dataset_splits, has_split, read_split

WRITERS = {"voc": write_voc, "coco": write_coco, "yolo": write_yolo}


@pytest.mark.parametrize("row", formats.FORMATS, ids=lambda r: r.name)
def test_every_row_is_detected_listed_and_read_through_the_table(row, tmp_path):
    module = formats.implementation(row.name)
    assert all(callable(getattr(module, name)) for name in ("detect", "has_split", "splits", "read"))
    root = WRITERS[row.name](tmp_path / row.name, default_samples())
    assert detect_format(root) == row.name
    assert dataset_splits(root) == module.splits(root)
    split = dataset_splits(root)[0]
    assert len(read_split(root, row.name, split).records) > 0
    assert has_split(root, row.name, "train") == module.has_split(root, "train")
    assert len(build_dataset(root, row.name, split="train", hold_out=True)) > 0


def test_the_surest_format_wins_and_a_tie_goes_to_the_first_row(tmp_path):
    yolo = write_yolo(tmp_path / "yolo", default_samples())
    (yolo / "notes.json").write_text(json.dumps({}))  # a stray JSON: COCO's files, YOLO's own layout
    assert detect_format(yolo) == "yolo"
    beside = write_voc_beside_images(tmp_path / "beside", default_samples())
    assert detect_format(beside) == "voc"
    (beside / "instances_train.json").write_text(json.dumps({}))  # COCO's file outranks XML beside the images
    assert detect_format(beside) == "coco"


def test_every_format_flag_offers_the_rows():
    from ssdlite.cli import build_parser
    from ssdlite.engine.config import DataConfig
    from ssdlite.models.options import field_named

    assert field_named(DataConfig, "format").metadata["choices"] == formats.names()
    seen = 0
    stack = [build_parser()]
    while stack:
        parser = stack.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
            elif "--format" in action.option_strings and "voc" in (action.choices or ()):  # export's: the runtimes
                assert tuple(action.choices) == formats.names()
                seen += 1
    assert seen >= 4  # train, eval, doctor, data check, ...
