"""TorchScript: the traced core network in a ``.torchscript`` (or ``.pt``) archive that carries its config.

Export: :func:`ssdlite.deploy.torchscript.export_torchscript` (traced, verified, written atomically). The backend
runs the traced core and, around it, the preprocess and postprocess of the config the archive carries; a file
named ``.pt`` is read as a PyTorch checkpoint unless ``--backend torchscript`` says otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ssdlite.deploy.onnx_export import ExportReport
from ssdlite.deploy.runtimes import get
from ssdlite.deploy.torchscript import export_torchscript, load_torchscript
from ssdlite.models.config import ModelConfig
from ssdlite.models.factory import build_model

RUNTIME = get("torchscript")


def export(model, path: str | os.PathLike, classes: Sequence[str] = (), images: list[torch.Tensor] | None = None) -> ExportReport:
    return export_torchscript(model, path, list(classes), images)


class Backend:
    name = RUNTIME.name

    def __init__(self, weights: str | os.PathLike, device: torch.device, threads: int | None = None) -> None:
        self.module, info = load_torchscript(weights, map_location=device)
        self.config = ModelConfig.from_dict(info["config"], f"{weights}: model configuration")
        self.classes = info["classes"]
        self.model = build_model(self.config, load_backbone=False).to(device).eval()  # its postprocess and default boxes

    def run(self, x, sizes):
        # Without the JIT's profiling passes: they take seconds per new shape and run the same operations.
        with torch.jit.optimized_execution(False):
            return self.model.postprocess(*self.module(x), sizes)
