"""INT8 post-training quantization of an exported ONNX model (onnxruntime static QDQ).

Weights are quantized per output channel (signed int8, which depthwise convolutions need: one
scale per channel instead of one for a layer whose channels differ by orders of magnitude) and
activations per tensor (unsigned int8, the U8S8 kernels x86 CPUs run fastest), with ranges from
min/max calibration on real images preprocessed exactly as at inference. Only the network is
quantized: the in-graph postprocess (decode, softmax, NMS) stays float, since boxes and scores
must not lose precision after the network. How much accuracy INT8 costs is measured by
``ssdlite quantize --val`` (never assumed).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ssdlite.deploy.optional import require
from ssdlite.deploy.sources import Unusable, check_unusable, expand_sources, note_ignored
from ssdlite.files import atomic_write
from ssdlite.models.transform import Preprocess


@dataclass
class InputImages:
    """Images read from a command's image sources: the ``images`` (uint8 ``(3, H, W)``), the inputs that could
    not be used (``unusable``, for :func:`ssdlite.deploy.sources.check_unusable`) and the files of folders that
    are not inputs (``ignored``). Iterates over ``images``."""

    images: list[torch.Tensor] = field(default_factory=list)
    unusable: list[Unusable] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def check(self, what: str, strict: bool = False) -> str:
        """:func:`~ssdlite.deploy.sources.check_unusable` on these images (and the note on ignored files)."""
        note_ignored(self.ignored)
        return check_unusable(what, len(self.images), self.unusable, strict)


def calibration_images(sources: Sequence[str], split: str = "train", limit: int = 100) -> InputImages:
    """Up to ``limit`` uint8 ``(3, H, W)`` images that can be used, and the inputs that cannot.

    A single dataset folder (VOC, COCO or YOLO) gives images of its ``split`` (the training images:
    calibrating on the validation split would flatter the measured accuracy), an image its annotation
    names but that is missing or does not decode being unusable; otherwise files, folders and globs as
    ``ssdlite predict`` reads them. Unusable inputs do not count towards ``limit``.
    """
    from ssdlite.data import build_dataset, detect_format
    from ssdlite.data.decode import ImageError, decode_image
    from ssdlite.errors import DataError

    found = InputImages()
    if len(sources) == 1 and Path(sources[0]).is_dir():
        try:
            fmt = detect_format(sources[0])
        except DataError:
            fmt = None
        if fmt is not None:
            dataset = build_dataset(sources[0], fmt, split=split, hold_out=True)
            # Images the annotations name that were dropped when the dataset was read (missing, unreadable).
            found.unusable += [Unusable(p.file, p.detail) for p in dataset.report.problems
                             if p.kind.startswith("image_") and p.severity == "error"]
            for index in range(len(dataset)):
                if len(found.images) == limit:
                    break
                try:
                    found.images.append(dataset.load(index)[0].as_subclass(torch.Tensor))
                except ImageError as err:
                    found.unusable.append(Unusable(err.path or str(dataset.records[index].image_path), err.detail))
            return found
    for path in expand_sources(sources, found.ignored):
        if len(found.images) == limit:
            break
        try:
            found.images.append(decode_image(path).as_subclass(torch.Tensor))
        except ImageError as err:
            found.unusable.append(Unusable(str(path), err.detail))
    return found


def calibration_batches(images: Iterable[torch.Tensor], preprocess: Preprocess, batch_size: int = 1) -> Iterator[torch.Tensor]:
    """Preprocessed ``(B, 3, S, S)`` batches of ``images``."""
    batch = []
    for image in images:
        batch.append(image)
        if len(batch) == batch_size:
            yield preprocess(batch)[0]
            batch = []
    if batch:
        yield preprocess(batch)[0]


def _reader(batches: Iterable[torch.Tensor]):
    ort_quant = require("onnxruntime.quantization", "INT8 quantization")

    class Reader(ort_quant.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": b.numpy()} for b in batches])
            self.count = 0

        def get_next(self):
            item = next(self.items, None)
            self.count += item is not None
            return item

    return Reader()


def quantize_model(model, batches: Iterable[torch.Tensor]):
    """``(quantized onnx.ModelProto, calibration batches used)`` for ``model`` (an ``onnx.ModelProto``
    written by ``ssdlite export``, raw or with NMS).

    Args:
        batches: calibration inputs ``(B, 3, S, S)``, preprocessed like the model's inputs.
    """
    onnx = require("onnx", "INT8 quantization")
    ort_quant = require("onnxruntime.quantization", "INT8 quantization")
    batches = list(batches)
    if not batches:
        raise ValueError("no calibration images could be read")
    exclude = [n.name for n in model.graph.node if n.name.startswith("postprocess/") or n.name in ("boxes", "scores", "labels", "num_detections")]
    reader = _reader(batches)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs advice (pre-processing) to the root logger on every call
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "fp32.onnx"
            onnx.save(model, src)
            dst = Path(tmp) / "int8.onnx"
            ort_quant.quantize_static(
                src,
                dst,
                reader,
                quant_format=ort_quant.QuantFormat.QDQ,
                per_channel=True,
                activation_type=ort_quant.QuantType.QUInt8,
                weight_type=ort_quant.QuantType.QInt8,
                nodes_to_exclude=exclude,
                calibrate_method=ort_quant.CalibrationMethod.MinMax,
            )
            quantized = onnx.load(dst)
    finally:
        root.setLevel(level)
    entry = quantized.metadata_props.add()
    entry.key, entry.value = "quantization", f"int8 static QDQ, per-channel weights, {reader.count} calibration batches"
    return quantized, reader.count


def quantize_onnx(model, out_path: str | os.PathLike, batches: Iterable[torch.Tensor]) -> int:
    """:func:`quantize_model`, written atomically to ``out_path``; returns the calibration batches used."""
    onnx = require("onnx", "INT8 quantization")
    quantized, count = quantize_model(model, batches)
    atomic_write(out_path, lambda tmp: onnx.save(quantized, tmp))
    return count
