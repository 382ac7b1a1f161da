"""Shared test settings: CPU only, two threads (one per pytest-xdist worker), deterministic seeds."""

from __future__ import annotations

import os

import pytest
import torch

# Under pytest-xdist (make test runs two workers) each worker takes one core; alone, the test takes two.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
