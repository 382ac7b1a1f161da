"""ONNX: an ``.onnx`` from ``ssdlite export`` (raw network outputs, or with ``--with-nms`` the whole postprocess
in the graph), run by onnxruntime; INT8 through ``ssdlite quantize``.

Export: :func:`ssdlite.deploy.onnx_export.export_onnx`. The backend opens an ``.onnx`` (with NMS: final
detections; raw: the PyTorch postprocess on its outputs), or a weights file, exported with in-graph NMS in memory
and verified first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ssdlite.deploy.backends import run_in_fixed_batches
from ssdlite.deploy.onnx_export import DEFAULT_OPSET, ExportReport, export_onnx
from ssdlite.deploy.runtimes import get
from ssdlite.errors import UserError
from ssdlite.models.config import ModelConfig
from ssdlite.models.factory import build_model

RUNTIME = get("onnx")


def export(
    model, path: str | os.PathLike, classes: Sequence[str] = (), images: list[torch.Tensor] | None = None, *,
    with_nms: bool = False, dynamic_batch: bool = False, opset: int | None = None,
) -> ExportReport:
    """:func:`~ssdlite.deploy.onnx_export.export_onnx` with the command's defaults: batch fixed at 1 unless
    ``dynamic_batch``, opset :data:`~ssdlite.deploy.onnx_export.DEFAULT_OPSET` (at least ``MIN_OPSET`` with NMS)."""
    from ssdlite.deploy.onnx_postprocess import MIN_OPSET

    opset = opset or DEFAULT_OPSET
    if with_nms and opset < MIN_OPSET:
        raise UserError(f"--with-nms needs --opset >= {MIN_OPSET}, got {opset}")
    return export_onnx(model, path, list(classes), with_nms=with_nms, dynamic_batch=dynamic_batch, opset=opset, images=images)


class Backend:
    name = RUNTIME.name

    def __init__(self, weights: str | os.PathLike, device: torch.device, threads: int | None = None) -> None:
        from ssdlite.deploy.onnx_runtime import make_session, read_metadata

        path = Path(weights)
        self.device = device
        self.model = None  # raw outputs: the PyTorch postprocess (and default boxes) runs on them
        if path.suffix not in RUNTIME.suffixes:
            from ssdlite.deploy.onnx_export import build_onnx
            from ssdlite.models.io import load_model

            model, info = load_model(path)
            exported, _ = build_onnx(model, info["classes"], with_nms=True)
            self.session = make_session(exported, threads, str(device))
            self.config, self.classes = model.config, info["classes"]
            return
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        self.session = make_session(path, threads, str(device))
        meta = read_metadata(self.session, path)
        self.config = ModelConfig.from_dict(meta["config"], f"{path}: model configuration")
        self.classes = meta["classes"]
        if meta["outputs"] != "nms":
            self.model = build_model(self.config, load_backbone=False).to(device).eval()

    def run(self, x, sizes):
        from ssdlite.deploy.onnx_postprocess import NMS_OUTPUTS, detections_from_padded

        static = self.session.get_inputs()[0].shape[0]
        if isinstance(static, int) and static != x.shape[0]:
            return run_in_fixed_batches(self.run, x, sizes, static)
        outputs = self.session.run(None, {"images": x.cpu().numpy()})
        if self.model is not None:
            cls_logits, bbox_deltas = (torch.from_numpy(o).to(self.device) for o in outputs)
            return self.model.postprocess(cls_logits, bbox_deltas, sizes)
        named = dict(zip((o.name for o in self.session.get_outputs()), outputs))
        return detections_from_padded(*(named[k] for k in NMS_OUTPUTS), sizes)  # by name: files of either output order
