"""The loader: list collate, seeded shuffles and workers, distributed sampling, load failures from workers."""

from __future__ import annotations

import torch
import torch.distributed as dist
from fixture_writers import default_samples, index_of, voc_object_xml, voc_with_bad, write_voc
from torch.utils.data import DistributedSampler

from ssdlite.data import SyntheticShapes, build_dataset, build_loader, train_transforms


def _ids(loader) -> list[int]:
    return [t["image_id"] for _, targets in loader for t in targets]


def test_batches_are_lists_of_images_and_targets(tmp_path):
    ds = build_dataset(write_voc(tmp_path / "voc", default_samples()), split=None)
    loader = build_loader(ds, batch_size=3)
    images, targets = next(iter(loader))
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == len(targets) == 3
    assert [tuple(i.shape[-2:]) for i in images] == [s.size for s in default_samples()[:3]]  # sizes differ: no stacking
    assert not loader.pin_memory or torch.cuda.is_available()
    assert _ids(loader) == [0, 1, 2, 3]
    assert len(build_loader(ds, batch_size=3, drop_last=True)) == 1


def test_shuffle_is_reproducible_from_the_seed_and_changes_every_epoch():
    loader = build_loader(_IndexOnly(24), batch_size=4, shuffle=True, seed=1)
    first, second = _ids(loader), _ids(loader)
    assert sorted(first) == list(range(24)) and first != second
    again = build_loader(_IndexOnly(24), batch_size=4, shuffle=True, seed=1)
    assert _ids(again) == first
    assert _ids(build_loader(_IndexOnly(24), batch_size=4, shuffle=True, seed=2)) != first


class _IndexOnly(torch.utils.data.Dataset):
    """A dataset whose item is just its index (as a target), to look at sampling alone."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        return torch.zeros(1), {"image_id": index}


def test_worker_augmentations_are_reproducible_from_the_seed():
    ds = SyntheticShapes(8, size=64, transforms=train_transforms("ssd", 48))

    def boxes(seed: int) -> list[list[float]]:
        loader = build_loader(ds, batch_size=2, num_workers=2, seed=seed)
        assert loader.persistent_workers and loader.worker_init_fn is not None
        return [t["boxes"].tolist() for _, targets in loader for t in targets]

    first = boxes(0)
    assert boxes(0) == first
    assert boxes(1) != first


def test_an_undecodable_image_in_a_worker_is_skipped_and_reported_once_in_the_main_process(tmp_path):
    root = voc_with_bad(tmp_path, voc_object_xml("cat", 1, 1, 20, 20), image=b"\xff\xd8 broken jpeg")
    ds = build_dataset(root, split=None)
    loader = build_loader(ds, batch_size=2, num_workers=2)
    for _ in range(2):  # two epochs: the failure is found once, never crashes, never repeats
        seen = _ids(loader)
        assert len(seen) == len(ds) and index_of(ds, "bad") not in seen
    [failure] = ds.load_failures(new_only=True)
    assert failure.kind == "image_corrupt" and failure.file.endswith("bad.jpg")
    assert ds.load_failures(new_only=True) == []
    assert len(ds.load_failures()) == 1


def test_distributed_loading_uses_a_distributed_sampler(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        loader = build_loader(_IndexOnly(10), batch_size=2, shuffle=True, seed=3)
        assert isinstance(loader.sampler, DistributedSampler) and loader.sampler.seed == 3
        loader.sampler.set_epoch(0)
        assert sorted(_ids(loader)) == list(range(10))
        assert not isinstance(build_loader(_IndexOnly(10), batch_size=2, distributed=False).sampler, DistributedSampler)
    finally:
        dist.destroy_process_group()
