"""Deployment: prediction on files, verified ONNX / TorchScript export, INT8 quantization, benchmarks.

- :class:`Predictor` (``ssdlite predict``): images -> detections on PyTorch or onnxruntime;
- :func:`export_onnx` (``ssdlite export``): the network, or with ``with_nms`` the whole postprocess in the
  graph, checked against PyTorch before it is written; :func:`export_torchscript` likewise;
- :func:`quantize_onnx` (``ssdlite quantize``): onnxruntime static INT8;
- :func:`benchmark` (``ssdlite benchmark``): parameters, MAdds and latency percentiles.

ONNX, onnxruntime and onnxscript are imported only when used (``pip install 'ssdlite[export]'``).
"""

from __future__ import annotations

import importlib

#: Public names and the module that defines each, imported on first use (PEP 562): the command line reads the
#: torch-free runtime table (:mod:`ssdlite.deploy.runtimes`) before PyTorch may be loaded (ssdlite.cli._cpu).
_EXPORTS = {
    "ExportMismatchError": "ssdlite.deploy.onnx_export",
    "ExportReport": "ssdlite.deploy.onnx_export",
    "Prediction": "ssdlite.deploy.predictor",
    "Predictor": "ssdlite.deploy.predictor",
    "PredictorModule": "ssdlite.deploy.predictor",
    "benchmark": "ssdlite.deploy.latency",
    "build_onnx": "ssdlite.deploy.onnx_export",
    "compare_detections": "ssdlite.deploy.compare",
    "export_onnx": "ssdlite.deploy.onnx_export",
    "export_torchscript": "ssdlite.deploy.torchscript",
    "load_torchscript": "ssdlite.deploy.torchscript",
    "quantize_onnx": "ssdlite.deploy.quantize",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ssdlite.deploy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
