"""OpenVINO: an IR ``.xml`` + ``.bin``), optionally INT8 through NNCF, verified before it is written.

``openvino.convert_model`` of :class:`~ssdlite.deploy.static_postprocess.StaticDetector` (network and
static-shape NMS) at a fixed input shape ``(B, 3, S, S)``; the metadata of
:func:`ssdlite.deploy.runtimes.static.metadata` is stored in the model's ``rt_info`` under
``ssdlite/metadata`` (a JSON string), so the ``.xml`` is self-describing.

INT8: ``nncf.quantize`` (post-training, default preset), calibrated on the given images. The NMS's
matrix products (``MatMul``) are in its ignored scope: a quantized suppression count would no longer
be a count. The file is verified from its own bytes with OpenVINO's CPU plugin in f32 precision
(:func:`ssdlite.deploy.runtimes.static.verify_static`); the ``.bin`` is renamed into place before the
``.xml``, and only after the check passed.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from ssdlite.deploy.optional import require
from ssdlite.deploy.runtimes import get
from ssdlite.deploy.runtimes.static import StaticBackend, StaticBuild, StaticRuntime
from ssdlite.errors import UserError

RUNTIME = get("openvino")
RT_INFO = ["ssdlite", "metadata"]


@contextlib.contextmanager
def _no_telemetry():
    """Without OpenVINO's and NNCF's usage telemetry, through the switch both check (``CI=true``).

    ``convert_model`` and NNCF (at import) start a telemetry sender that forks a process; forked from a
    process with torch's threads running it crashed the export (``free(): invalid pointer``, signal 11),
    and an export has no business sending anything."""
    before = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ["CI"]
        else:
            os.environ["CI"] = before


def _convert(module: torch.nn.Module, example: torch.Tensor):
    import openvino as ov

    with _no_telemetry(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.export.export(module, (example,), strict=False)
        model = ov.convert_model(program)
    model.reshape({model.inputs[0]: list(example.shape)})  # torch.export leaves the input shape open
    model.inputs[0].get_tensor().set_names({"images"})
    for output, name in zip(model.outputs, ("boxes", "scores", "labels", "count")):
        output.get_tensor().set_names({name})
    return model


def save(ov_model, path: str | os.PathLike) -> None:
    """Write ``path`` (.xml) and its ``.bin``, the ``.bin`` first, each renamed into place."""
    import openvino as ov

    path = Path(path)
    if path.suffix != ".xml":
        raise UserError(f"{path}: an OpenVINO model is written as .xml (with its .bin beside it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        ov.save_model(ov_model, str(Path(tmp) / path.name), compress_to_fp16=False)
        os.replace(Path(tmp) / path.with_suffix(".bin").name, path.with_suffix(".bin"))
        os.replace(Path(tmp) / path.name, path)


class Backend(StaticBackend):
    """An ``.xml`` written by :func:`export`, compiled for OpenVINO's CPU plugin in f32 precision."""

    runtime = RUNTIME
    package = "openvino"
    reads_path = True  # the .xml, and the .bin beside it

    def load(self, path: str | os.PathLike, where: str, threads: int | None) -> str:
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(path))
            text = model.get_rt_info(RT_INFO).astype(str)
        except RuntimeError as err:
            raise UserError(f"{where}: OpenVINO cannot read it, or it has no ssdlite metadata ({err})") from err
        # f32: the CPU plugin would otherwise run in bf16 on CPUs that have it and change the detections.
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        return text

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.compiled(x.numpy())
        return tuple(torch.from_numpy(result[i]) for i in range(4))


class OpenVINO(StaticRuntime):
    runtime = RUNTIME
    backend = Backend
    packages = ("openvino",)

    def convert(self, build: StaticBuild):
        """An ``openvino.Model``; INT8 through NNCF (the NMS's MatMuls left float) with the calibration batches."""
        ov_model = _convert(build.module, build.example)
        if build.report.int8:
            batches = [x.numpy() for x in build.calibration]
            with _no_telemetry(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                nncf = require("nncf", "OpenVINO INT8", RUNTIME.extra)
                warnings.simplefilter("ignore")
                ov_model = nncf.quantize(
                    ov_model, nncf.Dataset(batches), subset_size=len(batches), ignored_scope=nncf.IgnoredScope(types=["MatMul"])
                )
        ov_model.set_rt_info(build.metadata, RT_INFO)
        return ov_model

    @contextlib.contextmanager
    def opened(self, content) -> Iterator[Backend]:
        """Verified from the saved IR, as a user will load it."""
        with tempfile.TemporaryDirectory() as tmp:
            save(content, Path(tmp) / "model.xml")
            yield Backend(Path(tmp) / "model.xml")

    def write(self, content, path: str | os.PathLike) -> None:
        save(content, path)


_EXPORTER = OpenVINO()
build, export = _EXPORTER.build, _EXPORTER.export
