"""Where ../shared lives, and a skip marker for tests that need it (a user's fresh clone has none).

A plain module, not ``conftest``: several folders have a ``conftest.py`` and only one of them can be
imported under that name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet.pth"
SHARED_DATASETS = SHARED / "datasets"


def needs_shared(path: Path):
    """Skip (with the reason) when a file from ../shared is absent."""
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present (../shared is not part of the repository)")
