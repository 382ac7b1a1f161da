"""Inference backends behind :class:`ssdlite.deploy.predictor.Predictor`: one small class per runtime.

Every backend opens one kind of file and answers the same question: for a preprocessed batch
``x (N, 3, S, S)`` (the one preprocessing, :class:`ssdlite.models.Preprocess` from the file's model
config) and each image's ``(H, W)``, the detections ``[{"boxes" (D, 4) xyxy pixels, "scores" (D,),
"labels" (D,) int64}]`` with every score the model's postprocess keeps (the caller applies its own
threshold). A backend exposes ``name``, ``config`` (:class:`~ssdlite.models.ModelConfig`), ``classes``
and ``run(x, sizes)``.

- ``torch``: run directory, checkpoint or ``.safetensors`` (:func:`ssdlite.models.io.load_model`);
- ``onnxruntime``: an ``.onnx`` from ``ssdlite export`` (with NMS: final detections; raw: the PyTorch
  postprocess on its outputs), or a weights file, exported with in-graph NMS in memory and verified first;
- ``executorch``: a ``.pte`` from ``ssdlite export --format executorch``;
- ``tflite``: a ``.tflite`` from ``ssdlite export --format tflite``, run by LiteRT;
- ``openvino``: an ``.xml`` (with its ``.bin``) from ``ssdlite export --format openvino``.

The last three hold the static-shape postprocess (:mod:`ssdlite.deploy.static_postprocess`) in the
file and have a fixed batch; :class:`StaticBackend` runs them batch by batch, padding the last one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import torch

from ssdlite.deploy.model_files import check_model_file
from ssdlite.errors import UserError
from ssdlite.models.config import ModelConfig
from ssdlite.models.factory import build_model

BACKENDS = ("torch", "onnxruntime", "executorch", "tflite", "openvino")


class Backend(Protocol):
    name: str
    config: ModelConfig
    classes: list[str]

    def run(self, x: torch.Tensor, sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]: ...


class TorchBackend:
    name = "torch"

    def __init__(self, weights: str | os.PathLike, device: torch.device, threads: int | None = None) -> None:
        from ssdlite.models.io import load_model

        self.model, info = load_model(weights, map_location=device)
        self.config, self.classes = self.model.config, info["classes"]

    def run(self, x, sizes):
        return self.model.postprocess(*self.model.core(x), sizes)


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, weights: str | os.PathLike, device: torch.device, threads: int | None = None) -> None:
        from ssdlite.deploy.onnx_runtime import make_session, read_metadata

        path = Path(weights)
        self.device = device
        self.model = None  # raw outputs: the PyTorch postprocess (and default boxes) runs on them
        if path.suffix != ".onnx":
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
        from ssdlite.deploy.onnx_postprocess import detections_from_outputs

        static = self.session.get_inputs()[0].shape[0]
        if isinstance(static, int) and static != x.shape[0]:
            return run_in_fixed_batches(self.run, x, sizes, static)
        outputs = self.session.run(None, {"images": x.cpu().numpy()})
        if self.model is not None:
            cls_logits, bbox_deltas = (torch.from_numpy(o).to(self.device) for o in outputs)
            return self.model.postprocess(cls_logits, bbox_deltas, sizes)
        named = dict(zip((o.name for o in self.session.get_outputs()), outputs))
        return detections_from_outputs(named["num_detections"], named["boxes"], named["scores"], named["labels"], sizes)


def run_in_fixed_batches(run, x: torch.Tensor, sizes: list[tuple[int, int]], batch: int) -> list[dict[str, torch.Tensor]]:
    """``run`` on a file exported for a fixed ``batch``: chunk by chunk, the last chunk padded with zeros."""
    results = []
    for start in range(0, x.shape[0], batch):
        chunk = x[start : start + batch]
        pad = batch - chunk.shape[0]
        padded = torch.cat([chunk, chunk.new_zeros(pad, *chunk.shape[1:])]) if pad else chunk
        results += run(padded, sizes[start : start + batch] + [(1, 1)] * pad)[: chunk.shape[0]]
    return results


class StaticBackend:
    """A file holding :class:`~ssdlite.deploy.static_postprocess.StaticDetector`: ``x (B, 3, S, S)`` ->
    ``boxes (B, D, 4)`` normalized, ``scores (B, D)``, ``labels (B, D)``, ``count (B,)``, for its fixed ``B``.
    Subclasses set ``batch``, ``config``, ``classes`` and implement ``outputs(x)``."""

    name = ""
    batch = 1
    config: ModelConfig
    classes: list[str]

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def run(self, x, sizes):
        from ssdlite.deploy.onnx_postprocess import detections_from_outputs

        if x.shape[0] != self.batch:
            return run_in_fixed_batches(self.run, x, sizes, self.batch)
        boxes, scores, labels, count = self.outputs(x.float().cpu().contiguous())
        return detections_from_outputs(count, boxes, scores, labels, sizes)


def open_backend(name: str, weights: str | os.PathLike, device: torch.device, threads: int | None = None) -> Backend:
    """The backend ``name`` on ``weights``; a missing optional package is a one-line error naming its extra."""
    check_model_file(weights)  # a corrupt file is a UserError here, never an abort in a runtime's C++ loader
    if name == "torch":
        return TorchBackend(weights, device, threads)
    if name == "onnxruntime":
        return OnnxBackend(weights, device, threads)
    if name == "executorch":
        from ssdlite.deploy.executorch_export import ExecuTorchBackend

        return ExecuTorchBackend(weights, threads)
    if name == "tflite":
        from ssdlite.deploy.litert_export import LiteRTBackend

        return LiteRTBackend(weights, threads)
    if name == "openvino":
        from ssdlite.deploy.openvino_export import OpenVINOBackend

        return OpenVINOBackend(weights, threads)
    raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


SUFFIX_BACKENDS = {".onnx": "onnxruntime", ".pte": "executorch", ".tflite": "tflite", ".xml": "openvino"}  # exported files


def backend_for_file(path: str | os.PathLike) -> str:
    """The backend that reads ``path`` by its suffix (``torch`` for weights files and run directories)."""
    return SUFFIX_BACKENDS.get(Path(path).suffix.lower(), "torch")
