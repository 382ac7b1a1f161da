"""The one ``DataLoader`` of ssdlite: an epoch's batches, fixed by ``(seed, epoch, rank)``, stacked for the model.

Training, precise BatchNorm, evaluation, the benchmarks and the tests all load through
:func:`build_loader`. It makes the loader of *one* epoch, and a new one is made every epoch:

- **Order.** A ``DistributedSampler`` (also in one process, as rank 0 of 1) shuffles with
  ``seed + epoch``. Rank ``r`` of ``W`` takes ``perm[r::W]``, so the ranks' ``k``-th batches together
  are ``perm[k*B:(k+1)*B]`` (``B`` the global batch): global batch ``k`` is the same set of samples
  for any number of processes.
- **Augmentation.** The loader's generator is seeded with :func:`derive_seed` ``(seed, epoch, rank)``;
  PyTorch draws each worker's base seed from it and seeds ``random``, NumPy and torch in worker ``w``
  with ``base + w``. Workers are therefore not persistent: a worker kept from the epoch before would
  carry its generators' state into this one, and epoch ``e`` would depend on the epochs before it in
  the same process. Fresh workers make epoch ``e`` of a resumed run bit-identical to epoch ``e`` of a
  straight run. With ``num_workers=0`` augmentation draws from the main process's global generators;
  the trainer seeds them from ``(seed, epoch, rank)`` too.
- **Batches.** :func:`collate` stacks the images when they share a size (every training batch: the
  augmentation resizes to the model's input) and keeps a list otherwise (evaluation reads originals).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integers such as ``(seed, epoch, rank)`` (numpy's SeedSequence).

    ``seed + epoch`` would give epoch 1 of seed 0 the generator of epoch 0 of seed 1; hashing the keys
    together keeps every ``(seed, epoch, rank)`` on its own stream. SeedSequence ignores trailing zero
    keys: ``derive_seed(s, e, 0) == derive_seed(s, e)``.
    """
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


#: The target fields that travel as tensors: what the loss reads.
TENSOR_FIELDS = ("boxes", "labels")


def _plain_target(target: dict[str, Any]) -> dict[str, Any]:
    """A dataset target for the model: ``boxes`` a plain float32 ``(M, 4)`` tensor, ``labels`` int64 ``(M,)``;
    every other field (``image_id``, ``difficult``, ``iscrowd``, ``orig_size``) as plain Python values.

    Why not tensors: every tensor a worker process returns is moved through a shared-memory segment of
    its own, and the four extra fields as tensors tripled their number per batch: the loader fell from
    440 to 250 images/s (batch 16, one worker, 128 px shapes) and the worker took that CPU from training.
    """
    plain = {}
    for key, value in target.items():
        if key in TENSOR_FIELDS:
            value = value.as_subclass(torch.Tensor)
            value = value.float() if key == "boxes" else value.long()
        elif isinstance(value, torch.Tensor):
            value = value.tolist()
        plain[key] = value
    return plain


def collate(batch: list[tuple]) -> tuple:
    """``[(image, target, *extra), ...]`` -> ``(images, targets, *extra lists)``.

    ``images`` is one ``(N, 3, H, W)`` tensor when every image has the same size, else a list of
    ``(3, H_i, W_i)`` tensors (the model resizes each itself); ``targets`` is a list of dicts of plain
    tensors (see :func:`_plain_target`; box counts differ, so they are never stacked). Further fields
    of an item (evaluation adds the index and the annotation) come back as one list each.
    """
    images = [item[0].as_subclass(torch.Tensor) for item in batch]  # N x (3, H_i, W_i)
    targets = [_plain_target(item[1]) for item in batch]
    extra = [list(field) for field in zip(*(item[2:] for item in batch))]
    if all(image.shape == images[0].shape for image in images):
        return (torch.stack(images), targets, *extra)  # (N, 3, H, W)
    return (images, targets, *extra)


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    """Full global batches in an epoch: the length of every rank's training loader, for any world size
    (``floor(floor(n / W) / b) == floor(n / (W * b))``)."""
    return num_samples // global_batch


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    epoch: int = 0,
    seed: int = 0,
    shuffle: bool = False,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """The loader of ``epoch`` for process ``rank`` of ``world_size``: its order and its workers' seeds
    depend on ``(seed, epoch, rank)`` only (see the module docstring). Build one per epoch.

    Args:
        dataset: a map-style dataset of ``(image, target, *extra)`` (e.g. :func:`ssdlite.data.build_dataset`).
        batch_size: images per batch of this process (global batch / ``world_size``).
        epoch: the epoch, which together with ``seed`` fixes the order and the workers' augmentation.
        seed: the run's seed.
        shuffle: a random order (training); otherwise dataset order, rank ``r`` taking items ``r::W``.
        drop_last: drop the tail that does not fill a global batch (training: every step sees full batches
            and every rank the same number of them). Without it and with ``world_size > 1`` the sampler
            repeats items to give every rank as many, so evaluation runs in one process.
        rank, world_size: this process and the number of processes (``torch.distributed``'s).
        num_workers: worker processes for this epoch.
        pin_memory: page-locked batches, for asynchronous host-to-GPU copies.

    Yields:
        ``(images, targets, *extra)`` batches from :func:`collate`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
    sampler.set_epoch(epoch)
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, epoch, rank))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        generator=generator,
        drop_last=drop_last,
        pin_memory=pin_memory,
    )
