"""The built-in shapes dataset: deterministic bytes, the promised variety, loadable as VOC."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
import torch

from ssdlite.data import SHAPES, SyntheticShapes, build_dataset, check_dataset, write_synthetic
from ssdlite.errors import UserError


def _digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path):
    first = _digest(write_synthetic(tmp_path / "a", num_train=6, num_val=3, size=96, seed=5))
    second = _digest(write_synthetic(tmp_path / "b", num_train=6, num_val=3, size=96, seed=5))
    other = _digest(write_synthetic(tmp_path / "c", num_train=6, num_val=3, size=96, seed=6))
    assert first == second
    assert len(first) == 6 + 3 + 6 + 3 + 2 + 2  # images, annotations, split files, labels.txt, synthetic.json
    assert first["JPEGImages/train-000000.jpg"] != other["JPEGImages/train-000000.jpg"]


def test_in_memory_samples_are_reproducible_in_any_order_and_splits_differ():
    ds = SyntheticShapes(10, size=128, seed=3)
    forward = [ds[i] for i in range(10)]
    again = SyntheticShapes(10, size=128, seed=3)
    for i in reversed(range(10)):
        image, target = again[i]
        assert torch.equal(image, forward[i][0]) and torch.equal(target["boxes"], forward[i][1]["boxes"])
    val = SyntheticShapes(10, size=128, seed=3, split="val")
    assert not torch.equal(val[0][0], forward[0][0])


def test_shapes_are_varied_visible_and_inside_the_image():
    ds = SyntheticShapes(72, size=128, seed=0)
    counts, labels, sides, aspects = Counter(), Counter(), [], []
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 128, 128)
        boxes = target["boxes"]
        assert bool((boxes >= 0).all() and (boxes <= 128).all())
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        sides += torch.minimum(w, h).tolist()
        aspects += (w / h).tolist()
        counts[len(boxes)] += 1
        labels.update(target["labels"].tolist())
        assert image.float().std() > 5  # a noisy, textured background, never flat
    assert set(counts) == set(range(0, 9))  # 0 to 8 objects per image
    assert set(labels) == set(range(1, len(SHAPES) + 1)) and min(labels.values()) > 25
    assert min(sides) >= 0.08 * 128 - 1 and max(sides) >= 0.4 * 128  # small to large
    assert min(aspects) < 0.85 and max(aspects) > 1.2


def test_each_box_holds_a_shape_that_stands_out_from_the_background():
    """Objects are drawn where their boxes say: a good part of each box differs clearly from the
    background just outside it (checked on boxes no other box touches)."""
    ds = SyntheticShapes(30, size=160, seed=1)
    margin, checked = 4, 0
    for i in range(len(ds)):
        pixels, boxes, _ = ds.sample(i)
        pixels = pixels.astype(float)
        for k, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
            others = np.delete(boxes, k, axis=0)
            near_x = (others[:, 0] < x2 + margin) & (others[:, 2] > x1 - margin)
            near = near_x & (others[:, 1] < y2 + margin) & (others[:, 3] > y1 - margin)
            if near.any() or min(x1, y1) < margin or max(x2, y2) > 160 - margin:
                continue
            outside = np.concatenate([pixels[y1 - margin : y1, x1:x2], pixels[y2 : y2 + margin, x1:x2]]).reshape(-1, 3)
            distance = np.abs(pixels[y1:y2, x1:x2] - np.median(outside, axis=0)).max(axis=2)  # (h, w)
            assert (distance > 30).mean() > 0.25, (i, k)
            checked += 1
    assert checked > 20


def test_written_dataset_loads_as_voc_with_the_in_memory_annotations(tmp_path):
    root = write_synthetic(tmp_path / "shapes", num_train=8, num_val=4, size=128, seed=2)
    [report] = check_dataset(root, split="val")
    assert report.ok(strict=True)
    for split, count in (("train", 8), ("val", 4)):
        loaded = build_dataset(root, split=split)
        memory = SyntheticShapes(count, size=128, seed=2, split=split)
        assert loaded.classes == list(SHAPES) == memory.classes and len(loaded) == count
        for i in range(count):
            image, target = loaded[i]
            reference_image, reference = memory[i]
            torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), reference["boxes"].as_subclass(torch.Tensor))
            assert target["labels"].tolist() == reference["labels"].tolist()
            # JPEG (quality 90) removes much of the pixel noise; 4x4 averages must still agree closely.
            pooled = torch.nn.functional.avg_pool2d((image.float() - reference_image.float())[None], 4)
            assert pooled.abs().mean() < 3
            assert loaded.get_annotation(i)["labels"].tolist() == memory.get_annotation(i)["labels"].tolist()


def test_existing_folders_are_only_replaced_when_asked_and_when_synthetic(tmp_path):
    root = write_synthetic(tmp_path / "shapes", num_train=2, num_val=1, size=64)
    with pytest.raises(UserError, match="overwrite"):
        write_synthetic(root, num_train=2, num_val=1, size=64)
    write_synthetic(root, num_train=3, num_val=1, size=64, overwrite=True)
    assert len(list((root / "JPEGImages").iterdir())) == 4
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="not a synthetic dataset"):
        write_synthetic(precious, num_train=1, num_val=1, size=64, overwrite=True)
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious", "shapes"]  # no temporary folder left
