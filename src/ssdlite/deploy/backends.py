"""Inference backends behind :class:`ssdlite.deploy.predictor.Predictor`: one per runtime, each in its runtime's
module (:mod:`ssdlite.deploy.runtimes`), opened here by the runtime's name.

Every backend opens one kind of file and answers the same question: for a preprocessed batch
``x (N, 3, S, S)`` (the one preprocessing, :class:`ssdlite.models.Preprocess` from the file's model
config) and each image's ``(H, W)``, the detections ``[{"boxes" (D, 4) xyxy pixels, "scores" (D,),
"labels" (D,) int64}]`` with every score the model's postprocess keeps (the caller applies its own
threshold). A backend exposes ``name``, ``config`` (:class:`~ssdlite.models.ModelConfig`), ``classes``
and ``run(x, sizes)``. Which files each runtime reads: the table in :mod:`ssdlite.deploy.runtimes`.
"""

from __future__ import annotations

import os
from typing import Protocol

import torch

from ssdlite.deploy import runtimes
from ssdlite.deploy.model_files import check_model_file
from ssdlite.errors import UserError
from ssdlite.models.config import ModelConfig


class Backend(Protocol):
    name: str
    config: ModelConfig
    classes: list[str]

    def run(self, x: torch.Tensor, sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]: ...


def run_in_fixed_batches(run, x: torch.Tensor, sizes: list[tuple[int, int]], batch: int) -> list[dict[str, torch.Tensor]]:
    """``run`` on a file exported for a fixed ``batch``: chunk by chunk, the last chunk padded with zeros."""
    results = []
    for start in range(0, x.shape[0], batch):
        chunk = x[start : start + batch]
        pad = batch - chunk.shape[0]
        padded = torch.cat([chunk, chunk.new_zeros(pad, *chunk.shape[1:])]) if pad else chunk
        results += run(padded, sizes[start : start + batch] + [(1, 1)] * pad)[: chunk.shape[0]]
    return results


def open_backend(name: str, weights: str | os.PathLike, device: torch.device, threads: int | None = None) -> Backend:
    """The backend of runtime ``name`` (or an alias) on ``weights``; a missing optional package is a one-line error
    naming its extra. The static runtimes run on the CPU (``device`` is the torch side's)."""
    row = runtimes.get(name)
    if not row.backend:
        raise UserError(f"{row.name} ({row.title}) is an export format that ssdlite does not run; choose one of "
                        f"{', '.join(runtimes.names(backend=True))}")
    check_model_file(weights)  # a corrupt file is a UserError here, never an abort in a runtime's C++ loader
    return runtimes.implementation(name).Backend(weights, device, threads)
