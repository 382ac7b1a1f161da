"""LiteRT (TFLite): a ``.tflite`` that MediaPipe Tasks' ``ObjectDetector``, Frigate's ``cpu`` detector and ssdlite's own
backend all read, optionally INT8 through PT2E, verified before it is written.

``litert_torch.convert`` (Google's PyTorch -> LiteRT converter, built on ``torch.export``; no TensorFlow) of
:class:`~ssdlite.deploy.static_postprocess.StaticDetector`: the network and the static-shape NMS in one
``.tflite`` flatbuffer with builtin ops only, so NNAPI, the GPU delegate and XNNPACK need no custom
``TFLite_Detection_PostProcess`` op.

The layout (``"layout": "mediapipe"`` in ssdlite's metadata), :class:`MediaPipeDetector` around the detector:

- input ``(B, S, S, 3)`` RGB, resized to ``S x S`` by the caller: **uint8** 0..255 by default (what MediaPipe's
  image path and Frigate's ``input_dtype: int`` feed); with ``input_type="float32"`` float32 in [0, 1] (pixel / 255:
  MediaPipe's NormalizationOptions in the file say mean 0, std 255, one value for every channel; Frigate's
  ``input_dtype: float``). The model's per-channel ``(x - image_mean) / image_std`` is folded into the graph;
- outputs, in this order (the subgraph's outputs 0..3: Frigate reads them by index, MediaPipe by the names in the
  TFLite Model Metadata), all float32: ``location (B, D, 4)`` ``[ymin, xmin, ymax, xmax]`` normalized to [0, 1],
  ``category (B, D)`` the 0-based class index (``classes[category]``), ``score (B, D)`` descending,
  ``number of detections (B,)``; entries past the count are zero.

The flatbuffer's ``metadata`` table holds two entries: ``ssdlite_metadata`` (JSON, :func:`ssdlite.deploy.runtimes.static.metadata`
plus the layout; what ssdlite's :class:`Backend` reads; LiteRT's ``Interpreter`` ignores it) and ``TFLITE_METADATA``,
the TFLite Model Metadata (tflite-support's ``metadata_schema.fbs``, file identifier ``M001``, written here with
``flatbuffers``: :func:`tflite_model_metadata`) that MediaPipe requires: the input's image properties (and
normalization for float32), the four outputs' names, the box order in ``BoundingBoxProperties`` and a labels file.
The labels file (``labels.txt``, one class name a line, line ``i`` is category ``i``) is an associated file of type
``TENSOR_VALUE_LABELS``, packed as tflite-support's populator packs them: a zip archive appended to the flatbuffer
(a LiteRT interpreter reads the flatbuffer and ignores the tail; MediaPipe opens the tail as a zip).

Files written before this layout (``ssdlite_metadata`` without ``layout``) take ``images (B, 3, S, S)`` float32
normalized and give ``boxes`` xyxy, ``scores``, int32 ``labels`` in ``1..K-1`` and int32 ``count``; :class:`Backend`
reads both.

INT8: the PT2E flow (:func:`~ssdlite.deploy.runtimes.static.quantize_core_pt2e`) with LiteRT's own
``PT2EQuantizer`` (symmetric per-channel weights, static int8 activations), then the converter's static
quantize/dequantize folding, calibrated on the given images; only the network is INT8, the postprocess stays
float32. The input stays uint8 (or float32): the normalization in front of the network keeps the first quantize
inside the graph. (Files of the old layout had the first quantize folded into an int8 input: :class:`Backend`
quantizes with the input tensor's scale and zero point.) The file is verified from its own bytes with LiteRT's
``Interpreter`` (XNNPACK on the CPU) and written only when the check passes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import warnings
import zipfile
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ssdlite.deploy.model_files import TFLITE_METADATA
from ssdlite.deploy.runtimes import get
from ssdlite.deploy.runtimes.static import (  # as_input_image, to_pixels: also for callers of this module
    StaticBackend, StaticBuild, StaticRuntime, as_input_image, check_images, quantize_core_pt2e, to_pixels,
)
from ssdlite.errors import UserError

RUNTIME = get("tflite")
METADATA_NAME = "ssdlite_metadata"
TFLITE_METADATA_NAME = TFLITE_METADATA.decode()  # the metadata table entry MediaPipe and tflite-support read
LAYOUT = "mediapipe"  # ssdlite_metadata's "layout" of the files this module writes; absent in older files
INPUT_TYPES = ("uint8", "float32")  # export's --input-type
OUTPUT_NAMES = ("location", "category", "score", "number of detections")  # MediaPipe's names, in the file's order
LABELS_FILE = "labels.txt"
#: float32 input: the NormalizationOptions MediaPipe applies before the file, (pixel - 0) / 255, one for all channels
FLOAT_MEAN, FLOAT_STD = 0.0, 255.0
#: BoundingBoxProperties.index for [ymin, xmin, ymax, xmax]: where left, top, right, bottom sit in a box
YXYX_INDEX = (1, 0, 3, 2)


@contextlib.contextmanager
def _quiet():
    """The converter prints a progress line per stage and logs through absl; a failure still raises."""
    level = logging.root.level
    logging.root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.root.setLevel(level)


class MediaPipeDetector(nn.Module):
    """:class:`~ssdlite.deploy.static_postprocess.StaticDetector` behind MediaPipe's tensors (module doc).

    ``images (B, S, S, 3)`` uint8 0..255 or float32 [0, 1] -> ``location (B, D, 4)`` yxyx normalized,
    ``category (B, D)``, ``score (B, D)``, ``number of detections (B,)``, all float32.
    """

    def __init__(self, detector: nn.Module, mean: Sequence[float], std: Sequence[float], input_type: str) -> None:
        super().__init__()
        self.detector = detector
        # (x / 255 - mean) / std = x * scale + shift per channel, (1, 3, 1, 1); a float32 input is already x / 255.
        divisor = 255.0 if input_type == "uint8" else 1.0
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (divisor * std_t))
        self.register_buffer("shift", -torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) / std_t)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images.permute(0, 3, 1, 2).float() * self.scale + self.shift  # (B, 3, S, S) normalized
        boxes, scores, labels, count = self.detector(x)  # xyxy (B, D, 4), (B, D), (B, D) in 0..K-1 (0: padding), (B,)
        location = boxes[..., [1, 0, 3, 2]]  # (B, D, 4) [ymin, xmin, ymax, xmax]
        category = (labels - 1).clamp(min=0).float()  # (B, D) 0-based; padding stays 0
        return location, category, scores, count.float()


# --- TFLite Model Metadata (tflite-support's metadata_schema.fbs), written with flatbuffers' Builder -------------
# A table's fields are numbered in declaration order, a union taking two (its type, then its value). The numbers
# used below, from the schema: ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, author 4,
# license 5, associated_files 6, min_parser_version 7. SubGraphMetadata: name 0, description 1,
# input_tensor_metadata 2, output_tensor_metadata 3. TensorMetadata: name 0, description 1, dimension_names 2,
# content 3, process_units 4, stats 5, associated_files 6. Content: content_properties_type 0, content_properties 1,
# range 2. ContentProperties: FeatureProperties 1, ImageProperties 2, BoundingBoxProperties 3. ImageProperties:
# color_space 0 (RGB 1), default_size 1. ImageSize: width 0, height 1. BoundingBoxProperties: index 0, type 1
# (BOUNDARIES 1), coordinate_type 2 (RATIO 0). ValueRange: min 0, max 1. ProcessUnit: options_type 0, options 1
# (NormalizationOptions 1). NormalizationOptions: mean 0, std 1. Stats: max 0, min 1. AssociatedFile: name 0,
# description 1, type 2 (TENSOR_VALUE_LABELS 3).
_FEATURE, _IMAGE, _BOX = 1, 2, 3
_RGB, _BOUNDARIES, _TENSOR_VALUE_LABELS, _NORMALIZATION = 1, 1, 3, 1
METADATA_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # every field used here is in the schema's first version


def _table(builder, fields: Sequence[tuple[str, int, int]]) -> int:
    """A table from ``(kind, slot, value)``: kind ``offset`` (a string, vector or table made before), ``uint8``,
    ``int8``, ``uint32`` or ``int32``; a None value leaves the field out."""
    builder.StartObject(max(slot for _, slot, _ in fields) + 1)
    for kind, slot, value in fields:
        if value is None:
            continue
        if kind == "offset":
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        else:
            # force the value even where it equals the schema's default (0): explicit reads the same to every reader
            {"uint8": builder.PrependUint8Slot, "int8": builder.PrependInt8Slot, "uint32": builder.PrependUint32Slot,
             "int32": builder.PrependInt32Slot}[kind](slot, value, value + 1)
    return builder.EndObject()


def _offsets(builder, offsets: Sequence[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def tflite_model_metadata(classes: Sequence[str], size: int, input_type: str, name: str, description: str) -> bytes:
    """The TFLite Model Metadata flatbuffer (``M001``) of a file of this layout, for ``TFLITE_METADATA``."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    s = b.CreateString

    def tensor(tname: str, tdescription: str, content: int, process_units: int | None = None, stats: int | None = None,
               files: int | None = None) -> int:
        n, d = s(tname), s(tdescription)
        return _table(b, [("offset", 0, n), ("offset", 1, d), ("offset", 3, content), ("offset", 4, process_units),
                          ("offset", 5, stats), ("offset", 6, files)])

    def content(kind: int, properties: int, value_range: int | None = None) -> int:
        return _table(b, [("uint8", 0, kind), ("offset", 1, properties), ("offset", 2, value_range)])

    def feature() -> int:
        b.StartObject(0)
        return b.EndObject()

    def dim2() -> int:  # the content (boxes, classes, scores) runs along dimension 2 of (1, D, ...): range [2, 2]
        return _table(b, [("int32", 0, 2), ("int32", 1, 2)])

    # input: the image
    image_size = _table(b, [("uint32", 0, size), ("uint32", 1, size)])
    image = content(_IMAGE, _table(b, [("int8", 0, _RGB), ("offset", 1, image_size)]))
    units = stats = None
    if input_type == "float32":
        mean, std = b.CreateNumpyVector(np.array([FLOAT_MEAN], np.float32)), b.CreateNumpyVector(np.array([FLOAT_STD], np.float32))
        normalization = _table(b, [("offset", 0, mean), ("offset", 1, std)])
        units = _offsets(b, [_table(b, [("uint8", 0, _NORMALIZATION), ("offset", 1, normalization)])])
        low, high = 0.0, 1.0
    else:
        low, high = 0.0, 255.0
    stats = _table(b, [("offset", 0, b.CreateNumpyVector(np.array([high], np.float32))),
                       ("offset", 1, b.CreateNumpyVector(np.array([low], np.float32)))])
    pixels = "uint8 0..255" if input_type == "uint8" else "float32 in [0, 1] (pixel / 255)"
    inputs = _offsets(b, [tensor("image", f"RGB {size} x {size}, {pixels}", image, units, stats)])

    # outputs, in the file's order
    index = b.CreateNumpyVector(np.array(YXYX_INDEX, np.uint32))
    box = _table(b, [("offset", 0, index), ("int8", 1, _BOUNDARIES), ("int8", 2, 0)])
    location = tensor(OUTPUT_NAMES[0], "boxes [ymin, xmin, ymax, xmax] normalized to [0, 1]", content(_BOX, box, dim2()))
    label_file = _table(b, [("offset", 0, s(LABELS_FILE)), ("offset", 1, s("class names, line i is category i")),
                            ("int8", 2, _TENSOR_VALUE_LABELS)])
    category = tensor(OUTPUT_NAMES[1], "0-based class index", content(_FEATURE, feature(), dim2()), files=_offsets(b, [label_file]))
    score = tensor(OUTPUT_NAMES[2], "score of each detection, descending", content(_FEATURE, feature(), dim2()))
    number = tensor(OUTPUT_NAMES[3], "how many entries are detections (the rest are zero)", content(_FEATURE, feature()))
    outputs = _offsets(b, [location, category, score, number])

    subgraph = _table(b, [("offset", 0, s(name)), ("offset", 2, inputs), ("offset", 3, outputs)])
    model_fields = [("offset", 0, s(name)), ("offset", 1, s(description)), ("offset", 3, _offsets(b, [subgraph])),
                    ("offset", 4, s("ssdlite")), ("offset", 7, s(MIN_PARSER_VERSION))]
    b.Finish(_table(b, model_fields), file_identifier=METADATA_IDENTIFIER)
    return bytes(b.Output())


