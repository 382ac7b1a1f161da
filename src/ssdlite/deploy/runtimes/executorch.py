"""ExecuTorch: a ``.pte`` (XNNPACK delegate), optionally INT8 through PT2E, verified before it is written.

``torch.export`` of :class:`~ssdlite.deploy.static_postprocess.StaticDetector` (network and static-shape
NMS: no data-dependent shape anywhere), lowered with ``to_edge_transform_and_lower`` and the
``XnnpackPartitioner`` (the convolutions run in XNNPACK, the few postprocess ops in ExecuTorch's
portable kernels), then ``to_executorch``. The metadata of :func:`ssdlite.deploy.runtimes.static.metadata`
travels inside the ``.pte`` as the constant method ``ssdlite_metadata`` (a string).

INT8: the PT2E flow (:func:`~ssdlite.deploy.runtimes.static.quantize_core_pt2e` with ExecuTorch's
``XNNPACKQuantizer``, symmetric per-channel weights, static activations), calibrated on the given images;
only the network is INT8, the postprocess stays float32. The file is verified from its own bytes with
ExecuTorch's runtime and written only when the check passes (:class:`~ssdlite.deploy.runtimes.static.StaticRuntime`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import torch

from ssdlite.deploy.runtimes import get
from ssdlite.deploy.runtimes.static import StaticBackend, StaticBuild, StaticRuntime, quantize_core_pt2e
from ssdlite.errors import UserError

RUNTIME = get("executorch")
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


class Backend(StaticBackend):
    """A ``.pte`` written by :func:`export`, run by ExecuTorch's Python runtime."""

    runtime = RUNTIME
    package = "executorch"

    def load(self, data: bytes, where: str, threads: int | None) -> str:
        from executorch.runtime import Runtime

        self.data = data  # the loaded program points into these bytes: they must live as long as it does
        try:
            with _quiet():
                self.program = Runtime.get().load_program(self.data)
                self.method = self.program.load_method("forward")
                return self.program.load_method(METADATA_METHOD).execute([])[0]
        except (RuntimeError, ValueError, AttributeError) as err:
            raise UserError(f"{where}: ExecuTorch cannot load it, or it has no {METADATA_METHOD} ({err})") from err

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.method.execute([x]))


class ExecuTorch(StaticRuntime):
    runtime = RUNTIME
    backend = Backend
    packages = ("executorch",)

    def convert(self, build: StaticBuild) -> bytes:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        module = build.module
        with _quiet():
            if build.report.int8:
                from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

                quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
                module = quantize_core_pt2e(module, build.example, build.calibration, quantizer)
            program = torch.export.export(module, (build.example,), strict=False)
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                                  constant_methods={METADATA_METHOD: build.metadata})
            return lowered.to_executorch().buffer


_EXPORTER = ExecuTorch()
build, export = _EXPORTER.build, _EXPORTER.export
