"""The one ``DataLoader`` of ssdlite: an epoch's batches, fixed by ``(seed, epoch)``, stacked for the model.

Training, precise BatchNorm, evaluation, the benchmarks and the tests all load through
:func:`build_loader`:

- **Order.** A ``DistributedSampler`` (also in one process, as rank 0 of 1) shuffles with
  ``seed + epoch``. Rank ``r`` of ``W`` takes ``perm[r::W]``, so the ranks' ``k``-th batches together
  are ``perm[k*B:(k+1)*B]`` (``B`` the global batch): global batch ``k`` is the same set of samples
  for any number of processes.
- **Augmentation.** Every sample is augmented under its own seed, :func:`derive_seed` ``(seed, epoch,
  index)``: the sampler hands ``(index, sample_seed)`` pairs to the workers, and the item reseeds the
  global generators (torch's, which ``transforms.v2`` and ours draw from, NumPy's and Python's) just for
  that sample. A sample's augmentation is therefore a function of the run's seed, the epoch and the
  sample, whatever the worker that makes it, the number of workers or processes, and the epochs before.
  That is what lets training keep its workers alive (``persistent_workers``): a worker carries no
  generator state from one epoch into the next, so a resumed run stays bit-identical to a straight one.
  In the main process (``num_workers=0``) the generators' states are put back after each sample.
- **Why persistent workers matter on a CPU.** A worker is a ``fork`` of the training process. Forking
  it anew every epoch (every 10 steps on raccoon) copied its page tables, and every page the training
  process wrote afterwards while the workers lived (weights, gradients, the allocator's cached
  activations) was copied again on write: measured on the raccoon recipe (tcmalloc preloaded), 18% of
  the process's CPU time went to the kernel, under 1% with kept workers (benchmarks/RESULTS.md).
  :meth:`EpochLoader.set_epoch` moves a kept loader to the next epoch.
- **Batches.** :func:`collate` stacks the images when they share a size (every training batch: the
  augmentation resizes to the model's input) and keeps a list otherwise (evaluation reads originals).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler


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


class _SeededSampler(Sampler):
    """``DistributedSampler``'s indices, each paired with its augmentation seed ``derive_seed(seed, epoch, index)``."""

    def __init__(self, inner: DistributedSampler, seed: int) -> None:
        self.inner, self.seed = inner, seed

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.inner.epoch
        return ((index, derive_seed(self.seed, epoch, index)) for index in self.inner)


class _SeededItems(Dataset):
    """``dataset[index]`` made under the global generators seeded with the sample's seed (then restored)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        saved = torch.default_generator.get_state(), np.random.get_state(), random.getstate()
        # torch's CPU generator only (``torch.manual_seed`` would also reach CUDA from a worker).
        torch.default_generator.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            return self.dataset[index]
        finally:
            torch.default_generator.set_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])


class EpochLoader(DataLoader):
    """A ``DataLoader`` whose order and augmentation are those of one epoch; :meth:`set_epoch` moves it on."""

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (order and every sample's augmentation), keeping the workers."""
        self.sampler.set_epoch(epoch)


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
    persistent_workers: bool = False,
) -> EpochLoader:
    """The loader of ``epoch`` for process ``rank`` of ``world_size``: its order depends on ``(seed,
    epoch)`` and each sample's augmentation on ``(seed, epoch, index)`` only (see the module docstring).

    Args:
        dataset: a map-style dataset of ``(image, target, *extra)`` (e.g. :func:`ssdlite.data.build_dataset`).
        batch_size: images per batch of this process (global batch / ``world_size``).
        epoch: the epoch, which together with ``seed`` fixes the order and the augmentation; a loader
            kept across epochs is moved on with :meth:`EpochLoader.set_epoch`.
        seed: the run's seed.
        shuffle: a random order (training); otherwise dataset order, rank ``r`` taking items ``r::W``.
        drop_last: drop the tail that does not fill a global batch (training: every step sees full batches
            and every rank the same number of them). Without it and with ``world_size > 1`` the sampler
            repeats items to give every rank as many, so evaluation runs in one process.
        rank, world_size: this process and the number of processes (``torch.distributed``'s).
        num_workers: worker processes.
        pin_memory: page-locked batches, for asynchronous host-to-GPU copies.
        persistent_workers: keep the workers from one epoch to the next (training; needs ``num_workers > 0``,
            ignored otherwise).

    Yields:
        ``(images, targets, *extra)`` batches from :func:`collate`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
    sampler.set_epoch(epoch)
    # The workers' base seed is drawn from this generator, not the global one, so making a loader leaves the
    # main process's generators alone (the samples reseed themselves anyway).
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, epoch, rank))
    return EpochLoader(
        _SeededItems(dataset),
        batch_size=batch_size,
        sampler=_SeededSampler(sampler, seed),
        num_workers=num_workers,
        collate_fn=collate,
        generator=generator,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
    )
