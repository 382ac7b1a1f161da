"""ExecuTorch export (XNNPACK delegate), optionally INT8 through PT2E, verified before it is written.

``torch.export`` of :class:`~ssdlite.deploy.static_postprocess.StaticDetector` (network and static-shape
NMS: no data-dependent shape anywhere), lowered with ``to_edge_transform_and_lower`` and the
``XnnpackPartitioner`` (the convolutions run in XNNPACK, the few postprocess ops in ExecuTorch's
portable kernels), then ``to_executorch``. The metadata of :func:`ssdlite.deploy.static_export.metadata`
travels inside the ``.pte`` as the constant method ``ssdlite_metadata`` (a string).

INT8: the PT2E flow (``prepare_pt2e`` with ExecuTorch's ``XNNPACKQuantizer``, symmetric per-channel
weights, static activations), calibrated on the given images; only the network (the ``core`` module,
quantized alone) is INT8, the postprocess stays float32. The file is verified from its own bytes with
ExecuTorch's runtime (:func:`ssdlite.deploy.static_export.verify_static`) and written only when
the check passes.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence

import torch

from ssdlite.deploy.backends import StaticBackend
from ssdlite.deploy.optional import require
from ssdlite.deploy.static_export import StaticExportReport, check_images, detector, metadata, read_metadata, verify_static
from ssdlite.errors import UserError
from ssdlite.files import write_bytes_atomic

EXTRA = "executorch"
METADATA_METHOD = "ssdlite_metadata"


@contextlib.contextmanager
def _quiet():
    """ExecuTorch's lowering logs every partition and warns about deprecations; a failure still raises."""
    sink = io.StringIO()
    level = logging.root.level
    logging.root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.root.setLevel(level)


def quantize_pt2e(module: torch.nn.Module, example: torch.Tensor, calibration: Sequence[torch.Tensor]) -> torch.nn.Module:
    """PT2E INT8 of ``module.core`` with the XNNPACK quantizer, calibrated on preprocessed ``(B, 3, S, S)`` batches.

    The core is exported, prepared and converted alone (``set_global``) and put back in place of the float
    one: a quantizer restricted to ``core`` by ``set_module_name`` on the whole detector's graph left every
    convolution weight in float32 (measured: no per-channel dequantize among 88 convolutions).
    """
    require("executorch", "ExecuTorch INT8", EXTRA)
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    graph = torch.export.export(module.core, (example,), strict=False).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for x in calibration:
            prepared(x)
    module.core = convert_pt2e(prepared)
    return module


def build_executorch(
    model,
    classes: Sequence[str] = (),
    *,
    int8: bool = False,
    calibration: Sequence[torch.Tensor] = (),
    images: Sequence[torch.Tensor] | None = None,
    batch: int = 1,
    candidates: int | None = None,
) -> tuple[bytes, StaticExportReport]:
    """Export, lower and verify ``model``; returns the ``.pte`` bytes and the report, writes nothing.

    Args:
        calibration: uint8 ``(3, H, W)`` images for INT8 (required with ``int8``).
        images: verification images (default: synthetic shapes).
        batch: the file's fixed batch size.
        candidates: NMS candidates per image (:class:`~ssdlite.deploy.static_postprocess.StaticPostProcess`).
    """
    require("executorch", "ExecuTorch export", EXTRA)
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    start = time.perf_counter()
    module = detector(model, candidates)
    meta = json.dumps(metadata(model, classes, batch, int8, module.postprocess.m))
    images = check_images(images, model)
    example, _ = module_input(model, images, batch)
    report = StaticExportReport(path="", format="executorch", int8=int8, batch=batch)
    with _quiet():
        if int8:
            if not calibration:
                raise UserError("ExecuTorch INT8 needs calibration images (--calib)")
            batches = [model.preprocess(list(calibration[i : i + batch]))[0] for i in range(0, len(calibration) - batch + 1, batch)]
            module = quantize_pt2e(module, example, batches)
            report.calibration_images = batch * len(batches)
        program = torch.export.export(module, (example,), strict=False)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], constant_methods={METADATA_METHOD: meta})
        data = lowered.to_executorch().buffer
    runner = ExecuTorchBackend(data)
    report.detections = verify_static(model, runner.outputs, batch, images, "ExecuTorch", int8)
    report.seconds = time.perf_counter() - start
    return data, report


def module_input(model, images: Sequence[torch.Tensor], batch: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """A preprocessed ``(batch, 3, S, S)`` example from the first images (repeated if there are fewer)."""
    chosen = [images[i % len(images)] for i in range(batch)]
    return model.preprocess(chosen)


def export_executorch(model, path: str | os.PathLike, classes: Sequence[str] = (), **options) -> StaticExportReport:
    """:func:`build_executorch`, then write ``path`` atomically (only after the check passed)."""
    data, report = build_executorch(model, classes, **options)
    write_bytes_atomic(path, data)
    report.path = str(path)
    return report


class ExecuTorchBackend(StaticBackend):
    """A ``.pte`` written by :func:`export_executorch`, run by ExecuTorch's Python runtime."""

    name = "executorch"

    def __init__(self, source: str | os.PathLike | bytes, threads: int | None = None) -> None:
        require("executorch", "the ExecuTorch backend", EXTRA)
        from executorch.runtime import Runtime

        where = "the ExecuTorch program" if isinstance(source, bytes) else str(source)
        if not isinstance(source, bytes):
            if not os.path.isfile(source):
                raise UserError(f"{source}: no such file")
            with open(source, "rb") as f:
                source = f.read()
        self.data = source  # the loaded program points into these bytes: they must live as long as it does
        try:
            with _quiet():
                self.program = Runtime.get().load_program(self.data)
                self.method = self.program.load_method("forward")
                text = self.program.load_method(METADATA_METHOD).execute([])[0]
        except (RuntimeError, ValueError, AttributeError) as err:
            raise UserError(f"{where}: ExecuTorch cannot load it, or it has no {METADATA_METHOD} ({err})") from err
        self.config, self.classes, self.batch = read_metadata(text, where)

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.method.execute([x]))
