"""OpenVINO: an IR ``.xml`` + ``.bin``), optionally INT8 through NNCF, verified before it is written.

``openvino.convert_model`` of :class:`~ssdlite.deploy.static_postprocess.StaticDetector` (network and
static-shape NMS) at a fixed input shape ``(B, 3, S, S)``; the metadata of
:func:`ssdlite.deploy.runtimes.static.metadata` is stored in the model's ``rt_info`` under
``ssdlite/metadata`` (a JSON string), so the ``.xml`` is self-describing.

Two layouts (export's ``--layout``; the metadata's ``layout``, absent for ssdlite's own):

- ``ssdlite`` (the default): the static files' contract, ``images (B, 3, S, S)`` float32 normalized in,
  ``boxes``/``scores``/``labels``/``count`` out (:mod:`ssdlite.deploy.runtimes.static`).
- ``frigate``: what Frigate's ``openvino`` detector runs with ``model_type: ssd`` (and OpenVINO's
  ``DetectionOutput`` convention, which that model type follows), batch 1. Input ``(1, S, S, 3)`` **uint8**
  RGB 0..255 (NHWC: Frigate's defaults ``input_tensor: nhwc``, ``input_pixel_format: rgb``,
  ``input_dtype: int``); the uint8 -> float conversion and the model's per-channel normalization are
  OpenVINO's own preprocessing in the graph (``PrePostProcessor``: ``(x - 255 mean) / (255 std)``, the same
  ``(x / 255 - mean) / std`` as ssdlite's). One output ``detection_out (1, 1, D, 7)`` float32, a row per
  detection ``[image_id, label, conf, x_min, y_min, x_max, y_max]``: image_id 0, label the 0-based class index
  (``classes[label]``; the export writes ``<name>.labelmap.txt`` beside the model, ``0 name`` a line, for
  Frigate's ``labelmap_path``), boxes normalized to [0, 1], rows by descending conf; the rows after the last
  detection are ``[-1, 0, 0, 0, 0, 0, 0]`` (image_id -1 ends the list in OpenVINO's convention; conf 0 ends
  Frigate's loop under any threshold, and label 0 is a valid class, so Frigate logs nothing for them).
  :class:`Backend` reads both layouts.

INT8: ``nncf.quantize`` (post-training, default preset), calibrated on the given images. The NMS's
matrix products (``MatMul``) are in its ignored scope: a quantized suppression count would no longer
be a count. The file is verified from its own bytes with OpenVINO's CPU plugin in f32 precision
(:func:`ssdlite.deploy.runtimes.static.verify_static`); the ``.bin`` is renamed into place before the
``.xml``, and only after the check passed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from ssdlite.deploy.optional import require
from ssdlite.deploy.runtimes import get
from ssdlite.deploy.runtimes.static import StaticBackend, StaticBuild, StaticRuntime, as_input_image, check_images, to_pixels
from ssdlite.errors import UserError

RUNTIME = get("openvino")
RT_INFO = ["ssdlite", "metadata"]
SSDLITE, FRIGATE = "ssdlite", "frigate"
LAYOUTS = (SSDLITE, FRIGATE)  # export's --layout (module doc); the first is the default
FRIGATE_OUTPUT = "detection_out"  # the name of OpenVINO's DetectionOutput result (and of Frigate's own model's)
FRIGATE_ROW = ("image_id", "label", "conf", "x_min", "y_min", "x_max", "y_max")
LABELMAP_SUFFIX = ".labelmap.txt"  # model.xml -> model.labelmap.txt


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


def frigate_layout(ov_model, mean, std):
    """``ov_model`` (ssdlite's layout, batch 1) in Frigate's layout (module doc): the same network and NMS, OpenVINO's
    preprocessing in front, the four outputs packed into ``detection_out`` rows behind. A quantized model keeps its
    quantization (nothing here is quantized)."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops
    from openvino.preprocess import PrePostProcessor

    boxes, scores, labels, _ = (r.input_value(0) for r in ov_model.get_results())  # (1, D, 4) xyxy, (1, D), (1, D) 1..K-1 (0: padding), (1,)
    filled = ops.greater(scores, np.float32(0))  # (1, D): a detection (the padding's score is 0, a detection's above the threshold)
    image_id = ops.select(filled, np.float32(0), np.float32(-1))  # (1, D)
    label = ops.convert(ops.maximum(ops.subtract(labels, np.int64(1)), np.int64(0)), ov.Type.f32)  # (1, D) 0-based; padding 0
    columns = [ops.unsqueeze(c, np.int64(2)) for c in (image_id, label, scores)]  # (1, D, 1) each
    rows = ops.unsqueeze(ops.concat([*columns, boxes], 2), np.int64(1))  # (1, 1, D, 7) in FRIGATE_ROW's order
    rows.output(0).get_tensor().set_names({FRIGATE_OUTPUT})
    model = ov.Model([rows], ov_model.get_parameters(), "ssdlite")
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    # (x / 255 - mean) / std = (x - 255 mean) / (255 std), per channel
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean([255.0 * m for m in mean]).scale([255.0 * s for s in std])
    return ppp.build()


def labelmap_path(path: str | os.PathLike) -> Path:
    """The label map a Frigate-layout export writes beside ``path`` (``model.xml`` -> ``model.labelmap.txt``)."""
    return Path(path).with_suffix(LABELMAP_SUFFIX)


def labelmap(classes, num_classes: int) -> str:
    """Frigate's label map: ``i name`` a line for each of the ``num_classes - 1`` foreground classes, ``i`` the file's
    0-based label (unnamed ones as ``predict`` names them: :func:`ssdlite.deploy.draw.class_name`). Indexed, because
    Frigate's ``load_labels`` reads a file whose first line starts with digits and a space as indexed: an unindexed
    file whose first class were "3 wheeler" would be misread (and one with a line without a space would fail)."""
    from ssdlite.deploy.draw import class_name

    return "".join(f"{i} {class_name(i + 1, classes)}\n" for i in range(num_classes - 1))


def written_beside(path: str | os.PathLike, layout: str | None) -> list[Path]:
    """The files an export to ``path`` writes beside it: the ``.bin``, and the label map in Frigate's layout."""
    return [Path(path).with_suffix(".bin")] + ([labelmap_path(path)] if layout == FRIGATE else [])


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
        try:
            meta = json.loads(text)
            self.layout = meta.get("layout", SSDLITE)
            self.mean, self.std = meta["image_mean"], meta["image_std"]
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise UserError(f"{where}: no readable ssdlite metadata ({err}); export it with 'ssdlite export'") from err
        if self.layout not in LAYOUTS:
            raise UserError(f"{where}: layout {self.layout!r} is not one this ssdlite reads ({', '.join(LAYOUTS)}); a newer ssdlite wrote it")
        # f32: the CPU plugin would otherwise run in bf16 on CPUs that have it and change the detections.
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        return text

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """ssdlite's outputs from normalized ``x (B, 3, S, S)``; a Frigate-layout file is given the pixels back
        (rounded to uint8, as Frigate feeds it) and its rows unpacked."""
        if self.layout == FRIGATE:
            rows = torch.from_numpy(self.compiled(to_pixels(x, self.mean, self.std, "uint8"))[0])[:, 0]  # (1, D, 7)
            filled = rows[..., 0] >= 0  # (1, D): image_id -1 is padding
            labels = (rows[..., 1].round().long() + 1) * filled  # (1, D) in 1..K-1, 0 for padding
            return rows[..., 3:7], rows[..., 2], labels, filled.sum(dim=1)
        result = self.compiled(x.numpy())
        return tuple(torch.from_numpy(result[i]) for i in range(4))


class OpenVINO(StaticRuntime):
    """The export of one ``layout`` (``"ssdlite"`` or ``"frigate"``, module doc)."""

    runtime = RUNTIME
    backend = Backend
    packages = ("openvino",)

    def __init__(self, layout: str = SSDLITE) -> None:
        if layout not in LAYOUTS:
            raise UserError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
        self.layout = layout

    def build(self, model, classes=(), *, layout: str | None = None, images=None, **options):
        """:meth:`StaticRuntime.build` (``layout``: this exporter's by default, module doc).

        A Frigate-layout file takes uint8 pixels: it is verified on the images resized to ``S x S`` uint8
        (:func:`~ssdlite.deploy.runtimes.static.as_input_image`), so that PyTorch sees what the file sees."""
        if layout is not None and layout != self.layout:
            return OpenVINO(layout).build(model, classes, images=images, **options)
        if self.layout == FRIGATE:
            if options.get("batch", 1) != 1:
                raise UserError(f"--layout {FRIGATE}: the file takes batch 1 (Frigate's detector feeds one frame); leave out --batch")
            images = [as_input_image(image, model.config) for image in check_images(images, model)]
        content, report = super().build(model, classes, images=images, **options)
        if self.layout == FRIGATE:
            size = model.config.size
            report.notes.append(f"Frigate's layout: 1 x {size} x {size} x 3 uint8 RGB input, {FRIGATE_OUTPUT} (1, 1, "
                                f"{content.outputs[0].get_shape()[2]}, 7) (verified on the images resized to it)")
        return content, report

    def convert(self, build: StaticBuild):
        """An ``openvino.Model``; INT8 through NNCF (the NMS's MatMuls left float) with the calibration batches; in
        Frigate's layout, wrapped after quantization (:func:`frigate_layout`)."""
        ov_model = _convert(build.module, build.example)
        if build.report.int8:
            batches = [x.numpy() for x in build.calibration]
            with _no_telemetry(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                nncf = require("nncf", "OpenVINO INT8", RUNTIME.extra)
                warnings.simplefilter("ignore")
                ov_model = nncf.quantize(
                    ov_model, nncf.Dataset(batches), subset_size=len(batches), ignored_scope=nncf.IgnoredScope(types=["MatMul"])
                )
        metadata = build.metadata
        if self.layout == FRIGATE:
            config = build.model.config
            ov_model = frigate_layout(ov_model, config.image_mean, config.image_std)
            metadata = json.dumps(json.loads(metadata) | {
                "layout": FRIGATE,
                "inputs": "images (1, S, S, 3) uint8 RGB 0..255 resized to S x S (NHWC); the file applies (x / 255 - image_mean) / image_std itself",
                "box_format": "x_min, y_min, x_max, y_max normalized to [0, 1]",
                "output_names": [FRIGATE_OUTPUT],
                "outputs_note": (f"{FRIGATE_OUTPUT} (1, 1, D, 7) float32 rows [{', '.join(FRIGATE_ROW)}] by descending conf; label is "
                                 "the 0-based class index (classes[label], the .labelmap.txt beside the model); rows after the "
                                 "last detection are [-1, 0, 0, 0, 0, 0, 0]"),
            })
        ov_model.set_rt_info(metadata, RT_INFO)
        return ov_model

    @contextlib.contextmanager
    def opened(self, content) -> Iterator[Backend]:
        """Verified from the saved IR, as a user will load it."""
        with tempfile.TemporaryDirectory() as tmp:
            save(content, Path(tmp) / "model.xml")
            yield Backend(Path(tmp) / "model.xml")

    def write(self, content, path: str | os.PathLike) -> None:
        """The IR, and in Frigate's layout its label map (written first: the ``.xml`` is the last file to appear)."""
        from ssdlite.files import write_bytes_atomic

        meta = json.loads(content.get_rt_info(RT_INFO).astype(str))
        if meta.get("layout") == FRIGATE:
            write_bytes_atomic(labelmap_path(path), labelmap(meta["classes"], meta["ssdlite_config"]["num_classes"]).encode())
        save(content, path)


_EXPORTER = OpenVINO()
build, export = _EXPORTER.build, _EXPORTER.export  # export(..., layout="frigate") for Frigate's layout
