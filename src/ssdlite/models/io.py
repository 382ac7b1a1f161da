"""Saving and loading trained models.

A ``model.safetensors`` holds the weights and, in its metadata, everything needed to rebuild the
model: ``ssdlite_config`` (``model.config`` as JSON) and ``classes`` (JSON list of foreground
names). Training checkpoints (``last.pt``, ``best.pt``) are dicts with ``model`` (state dict),
``model_config``, ``classes`` and, when EMA is on, ``ema`` (the averaged weights, preferred for
inference). Checkpoints are read with ``weights_only=True``; every write is atomic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ssdlite.errors import UserError
from ssdlite.files import atomic_write
from ssdlite.models.config import ModelConfig
from ssdlite.models.factory import build_model
from ssdlite.models.ssdlite import SSDLite
from ssdlite.models.state_dict import state_dict_mismatch
from ssdlite.models.weights import read_torch_file

RUN_DIR_FILES = ("best.pt", "last.pt", "model.safetensors")


def save_safetensors(model: SSDLite, path: str | os.PathLike, classes: list[str] | None = None, metadata: dict[str, str] | None = None) -> None:
    """Write the weights and the rebuild information to ``path`` atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"ssdlite_config": json.dumps(model.config.to_dict()), "classes": json.dumps(list(classes or [])), "format": "ssdlite"}
    meta.update(metadata or {})
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def _resolve(path: Path) -> Path:
    if path.is_dir():
        for name in RUN_DIR_FILES:
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path}: a run directory needs one of {', '.join(RUN_DIR_FILES)}; none found")
    if not path.is_file():
        raise UserError(f"{path}: no such file or directory")
    return path


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[SSDLite, dict[str, Any]]:
    """Load a model from a run directory, a checkpoint ``.pt`` or a ``.safetensors`` file.

    Returns:
        ``(model, info)``; ``info`` has ``classes`` (foreground names), ``config`` (the stored model
        configuration as a dict) and ``path`` (the file read).
        The model is in eval mode on ``map_location``.
    """
    file = _resolve(Path(path))
    if file.suffix == ".safetensors":
        try:

            with safe_open(str(file), framework="pt") as f:
                meta = f.metadata() or {}
            state = load_file(str(file))
        except (SafetensorError, OSError) as err:
            raise UserError(f"{file}: not a readable safetensors file ({err})") from err
        if "ssdlite_config" not in meta:
            raise UserError(f"{file}: no 'ssdlite_config' in its metadata; it was not written by ssdlite")
        config = json.loads(meta["ssdlite_config"])
        classes = json.loads(meta.get("classes", "[]"))
    else:
        ckpt = read_torch_file(file, "checkpoint")
        if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
            raise UserError(f"{file}: not an ssdlite checkpoint (needs 'model' and 'model_config')")
        config = ckpt["model_config"]
        classes = list(ckpt.get("classes", []))
        state = ckpt.get("ema") or ckpt["model"]
    try:
        model = build_model(ModelConfig.from_dict(config, f"{file}: model configuration"), load_backbone=False)
    except (TypeError, ValueError) as err:
        raise UserError(f"{file}: its model configuration cannot be built ({err})") from err
    load_state_dict_checked(model, state, str(file))
    return model.to(map_location).eval(), {"classes": classes, "config": config, "path": str(file)}


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with an error that names the file and what does not fit."""
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise UserError(f"{source}: weights do not fit this architecture: {problem}")
    model.load_state_dict(state)
