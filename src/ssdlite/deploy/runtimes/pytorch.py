"""PyTorch: a run directory, checkpoint or ``.safetensors`` (:func:`ssdlite.models.io.load_model`), run eagerly.

Nothing to export: these are the files every export starts from.
"""

from __future__ import annotations

import os

import torch

from ssdlite.deploy.runtimes import get

RUNTIME = get("torch")


class Backend:
    name = RUNTIME.name

    def __init__(self, weights: str | os.PathLike, device: torch.device, threads: int | None = None) -> None:
        from ssdlite.models.io import load_model

        if threads is not None:  # PyTorch's intra-op threads are the process's: --threads sets them as the other runtimes'
            torch.set_num_threads(threads)
        self.model, self.info = load_model(weights, map_location=device)
        self.config, self.classes = self.model.config, self.info["classes"]

    def run(self, x, sizes):
        return self.model.postprocess(*self.model.core(x), sizes)