def with_metadata(data: bytes, entries: dict[str, bytes | str]) -> bytes:
    """The flatbuffer ``data`` with each of ``entries`` (name -> bytes, or text stored as UTF-8) in its ``metadata``
    table, replacing an entry of the same name.

    Uses the TFLite schema's generated object API that ships with ``ai-edge-litert``; the model is unpacked and
    packed again whole (0.3 s for the paper model's 12 MB)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    kept = [m for m in (model.metadata or []) if m.name.decode() not in entries]
    for name, content in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(content.encode() if isinstance(content, str) else content, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        kept.append(entry)
    model.metadata = kept
    builder = flatbuffers.Builder(len(data) + sum(len(c) for c in entries.values()) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def with_associated_files(data: bytes, files: dict[str, bytes]) -> bytes:
    """``data`` followed by a zip archive of ``files``: how tflite-support's metadata populator packs associated
    files (zipfile appends an archive whose offsets count from the start of the whole file)."""
    out = io.BytesIO(data)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def associated_files(data: bytes) -> dict[str, bytes]:
    """The files packed after the flatbuffer (:func:`with_associated_files`); empty for a file without any."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}


def read_tflite_metadata(data: bytes, name: str = METADATA_NAME) -> str | None:
    """The text stored under ``name`` in the flatbuffer's ``metadata`` table, or None."""
    raw = read_metadata_bytes(data, name)
    return None if raw is None else raw.decode()


