"""The training and validation datasets a training configuration describes."""

from __future__ import annotations

from torch.utils.data import Dataset

from ssdlite.data import Mosaic, build_dataset, train_transforms
from ssdlite.data.build import raise_if_unusable, read_catalog
from ssdlite.data.catalog import Catalog
from ssdlite.data.dataset import DetectionDataset
from ssdlite.engine.config import TrainConfig


def training_dataset(config: TrainConfig, catalog: Catalog) -> Dataset:
    """The split ``catalog`` with ``config``'s augmentation (``mosaic`` mixes samples: a wrapper over the split's
    untransformed images), resized to the resolved model's input and zoom-out filled with its normalization mean."""
    model = config.resolved().model
    if config.data.augment == "mosaic":
        return Mosaic(DetectionDataset(catalog), model.size, mean_fill=model.image_mean)
    return DetectionDataset(catalog, transforms=train_transforms(config.data.augment, model.size, mean_fill=model.image_mean))


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset | None]:
    """``(training split with augmentation, validation split without transforms or None)``.

    The augmentation resizes to the model's input size and its zoom-out fills the canvas with the
    model's normalization mean (zeros at the network input, SSD paper section 2.2 "expansion"), both
    read from the resolved model configuration: the same values the model is built with.
    """
    d = config.data
    catalog = read_catalog(d.data, d.format, d.train_split, hold_out=True)
    raise_if_unusable(catalog)
    train_set = training_dataset(config, catalog)
    val_set = None
    if d.val_split:
        val_set = build_dataset(d.data, d.format, d.val_split, transforms=None, keep_difficult=True, classes=train_set.classes, hold_out=True)
    return train_set, val_set
