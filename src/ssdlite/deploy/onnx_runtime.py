"""onnxruntime sessions and the metadata ssdlite stores in its ONNX files.

Every ONNX file written by ssdlite carries, in ``metadata_props``: ``ssdlite_config`` (the model
config as JSON, which rebuilds the preprocess and postprocess), ``classes`` (JSON list),
``outputs`` (``raw`` or ``nms``), and, for other runtimes, ``input_size``, ``image_mean`` and
``image_std`` (input = (RGB in [0, 1] resized to S x S without keeping the aspect ratio - mean) / std),
``box_format`` and ``output_names`` (the outputs in their order).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ssdlite.deploy.optional import require
from ssdlite.errors import UserError


def make_session(model: Any, threads: int | None = None, device: str = "cpu", spin: bool = True):
    """An ``onnxruntime.InferenceSession`` for a path, bytes or ``onnx.ModelProto``.

    Args:
        threads: intra-op threads (default: onnxruntime's choice, all cores).
        device: ``cpu`` or ``cuda``; CUDA needs onnxruntime-gpu and falls back to the CPU otherwise.
        spin: let idle worker threads spin-wait for the next run (onnxruntime's default: lowest latency on a
            dedicated machine; off when something else, e.g. a benchmark's other side, needs the cores).
    """
    ort = require("onnxruntime", "onnxruntime inference")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers are noise for users
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, (str, os.PathLike)):
        model = str(model)
    try:
        return ort.InferenceSession(model, options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for unreadable files
        where = model if isinstance(model, str) else "the ONNX model"
        raise UserError(f"{where}: onnxruntime cannot load it ({err})") from err


def write_metadata(model, config: dict[str, Any], classes: list[str], outputs: str) -> None:
    """Store what a runtime needs to feed and read the model in ``model.metadata_props``."""
    values = {
        "ssdlite_config": json.dumps(config),
        "classes": json.dumps(list(classes)),
        "outputs": outputs,
        "input_size": str(config.get("size")),
        "image_mean": json.dumps(config.get("image_mean")),
        "image_std": json.dumps(config.get("image_std")),
        "box_format": "xyxy normalized to [0, 1]" if outputs == "nms" else "deltas against the default boxes",
        "output_names": json.dumps([o.name for o in model.graph.output]),  # their order (files before round 3: count first)
    }
    del model.metadata_props[:]
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(session, path: str | Path) -> dict[str, Any]:
    """``{"config", "classes", "outputs"}`` from a session of an ssdlite ONNX file."""
    meta = session.get_modelmeta().custom_metadata_map
    if "ssdlite_config" not in meta:
        raise UserError(f"{path}: no 'ssdlite_config' in its ONNX metadata; export it with 'ssdlite export'")
    return {
        "config": json.loads(meta["ssdlite_config"]),
        "classes": json.loads(meta.get("classes", "[]")),
        "outputs": meta.get("outputs", "raw"),
    }
