"""Deployment: prediction on files, verified ONNX / TorchScript export, INT8 quantization, benchmarks.

- :class:`Predictor` (``ssdlite predict``): images -> detections on PyTorch or onnxruntime;
- :func:`export_onnx` (``ssdlite export``): the network, or with ``with_nms`` the whole postprocess in the
  graph, checked against PyTorch before it is written; :func:`export_torchscript` likewise;
- :func:`quantize_onnx` (``ssdlite quantize``): onnxruntime static INT8;
- :func:`benchmark` (``ssdlite benchmark``): parameters, MAdds and latency percentiles.

ONNX, onnxruntime and onnxscript are imported only when used (``pip install 'ssdlite[export]'``).
"""

from ssdlite.deploy.latency import benchmark
from ssdlite.deploy.compare import compare_detections
from ssdlite.deploy.onnx_export import ExportMismatchError, ExportReport, build_onnx, export_onnx
from ssdlite.deploy.predictor import Prediction, Predictor, PredictorModule
from ssdlite.deploy.quantize import quantize_onnx
from ssdlite.deploy.torchscript import export_torchscript, load_torchscript

__all__ = [
    "ExportMismatchError",
    "ExportReport",
    "Prediction",
    "Predictor",
    "PredictorModule",
    "benchmark",
    "build_onnx",
    "compare_detections",
    "export_onnx",
    "export_torchscript",
    "load_torchscript",
    "quantize_onnx",
]
