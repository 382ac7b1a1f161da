"""Shared test settings: CPU only, deterministic, and the location of ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet.pth"
SHARED_DATASETS = SHARED / "datasets"

torch.set_num_threads(min(2, os.cpu_count() or 1))


def needs_shared(path: Path):
    """Skip (with the reason) when a file from ../shared is absent, as on a user's fresh clone."""
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present (../shared is not part of the repository)")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
