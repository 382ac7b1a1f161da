"""The training and validation datasets a training configuration describes."""

from __future__ import annotations

from torch.utils.data import Dataset

from ssdlite.data import Mosaic, build_dataset, train_transforms
from ssdlite.engine.config import TrainConfig


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset | None]:
    """``(training split with augmentation, validation split without transforms or None)``.

    The augmentation resizes to the model's input size and its zoom-out fills the canvas with the
    model's normalization mean (zeros at the network input, SSD paper section 2.2 "expansion"), both
    read from the resolved model configuration: the same values the model is built with.
    """
    model = config.resolved().model
    d = config.data
    if d.augment == "mosaic":  # mixes samples: a wrapper over the split's untransformed images
        plain = build_dataset(d.data, d.format, d.train_split, hold_out=True)
        train_set = Mosaic(plain, model.size, mean_fill=model.image_mean)
    else:
        transforms = train_transforms(d.augment, model.size, mean_fill=model.image_mean)
        train_set = build_dataset(d.data, d.format, d.train_split, transforms=transforms, hold_out=True)
    val_set = None
    if d.val_split:
        val_set = build_dataset(d.data, d.format, d.val_split, transforms=None, keep_difficult=True, classes=train_set.classes, hold_out=True)
    return train_set, val_set
