"""Fixtures of the training tests: a tiny synthetic VOC dataset and a tiny, fast configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssdlite.engine.config import TrainConfig
from train_helpers import TINY


@pytest.fixture(scope="session")
def train_voc(tmp_path_factory) -> Path:
    """16 training and 4 validation images of the synthetic shapes, 128 px, in VOC layout."""
    from ssdlite.data import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("shapes") / "voc", num_train=16, num_val=4, size=128, seed=0)


@pytest.fixture
def tiny_config() -> TrainConfig:
    return TrainConfig().replace(**TINY)
