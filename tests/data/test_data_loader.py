"""The loader: stacking collate, order fixed by (seed, epoch), augmentation by (seed, epoch, sample), distributed sampling,
load failures from workers."""

from __future__ import annotations

import pytest
import torch
from fixture_writers import default_samples, index_of, voc_object_xml, voc_with_bad, write_voc
from torchvision import tv_tensors

from ssdlite.data import SyntheticShapes, build_dataset, build_loader, train_transforms
from ssdlite.data.loader import derive_seed, steps_per_epoch
from ssdlite.models.backbones import SIGNED_UNIT


def _ids(loader) -> list[int]:
    return [int(t["image_id"]) for _, targets in loader for t in targets]


class _IndexOnly(torch.utils.data.Dataset):
    """A dataset whose item is just its index (as a target), to look at sampling alone."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        return torch.zeros(1), {"image_id": index}


def test_images_of_one_size_are_stacked_and_targets_are_plain_tensors():
    ds = SyntheticShapes(5, size=64)
    images, targets = next(iter(build_loader(ds, batch_size=3)))
    assert type(images) is torch.Tensor and images.shape == (3, 3, 64, 64) and images.dtype == torch.uint8
    assert torch.equal(images[1], ds[1][0].as_subclass(torch.Tensor))
    for i, target in enumerate(targets):
        boxes, labels = target["boxes"], target["labels"]
        assert type(boxes) is torch.Tensor and not isinstance(boxes, tv_tensors.BoundingBoxes)
        assert boxes.dtype == torch.float32 and boxes.shape[-1] == 4 and labels.dtype == torch.int64
        assert torch.equal(boxes, ds[i][1]["boxes"].as_subclass(torch.Tensor))
        # Only what the loss reads travels as tensors (each is a shared-memory segment from a worker).
        assert target["image_id"] == i and type(target["image_id"]) is int
        assert all(not isinstance(v, torch.Tensor) for k, v in target.items() if k not in ("boxes", "labels"))


def test_images_of_different_sizes_stay_a_list_in_dataset_order(tmp_path):
    ds = build_dataset(write_voc(tmp_path / "voc", default_samples()), split=None)
    loader = build_loader(ds, batch_size=3)
    images, targets = next(iter(loader))
    assert isinstance(images, list) and len(images) == len(targets) == 3
    assert [tuple(i.shape[-2:]) for i in images] == [s.size for s in default_samples()[:3]]  # sizes differ: no stacking
    assert all(type(i) is torch.Tensor for i in images)
    assert not loader.pin_memory
    assert _ids(loader) == [0, 1, 2, 3]
    assert len(build_loader(ds, batch_size=3, drop_last=True)) == 1


def test_further_item_fields_come_back_as_lists():
    class WithExtras(_IndexOnly):
        def __getitem__(self, index: int):
            return torch.zeros(1), {"image_id": index}, index, {"name": f"n{index}"}

    batches = list(build_loader(WithExtras(5), batch_size=2))
    assert [len(b) for b in batches] == [4, 4, 4]
    images, targets, indices, notes = batches[1]
    assert images.shape == (2, 1) and indices == [2, 3] and notes == [{"name": "n2"}, {"name": "n3"}]


def test_shuffle_is_fixed_by_seed_and_epoch():
    def order(seed: int, epoch: int) -> list[int]:
        return _ids(build_loader(_IndexOnly(24), batch_size=4, shuffle=True, seed=seed, epoch=epoch))

    first = order(1, 0)
    assert sorted(first) == list(range(24)) and first != list(range(24))
    assert order(1, 0) == first  # a resumed run rebuilds the same epoch
    assert order(1, 1) != first
    assert order(2, 0) != first


@pytest.mark.parametrize("world_size", [2, 4])
def test_global_batch_k_is_the_same_samples_for_any_world_size(world_size):
    n, global_batch = 37, 8

    def batches(rank: int, world: int) -> list[list[int]]:
        loader = build_loader(
            _IndexOnly(n), global_batch // world, epoch=3, seed=5, shuffle=True, drop_last=True, rank=rank, world_size=world
        )
        assert len(loader) == steps_per_epoch(n, global_batch)
        return [[int(t["image_id"]) for t in targets] for _, targets in loader]

    single = batches(0, 1)
    ranks = [batches(r, world_size) for r in range(world_size)]
    assert len(single) == n // global_batch
    for k, batch in enumerate(single):
        assert sorted(batch) == sorted(i for r in ranks for i in r[k]), f"global batch {k}"
    everything = [i for r in ranks for b in r for i in b]
    assert len(everything) == len(set(everything))  # no sample on two ranks


def test_rank_must_be_below_world_size():
    with pytest.raises(ValueError, match="rank"):
        build_loader(_IndexOnly(4), 2, rank=2, world_size=2)


def _boxes(loader) -> list[list[float]]:
    return [t["boxes"].tolist() for _, targets in loader for t in targets]


def test_augmentations_are_fixed_by_seed_and_epoch_whatever_the_workers():
    ds = SyntheticShapes(8, size=64, transforms=train_transforms("ssd", 48, SIGNED_UNIT[0]))

    def boxes(seed: int, epoch: int, workers: int = 2) -> list[list[float]]:
        return _boxes(build_loader(ds, batch_size=2, num_workers=workers, seed=seed, epoch=epoch))

    first = boxes(0, 1)
    assert boxes(0, 1) == first
    assert boxes(0, 1, workers=0) == first == boxes(0, 1, workers=1)  # each sample carries its own seed
    assert boxes(0, 2) != first
    assert boxes(1, 1) != first


def test_a_kept_loader_moved_to_an_epoch_gives_that_epochs_batches():
    """Training keeps one loader and its workers for the run: epoch e from it must equal a fresh loader's
    epoch e, whichever epochs it served before, so a resumed run stays bit-identical."""
    ds = SyntheticShapes(8, size=64, transforms=train_transforms("ssd", 48, SIGNED_UNIT[0]))
    kept = build_loader(ds, batch_size=2, num_workers=2, seed=3, shuffle=True, persistent_workers=True)
    assert kept.persistent_workers
    served = []
    for epoch in (0, 1, 2):
        kept.set_epoch(epoch)
        served.append(_boxes(kept))
    for epoch in (2, 1):
        assert served[epoch] == _boxes(build_loader(ds, batch_size=2, seed=3, shuffle=True, epoch=epoch))
    assert served[0] != served[1] != served[2]


def test_loading_in_the_main_process_leaves_its_generators_as_they_were():
    ds = SyntheticShapes(4, size=64, transforms=train_transforms("ssd", 48, SIGNED_UNIT[0]))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    _boxes(build_loader(ds, batch_size=2, shuffle=True))
    assert torch.equal(torch.rand(3), expected)


def test_derived_seeds_keep_seed_and_epoch_apart():
    assert derive_seed(0, 1, 0) == derive_seed(0, 1, 0)
    assert len({derive_seed(0, 1, 0), derive_seed(1, 0, 0), derive_seed(0, 0, 1), derive_seed(0, 2, 0)}) == 4
    assert 0 <= derive_seed(7, 3, 1) < 2**63


def test_an_undecodable_image_in_a_worker_is_skipped_and_reported_once_in_the_main_process(tmp_path):
    root = voc_with_bad(tmp_path, voc_object_xml("cat", 1, 1, 20, 20), image=b"\xff\xd8 broken jpeg")
    ds = build_dataset(root, split=None)
    for epoch in range(2):  # two epochs, two loaders: the failure is found once, never crashes, never repeats
        seen = _ids(build_loader(ds, batch_size=2, num_workers=2, epoch=epoch))
        assert len(seen) == len(ds) and index_of(ds, "bad") not in seen
    [failure] = ds.load_failures(new_only=True)
    assert failure.kind == "image_corrupt" and failure.file.endswith("bad.jpg")
    assert ds.load_failures(new_only=True) == []
    assert len(ds.load_failures()) == 1
