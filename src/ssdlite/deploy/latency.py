"""Latency of a model on one backend: the full pipeline and the network alone.

- **pipeline**: a batch of uint8 ``(3, 480, 640)`` images (a VGA photo) -> final detections:
  preprocess (resize, normalize), network, postprocess (on onnxruntime, the in-graph NMS).
- **network**: the preprocessed ``(B, 3, S, S)`` tensor -> raw head outputs.

Each is called ``warmup`` times, then timed ``iters`` times; reported as p50/p90/p99 in
milliseconds and images per second at the median. The onnx-int8 backend is calibrated on
the synthetic sample images: its latency does not depend on the calibration data; its accuracy
does and is measured by ``ssdlite quantize --val`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ssdlite.deploy import runtimes
from ssdlite.deploy.samples import sample_batch, sample_images
from ssdlite.models.ssdlite import SSDLite
from ssdlite.models.summary import count_madds, count_parameters

#: What :func:`benchmark` times a model in memory on: the runtimes that run from weights, and their INT8 variants.
BENCH_BACKENDS = runtimes.choices(from_weights=True) + runtimes.int8_choices()


def time_ms(fn: Callable[[], Any], warmup: int, iters: int) -> list[float]:
    """Wall times of ``iters`` calls of ``fn`` after ``warmup`` untimed calls, in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def percentiles(times_ms: list[float]) -> dict[str, float]:
    p50, p90, p99 = np.percentile(np.asarray(times_ms), [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def onnx_sessions(model: SSDLite, int8: bool, threads: int | None):
    """``(network session, pipeline session)``: the raw graph and the graph with in-graph NMS."""
    from ssdlite.deploy.onnx_export import export_core_onnx
    from ssdlite.models.postprocess import PostprocessSettings
    from ssdlite.deploy.onnx_postprocess import append_postprocess
    from ssdlite.deploy.onnx_runtime import make_session

    raw = export_core_onnx(model, dynamic_batch=True)
    if int8:
        from ssdlite.deploy.quantize import quantize_model

        raw, _ = quantize_model(raw, [sample_batch(model.preprocess, 1, seed=s) for s in range(8)])
    full = append_postprocess(raw, model.default_boxes.boxes, PostprocessSettings.of(model.config))
    return make_session(raw, threads), make_session(full, threads)


def benchmark(
    model: SSDLite,
    backend: str = runtimes.DEFAULT.name,
    batch: int = 1,
    threads: int | None = None,
    warmup: int = 5,
    iters: int = 50,
) -> dict[str, Any]:
    """Parameters, MAdds and latency of ``model`` (on the CPU) as one JSON-ready dict.

    Keys: ``backend``, ``batch``, ``threads``, ``params``, ``madds``, ``input_size``, ``latency_ms``
    (pipeline p50/p90/p99), ``network_latency_ms``, ``images_per_s`` (pipeline, at the median).
    """
    if backend not in BENCH_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BENCH_BACKENDS)}")
    runtime, int8 = runtimes.get_int8(backend)
    backend = runtime.name + (runtimes.INT8_SUFFIX if int8 else "")
    if threads:
        torch.set_num_threads(threads)
    model = model.cpu().eval()
    images = sample_images(batch, 480, 640)
    x = sample_batch(model.preprocess, batch)  # (B, 3, S, S)
    if runtime is runtimes.DEFAULT:
        def pipeline():
            with torch.inference_mode():
                return model(images)

        def network():
            with torch.inference_mode():
                return model.core(x)
    else:
        from ssdlite.deploy.onnx_postprocess import detections_from_padded

        net_session, full_session = onnx_sessions(model, int8, threads)
        feed = {"images": x.numpy()}

        def pipeline():
            with torch.inference_mode():
                inputs, sizes = model.preprocess(images)
            return detections_from_padded(*full_session.run(None, {"images": inputs.numpy()}), sizes)

        def network():
            return net_session.run(None, feed)

    pipeline_ms = time_ms(pipeline, warmup, iters)
    network_ms = time_ms(network, warmup, iters)
    latency = percentiles(pipeline_ms)
    return {
        "backend": backend,
        "batch": batch,
        "threads": threads or torch.get_num_threads(),
        "params": count_parameters(model),
        "madds": count_madds(model.core, model.size),
        "input_size": model.size,
        "image_size": [480, 640],
        "latency_ms": latency,
        "network_latency_ms": percentiles(network_ms),
        "images_per_s": batch * 1e3 / latency["p50"],
    }


def benchmark_file(
    path: str, backend: str, batch: int = 1, threads: int | None = None, warmup: int = 5, iters: int = 50
) -> dict[str, Any]:
    """Latency of an exported file (or weights) through :class:`~ssdlite.deploy.predictor.Predictor` on ``backend``.

    ``pipeline``: uint8 VGA images -> detections (the one preprocessing, the runtime, the padded outputs
    read back); ``network``: the runtime alone on the preprocessed batch (for the static-NMS files and
    ONNX with NMS this includes the in-graph postprocess). Keys as :func:`benchmark`, plus ``file_bytes``
    (for an OpenVINO ``.xml``, with its ``.bin``) and ``params`` only where the file is a PyTorch model.
    """
    import os
    from pathlib import Path

    from ssdlite.deploy.predictor import Predictor

    if threads:
        torch.set_num_threads(threads)
    predictor = Predictor(path, backend=backend, score_threshold=0.0, batch_size=batch, threads=threads)
    backend = predictor.backend
    images = sample_images(batch, 480, 640)
    with torch.inference_mode():
        x, sizes = predictor.preprocess(images)
    pipeline_ms = time_ms(lambda: predictor(images), warmup, iters)

    def network():
        with torch.inference_mode():
            return predictor.runner.run(x, sizes)

    network_ms = time_ms(network, warmup, iters)
    latency = percentiles(pipeline_ms)
    files = [Path(path)] + ([Path(path).with_suffix(".bin")] if Path(path).suffix == ".xml" else [])
    model = getattr(predictor.runner, "model", None) if backend == runtimes.DEFAULT.name else None
    return {
        "backend": backend,
        "file": str(path),
        "file_bytes": sum(os.path.getsize(f) for f in files if f.is_file()),
        "batch": batch,
        "threads": threads or torch.get_num_threads(),
        "params": count_parameters(model) if model is not None else None,
        "input_size": predictor.config.size,
        "image_size": [480, 640],
        "latency_ms": latency,
        "network_latency_ms": percentiles(network_ms),
        "images_per_s": batch * 1e3 / latency["p50"],
    }
