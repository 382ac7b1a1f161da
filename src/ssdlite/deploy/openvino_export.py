"""OpenVINO export (IR ``.xml`` + ``.bin``), optionally INT8 through NNCF, verified before it is written.

``openvino.convert_model`` of :class:`~ssdlite.deploy.static_postprocess.StaticDetector` (network and
static-shape NMS) at a fixed input shape ``(B, 3, S, S)``; the metadata of
:func:`ssdlite.deploy.static_export.metadata` is stored in the model's ``rt_info`` under
``ssdlite/metadata`` (a JSON string), so the ``.xml`` is self-describing.

INT8: ``nncf.quantize`` (post-training, default preset), calibrated on the given images. The NMS's
matrix products (``MatMul``) are in its ignored scope: a quantized suppression count would no longer
be a count. The file is verified from its own bytes with OpenVINO's CPU plugin in f32 precision
(:func:`ssdlite.deploy.static_export.verify_static`); the ``.bin`` is renamed into place before the
``.xml``, and only after the check passed.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from ssdlite.deploy.backends import StaticBackend
from ssdlite.deploy.optional import require
from ssdlite.deploy.static_export import (
    StaticExportReport,
    prepare_static,
    read_metadata,
    static_calibration,
)
from ssdlite.errors import UserError

EXTRA = "openvino"
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
    ov = require("openvino", "OpenVINO export", EXTRA)
    with _no_telemetry(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.export.export(module, (example,), strict=False)
        model = ov.convert_model(program)
    model.reshape({model.inputs[0]: list(example.shape)})  # torch.export leaves the input shape open
    model.inputs[0].get_tensor().set_names({"images"})
    for output, name in zip(model.outputs, ("boxes", "scores", "labels", "count")):
        output.get_tensor().set_names({name})
    return model


def build_openvino(
    model,
    classes: Sequence[str] = (),
    *,
    int8: bool = False,
    calibration: Sequence[torch.Tensor] = (),
    images: Sequence[torch.Tensor] | None = None,
    batch: int = 1,
    candidates: int | None = None,
):
    """Convert (and quantize) ``model``; returns ``(openvino.Model, report)`` after verifying it, writes nothing.

    Arguments as :func:`ssdlite.deploy.executorch_export.build_executorch`.
    """
    build = prepare_static(model, classes, "openvino", int8, images, batch, candidates)
    report = build.report
    ov_model = _convert(build.module, build.example)
    if int8:
        batches = [x.numpy() for x in static_calibration(model, calibration, batch, "OpenVINO")]
        with _no_telemetry(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            nncf = require("nncf", "OpenVINO INT8", EXTRA)
            warnings.simplefilter("ignore")
            ov_model = nncf.quantize(
                ov_model, nncf.Dataset(batches), subset_size=len(batches), ignored_scope=nncf.IgnoredScope(types=["MatMul"])
            )
        report.calibration_images = batch * len(batches)
    ov_model.set_rt_info(build.metadata, RT_INFO)
    with tempfile.TemporaryDirectory() as tmp:  # verified from the saved IR, as a user will load it
        save(ov_model, Path(tmp) / "model.xml")
        report = build.finish(OpenVINOBackend(Path(tmp) / "model.xml").outputs, "OpenVINO")
    return ov_model, report


def save(ov_model, path: str | os.PathLike) -> None:
    """Write ``path`` (.xml) and its ``.bin``, the ``.bin`` first, each renamed into place."""
    ov = require("openvino", "OpenVINO export", EXTRA)
    path = Path(path)
    if path.suffix != ".xml":
        raise UserError(f"{path}: an OpenVINO model is written as .xml (with its .bin beside it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        ov.save_model(ov_model, str(Path(tmp) / path.name), compress_to_fp16=False)
        os.replace(Path(tmp) / path.with_suffix(".bin").name, path.with_suffix(".bin"))
        os.replace(Path(tmp) / path.name, path)


def export_openvino(model, path: str | os.PathLike, classes: Sequence[str] = (), **options) -> StaticExportReport:
    """:func:`build_openvino`, then write ``path`` and its ``.bin`` (only after the check passed)."""
    ov_model, report = build_openvino(model, classes, **options)
    save(ov_model, path)
    report.path = str(path)
    return report


class OpenVINOBackend(StaticBackend):
    """An ``.xml`` written by :func:`export_openvino`, compiled for OpenVINO's CPU plugin in f32 precision."""

    name = "openvino"

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        ov = require("openvino", "the OpenVINO backend", EXTRA)
        if not os.path.isfile(path):
            raise UserError(f"{path}: no such file")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            text = model.get_rt_info(RT_INFO).astype(str)
        except RuntimeError as err:
            raise UserError(f"{path}: OpenVINO cannot read it, or it has no ssdlite metadata ({err})") from err
        self.config, self.classes, self.batch = read_metadata(text, path)
        # f32: the CPU plugin would otherwise run in bf16 on CPUs that have it and change the detections.
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.compiled(x.numpy())
        return tuple(torch.from_numpy(result[i]) for i in range(4))
