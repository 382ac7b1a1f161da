"""Training checkpoints: ``last.pt`` (every epoch) and ``best.pt`` (best validation score).

A checkpoint is a plain dict that ``torch.load(..., weights_only=True)`` reads back: the model's
state dict and ``model_config`` (so :func:`ssdlite.models.io.load_model` can rebuild it), the
foreground ``classes``, the EMA weights (``ema``, preferred for inference), the optimizer, scheduler
and AMP-scaler states, the epoch and step counters, every RNG state, and the resolved training
``config``; ``schedule`` (the epochs the learning-rate schedule was planned for and the warp of its
re-plans, ``ssdlite.engine.optim``) and ``budget`` (a ``--time-budget`` run's budget and measured costs,
``ssdlite.engine.budget``; ``None`` otherwise). Checkpoints written before these keys existed resume
with the schedule of their ``config`` and no budget. Writes go through a temporary file and a rename, and a model with non-finite weights is
never written, so the last good checkpoint survives a crash or a diverging run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ssdlite.errors import UserError
from ssdlite.files import atomic_write
from ssdlite.models.config import ModelConfig
from ssdlite.models.weights import read_torch_file

CHECKPOINT_FORMAT = 1


class NonFiniteWeights(RuntimeError):
    """The weights to save contain NaN or infinity; the checkpoint on disk is left as it was."""


def _all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (see the module docstring) to ``path`` atomically.

    Raises:
        NonFiniteWeights: if the model or EMA weights are not finite (nothing is written).
    """
    for key in ("model", "ema"):
        if state.get(key) is not None and not _all_finite(state[key]):
            raise NonFiniteWeights(f"refusing to write {path}: the {key} weights contain NaN or infinity")
    payload = {"format": CHECKPOINT_FORMAT, **state}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint (``weights_only=True``) or a run directory's ``last.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint (a run directory must contain last.pt to be resumed)")
    ckpt = read_torch_file(path, "checkpoint")
    needed = ("model", "model_config", "optimizer", "scheduler", "epoch", "step", "config", "rng")
    missing = [k for k in needed if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UserError(f"{path}: not an ssdlite training checkpoint (missing {', '.join(missing)})")
    ckpt["path"] = str(path)
    return ckpt


def check_same_architecture(ckpt: dict[str, Any], model_config: ModelConfig) -> None:
    """Raise ``UserError`` naming the checkpoint and the differing settings if it is of another model."""
    saved = ModelConfig.from_dict(ckpt["model_config"], f"{ckpt['path']}: model_config").to_dict()
    now = model_config.to_dict()
    differ = [f"{k}: checkpoint {saved[k]!r} vs now {now[k]!r}" for k in saved if saved[k] != now[k]]
    if differ:
        raise UserError(f"{ckpt['path']}: checkpoint is of a different architecture ({'; '.join(differ)})")
