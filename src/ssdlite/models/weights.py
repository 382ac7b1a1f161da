"""Reading weight files: the one place that calls ``torch.load``.

Every ``.pt``/``.pth`` the project reads (backbone classifier weights, torchvision detectors,
ssdlite checkpoints) goes through :func:`read_torch_file`, which unpickles with
``weights_only=True`` (tensors, containers and plain values only: a file cannot run code) and turns
every failure into a :class:`~ssdlite.errors.UserError` that names the file and what it was meant to be.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ssdlite.errors import UserError


def read_torch_file(path: str | os.PathLike, what: str, missing_hint: str = "") -> Any:
    """The object saved in ``path`` (on the CPU); ``what`` names it in errors ("backbone weights", "checkpoint")."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path}: no such file{missing_hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types (a corrupt file, a pickle of arbitrary objects)
        raise UserError(f"{what} {path}: cannot be read ({err})") from err


def read_state_dict(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save``; a training checkpoint's ``"model"`` entry is taken as
    such (torchvision's ``references/detection/train.py`` saves ``{"model": ..., "optimizer": ...}``)."""
    loaded = read_torch_file(path, what)
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserError(f"{what} {path}: expected a state dict (names to tensors), got {type(loaded).__name__}")
    return loaded
