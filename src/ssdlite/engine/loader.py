"""The training loader of one epoch, with its data order and augmentation fixed by ``(seed, epoch, rank)``.

A new ``DataLoader`` is made every epoch: its ``DistributedSampler`` (also used in one process, as
rank 0 of 1) shuffles with ``seed + epoch``, and its generator, seeded from ``(seed, epoch, rank)``,
gives each worker its base seed (PyTorch seeds ``random``, NumPy and torch in worker ``w`` from it),
so epoch ``e`` is the same after a resume as in a straight run. With ``workers=0`` the augmentation
draws from the main process's generators, which the trainer seeds the same way at each epoch.

Global batch ``k`` is the same set of samples for any number of processes: rank ``r`` takes
``perm[r::W]``, so the ranks' ``k``-th batches together are ``perm[k*B:(k+1)*B]``.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ssdlite.engine.seeding import derive_seed


def collate(batch: list) -> tuple[torch.Tensor | list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Images as one ``(N, 3, S, S)`` tensor when they share a size (else a list); targets as plain tensors."""
    images = [image.as_subclass(torch.Tensor) for image, _ in batch]
    targets = [
        {"boxes": target["boxes"].as_subclass(torch.Tensor).float(), "labels": target["labels"].long()} for _, target in batch
    ]
    if all(image.shape == images[0].shape for image in images):
        return torch.stack(images), targets
    return images, targets


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    """Optimizer steps in an epoch: full global batches only (the same for any number of processes)."""
    return num_samples // global_batch


def epoch_loader(
    dataset: Dataset,
    batch_size: int,
    epoch: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """The loader of ``epoch`` for ``rank``; ``batch_size`` is per process (global batch / world size)."""
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, epoch, rank))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        generator=generator,
        drop_last=True,
        pin_memory=pin_memory,
    )
