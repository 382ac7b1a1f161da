"""Reading weight files: the one place that calls ``torch.load``.

Every ``.pt``/``.pth`` the project reads (backbone classifier weights, torchvision detectors,
ssdlite checkpoints) goes through :func:`read_torch_file`, which unpickles with
``weights_only=True`` (tensors, containers and plain values only: a file cannot run code) and turns
every failure into a :class:`~ssdlite.errors.UserError` that names the file and what it was meant to be.
"""

from __future__ import annotations

import os
import zipfile
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
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as err:
        raise UserError(f"{what} {path}: cannot be read ({err.strerror})") from err
    if head != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip archive, or (before 1.6) a pickle
        raise UserError(
            f"{what} {path}: cannot be read: not a file saved by torch.save (ssdlite reads run directories, .pt/.safetensors "
            f"weights, and exported models by their suffix: .onnx, .pte, .tflite, .xml)"
        )
    if head == b"PK" and _is_torchscript(path):
        raise UserError(
            f"{what} {path}: cannot be read: a TorchScript program (ssdlite export --format torchscript), which apps load "
            f"with torch.jit.load; give ssdlite the run directory or checkpoint it was exported from"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types (a corrupt file, a pickle of arbitrary objects)
        raise UserError(f"{what} {path}: cannot be read ({err})") from err


def _is_torchscript(path: Path) -> bool:
    """Whether a zip archive is a TorchScript program (it holds the program's ``code/``), not tensors."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_state_dict(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save``; a training checkpoint's ``"model"`` entry is taken as
    such (torchvision's ``references/detection/train.py`` saves ``{"model": ..., "optimizer": ...}``)."""
    loaded = read_torch_file(path, what)
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserError(f"{what} {path}: expected a state dict (names to tensors), got {type(loaded).__name__}")
    return loaded