def read_metadata_bytes(data: bytes, name: str) -> bytes | None:
    """The bytes stored under ``name`` in the flatbuffer's ``metadata`` table, or None."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == name.encode() and entry.Buffer() < model.BuffersLength():
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


class Backend(StaticBackend):
    """A ``.tflite`` written by :func:`export` (either layout, module doc), run by LiteRT's ``Interpreter`` (XNNPACK
    on the CPU). ``outputs`` takes ssdlite's normalized ``(B, 3, S, S)`` and gives ``boxes`` xyxy, ``scores``, int64
    ``labels`` in ``1..K-1`` and int64 ``count`` for both: a MediaPipe-layout file gets the pixels back
    (:func:`to_pixels`; rounded to uint8 for a uint8 file, as an app feeds it)."""

    runtime = RUNTIME
    package = "ai_edge_litert"

    def load(self, data: bytes, where: str, threads: int | None) -> str:
        from ai_edge_litert.interpreter import Interpreter

        self.data = data  # the interpreter reads the model from these bytes: they must live as long as it does
        try:
            text = read_tflite_metadata(self.data)
        except Exception as err:  # the flatbuffer reader fails with whatever a truncated or foreign file makes it hit
            raise UserError(f"{where}: not a LiteRT flatbuffer ({type(err).__name__}: {err})") from err
        try:
            with _quiet():
                self.interpreter = Interpreter(model_content=self.data, num_threads=threads)
                self.interpreter.allocate_tensors()
            self.runner = self.interpreter.get_signature_runner()
        except (RuntimeError, ValueError, IndexError) as err:
            raise UserError(f"{where}: LiteRT cannot load it ({err})") from err
        if text is None:
            raise UserError(f"{where}: no {METADATA_NAME} in the file; export it with 'ssdlite export --format {RUNTIME.name}'")
        try:
            meta = json.loads(text)
            self.layout = meta.get("layout")
            self.input_type = meta.get("input_type", "float32")
            self.mean, self.std = meta["image_mean"], meta["image_std"]
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise UserError(f"{where}: no readable ssdlite metadata ({err}); export it with 'ssdlite export'") from err
        if self.layout not in (None, LAYOUT) or self.input_type not in INPUT_TYPES:
            raise UserError(f"{where}: layout {self.layout!r} with input {self.input_type!r} is not one this ssdlite reads "
                            f"({LAYOUT!r} with {'/'.join(INPUT_TYPES)}, or none); a newer ssdlite wrote it")
        self.input_name = self.interpreter.get_signature_list()["serving_default"]["inputs"][0]
        detail = self.runner.get_input_details()[self.input_name]
        # An old-layout INT8 file's converter folded the network's first quantize into the input: it takes int8
        # images, q = round(x / scale) + zero_point with the input tensor's own quantization parameters.
        self.input_dtype = detail["dtype"]
        self.input_quantization = detail.get("quantization", (0.0, 0))
        return text

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.layout == LAYOUT:
            result = self.runner(**{self.input_name: to_pixels(x, self.mean, self.std, self.input_type)})
            # litert_torch names a tuple's outputs output_0..output_3, in MediaPipeDetector's order
            location, category, score, count = (torch.from_numpy(result[f"output_{i}"]) for i in range(4))
            count = count.round().long()  # (B,)
            filled = torch.arange(category.shape[1]) < count[:, None]  # (B, D): the detections, not the padding
            labels = (category.round().long() + 1) * filled
            return location[..., [1, 0, 3, 2]], score, labels, count
        x = x.numpy()
        if self.input_dtype != np.float32:
            scale, zero_point = self.input_quantization
            info = np.iinfo(self.input_dtype)
            x = np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(self.input_dtype)
        result = self.runner(**{self.input_name: x})
        # litert_torch names a tuple's outputs output_0..output_3, in order: boxes, scores, labels, count
        boxes, scores, labels, count = (torch.from_numpy(result[f"output_{i}"]) for i in range(4))
        return boxes, scores, labels.long(), count.long()


class LiteRT(StaticRuntime):
    """The export of one ``input_type`` (``"uint8"`` or ``"float32"``, module doc)."""

    runtime = RUNTIME
    backend = Backend
    packages = ("litert_torch", "ai_edge_litert", "flatbuffers")

    def __init__(self, input_type: str = "uint8") -> None:
        if input_type not in INPUT_TYPES:
            raise UserError(f"--input-type {input_type!r}: choose one of {', '.join(INPUT_TYPES)}")
        self.input_type = input_type

    def build(self, model, classes: Sequence[str] = (), *, input_type: str | None = None, images=None, **options):
        """:meth:`StaticRuntime.build` (``input_type``: this exporter's by default, module doc).

        A uint8 file is verified on the images resized to ``S x S`` uint8 (:func:`as_input_image`), the pixels an app
        gives it: PyTorch runs on the same pixels, so the check stays exact. Where ``mediapipe`` is importable (not in
        ssdlite's install; ``make mediapipe`` makes an environment of its own), MediaPipe's ``ObjectDetector`` runs
        the file too and must give PyTorch's detections (:func:`check_mediapipe`)."""
        if input_type is not None and input_type != self.input_type:
            return LiteRT(input_type).build(model, classes, images=images, **options)
        size = model.config.size
        images = check_images(images, model)
        if self.input_type == "uint8":
            images = [as_input_image(image, model.config) for image in images]
        content, report = super().build(model, classes, images=images, **options)
        pixels = "0..255" if self.input_type == "uint8" else "[0, 1]"
        report.notes.append(f"MediaPipe layout, {report.batch} x {size} x {size} x 3 {self.input_type} {pixels} input"
                            + (" (verified on the images resized to it)" if self.input_type == "uint8" else "")
                            + ("" if report.batch == 1 else " (MediaPipe and Frigate take batch 1 only)"))
        if report.batch == 1 and importlib.util.find_spec("mediapipe") is not None:
            comparison = check_mediapipe(model, content, [as_input_image(image, model.config) for image in images], report.int8)
            report.notes.append("MediaPipe ObjectDetector: " + comparison.summary())
        return content, report

    def convert(self, build: StaticBuild) -> bytes:
        import litert_torch

        config = build.model.config
        module, options = build.module, {}
        with _quiet():
            if build.report.int8:
                from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
                from litert_torch.quantize.quant_config import QuantConfig

                quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
                module = quantize_core_pt2e(module, build.example, build.calibration, quantizer, fold_quantize=False)
                options["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
            wrapped = MediaPipeDetector(module, config.image_mean, config.image_std, self.input_type)
            wrapped.training = False  # the wrapper alone: .eval() would recurse into a PT2E-quantized core, which refuses it
            example = torch.from_numpy(to_pixels(build.example, config.image_mean, config.image_std, self.input_type))
            with torch.no_grad():
                converted = litert_torch.convert(wrapped, (example,), **options)
        meta = json.loads(build.metadata)
        classes = meta["classes"]
        size = config.size
        meta.update({
            "layout": LAYOUT,
            "input_type": self.input_type,
            "inputs": (f"images (B, S, S, 3) {self.input_type} RGB resized to S x S: "
                       + ("0..255" if self.input_type == "uint8" else "[0, 1] (pixel / 255)")
                       + "; the file applies (x - image_mean) / image_std itself"),
            "box_format": "yxyx normalized to [0, 1]: [ymin, xmin, ymax, xmax]",
            "output_names": list(OUTPUT_NAMES),
            "outputs_note": "all float32; category is the 0-based class index (classes[category]); entries past the count are zero",
        })
        name = f"ssdlite {config.arch} {size}"
        description = f"SSDLite detector ({len(classes)} classes: {', '.join(classes)[:200]}); exported by ssdlite"
        content = with_metadata(converted.model_content(), {
            METADATA_NAME: json.dumps(meta),
            TFLITE_METADATA_NAME: tflite_model_metadata(classes, size, self.input_type, name, description),
        })
        return with_associated_files(content, {LABELS_FILE: "".join(f"{c}\n" for c in classes).encode()})


MEDIAPIPE_SCORE = 0.3  # the detections compared with MediaPipe's: those above it (its score_threshold)
#: MediaPipe against PyTorch: same class, IoU of the boxes in MediaPipe's whole pixels, score
MEDIAPIPE_MATCH = {"min_iou": 0.95, "score_tol": 2e-3}


TRUNC_EPS = 1e-3  # px: PyTorch's and the file's boxes differ by float rounding (about 1e-5 px) before MediaPipe truncates


def mediapipe_boxes(boxes: torch.Tensor, found: torch.Tensor | None = None) -> torch.Tensor:
    """``(D, 4)`` xyxy pixels as MediaPipe reports them: whole pixels, the corner and the size each truncated
    (``origin_x = int(xmin)``, ``width = int(xmax - xmin)``; measured: PyTorch's [55.55, 14.57, 92.34, 32.19] is
    MediaPipe's origin (55, 14), size (36, 17)).

    A value within :data:`TRUNC_EPS` of a whole pixel truncates to either side depending on float rounding (a 20 px
    platelet of BCCD came out one pixel narrower in MediaPipe than PyTorch's truncated box: IoU 0.952); with
    ``found`` (``(Q, 4)``, MediaPipe's boxes of the image), a box whose truncation is ambiguous that way takes the
    found box that is one of its possible truncations."""
    def truncated(shift: float) -> tuple[torch.Tensor, torch.Tensor]:  # corner (D, 2), size (D, 2)
        return (boxes[:, :2] + shift).trunc(), (boxes[:, 2:] - boxes[:, :2] + shift).trunc()

    corner, size = truncated(0.0)
    plain = torch.cat([corner, corner + size], dim=1)
    if found is None or not len(found) or not len(boxes):
        return plain
    (low_corner, low_size), (high_corner, high_size) = truncated(-TRUNC_EPS), truncated(TRUNC_EPS)
    f_corner, f_size = found[None, :, :2], (found[:, 2:] - found[:, :2])[None]  # (1, Q, 2)
    fits = ((f_corner >= low_corner[:, None]) & (f_corner <= high_corner[:, None])
            & (f_size >= low_size[:, None]) & (f_size <= high_size[:, None])).all(dim=-1)  # (D, Q)
    return torch.where(fits.any(dim=1, keepdim=True), found[fits.float().argmax(dim=1)], plain)


def compare_mediapipe(model, images: Sequence[torch.Tensor], found: Sequence[Sequence[dict]], classes: Sequence[str],
                      int8: bool = False):
    """PyTorch's detections above :data:`MEDIAPIPE_SCORE` on ``images`` (``(3, S, S)`` uint8) against MediaPipe's
    (``found``: :func:`ssdlite.deploy.runtimes.litert_mediapipe.detect`'s), one to one: same class, IoU >= 0.95 in
    MediaPipe's whole pixels (:func:`mediapipe_boxes`), score within 2e-3 (INT8: the same objects, as the export's own check)."""
    from ssdlite.deploy.compare import compare_detections
    from ssdlite.deploy.runtimes.static import INT8_MATCH

    names = {name: i + 1 for i, name in enumerate(classes)}
    expected, got = [], []
    with torch.no_grad():
        outputs = model(list(images))
    for out, image in zip(outputs, found):
        unknown = [d["name"] for d in image if d["name"] not in names]
        if unknown:
            raise UserError(f"MediaPipe named classes the file does not have: {unknown[:3]}")
        got.append({"boxes": torch.tensor([d["box"] for d in image], dtype=torch.float32).view(-1, 4),
                    "scores": torch.tensor([d["score"] for d in image], dtype=torch.float32),
                    "labels": torch.tensor([names[d["name"]] for d in image], dtype=torch.int64)})
        keep = out["scores"] > MEDIAPIPE_SCORE
        boxes = mediapipe_boxes(out["boxes"][keep], got[-1]["boxes"])
        expected.append({"boxes": boxes, "scores": out["scores"][keep], "labels": out["labels"][keep]})
    comparison = compare_detections(expected, got, score_floor=MEDIAPIPE_SCORE, **(INT8_MATCH if int8 else MEDIAPIPE_MATCH))
    if int8:
        comparison.problems = []  # reported, not a failure (as the export's own INT8 check)
    return comparison


def check_mediapipe(model, content: bytes, images: Sequence[torch.Tensor], int8: bool = False):
    """MediaPipe's ``ObjectDetector`` (in this process) on ``content`` and ``images`` (``(3, S, S)`` uint8), compared
    with PyTorch (:func:`compare_mediapipe`); a mismatch of an fp32 file raises
    :class:`~ssdlite.deploy.verify.ExportMismatchError`."""
    from ssdlite.deploy.runtimes.litert_mediapipe import detect
    from ssdlite.deploy.verify import ExportMismatchError

    classes = json.loads(read_tflite_metadata(content))["classes"]
    with _quiet():
        found = detect(content, [image.permute(1, 2, 0).numpy() for image in images], MEDIAPIPE_SCORE)
    comparison = compare_mediapipe(model, images, found, classes, int8)
    if not comparison.ok:
        raise ExportMismatchError("MediaPipe's ObjectDetector does not give PyTorch's detections on the file: "
                                  + comparison.summary() + "; " + "; ".join(comparison.problems[:5]))
    return comparison


_EXPORTER = LiteRT()
build, export = _EXPORTER.build, _EXPORTER.export  # export(..., input_type="float32") for the float32 input
