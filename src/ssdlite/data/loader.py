"""The ``DataLoader`` for detection: list collate, reproducible seeded workers, distributed sampling."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler


def collate(batch: list[tuple[Any, dict]]) -> tuple[list[Any], list[dict]]:
    """``[(image, target), ...]`` -> ``([image, ...], [target, ...])``: images may differ in size and
    targets in box count, so nothing is stacked (torchvision's detection convention)."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets


def seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's RNGs in a worker from the seed torch gave it.

    The ``DataLoader`` seeds each worker's torch RNG with ``base_seed + worker_id`` (``base_seed`` drawn
    from the loader's generator, so from ``seed``); without this, NumPy and ``random`` would repeat the
    parent's state in every worker.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    distributed: bool | None = None,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A ``DataLoader`` yielding ``(list of images, list of targets)`` batches.

    Args:
        dataset: any map-style dataset of ``(image, target)`` (e.g. :func:`ssdlite.data.build_dataset`).
        batch_size: images per batch (per process when distributed).
        shuffle: a new order every epoch, reproducible from ``seed``.
        num_workers: worker processes; they stay alive across epochs (``persistent_workers``) and are
            seeded from ``seed`` (:func:`seed_worker`), so a run's augmentations are reproducible. With 0
            workers augmentation draws from the caller's global RNG (seed it with ``torch.manual_seed``).
        seed: seeds the shuffle order, the workers' RNGs and the distributed sampler.
        drop_last: drop the last incomplete batch (training).
        distributed: use a ``DistributedSampler`` (each process reads its own ``1/world_size`` share);
            None means "if ``torch.distributed`` is initialized". The caller must call
            ``loader.sampler.set_epoch(epoch)`` every epoch for a new order.
        pin_memory: page-locked batches for faster host-to-GPU copies; None means "if CUDA is available".
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized()
    generator = torch.Generator().manual_seed(seed)
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
