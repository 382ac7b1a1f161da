"""ExecuTorch export (XNNPACK delegate), optionally INT8 through PT2E, verified before it is written.

``torch.export`` of :class:`~ssdlite.deploy.static_postprocess.StaticDetector` (network and static-shape
NMS: no data-dependent shape anywhere), lowered with ``to_edge_transform_and_lower`` and the
``XnnpackPartitioner`` (the convolutions run in XNNPACK, the few postprocess ops in ExecuTorch's
portable kernels), then ``to_executorch``. The metadata of :func:`ssdlite.deploy.static_export.metadata`
travels inside the ``.pte`` as the constant method ``ssdlite_metadata`` (a string).

INT8: the PT2E flow (:func:`~ssdlite.deploy.static_export.quantize_core_pt2e` with ExecuTorch's
``XNNPACKQuantizer``, symmetric per-channel weights, static activations), calibrated on the given images;
only the network is INT8, the postprocess stays float32. The file is verified from its own bytes with
ExecuTorch's runtime (:func:`ssdlite.deploy.static_export.verify_static`) and written only when
the check passes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Sequence

import torch

from ssdlite.deploy.backends import StaticBackend
from ssdlite.deploy.optional import require
from ssdlite.deploy.static_export import (
    StaticExportReport,
    file_bytes,
    prepare_static,
    quantize_core_pt2e,
    read_metadata,
    static_calibration,
    write_verified,
)
from ssdlite.errors import UserError

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

    build = prepare_static(model, classes, "executorch", int8, images, batch, candidates)
    module, example, report = build.module, build.example, build.report
    with _quiet():
        if int8:
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

            batches = static_calibration(model, calibration, batch, "ExecuTorch")
            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            module = quantize_core_pt2e(module, example, batches, quantizer)
            report.calibration_images = batch * len(batches)
        program = torch.export.export(module, (example,), strict=False)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                              constant_methods={METADATA_METHOD: build.metadata})
        data = lowered.to_executorch().buffer
    return data, build.finish(ExecuTorchBackend(data).outputs, "ExecuTorch")


def export_executorch(model, path: str | os.PathLike, classes: Sequence[str] = (), **options) -> StaticExportReport:
    """:func:`build_executorch`, then write ``path`` atomically (only after the check passed)."""
    return write_verified(build_executorch, model, path, classes, **options)


class ExecuTorchBackend(StaticBackend):
    """A ``.pte`` written by :func:`export_executorch`, run by ExecuTorch's Python runtime."""

    name = "executorch"

    def __init__(self, source: str | os.PathLike | bytes, threads: int | None = None) -> None:
        require("executorch", "the ExecuTorch backend", EXTRA)
        from executorch.runtime import Runtime

        source, where = file_bytes(source, "the ExecuTorch program")
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
