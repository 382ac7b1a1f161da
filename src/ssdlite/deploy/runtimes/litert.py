"""LiteRT (TFLite): a ``.tflite``, optionally INT8 through PT2E, verified before it is written.

``litert_torch.convert`` (Google's PyTorch -> LiteRT converter, built on ``torch.export``; no TensorFlow) of
:class:`~ssdlite.deploy.static_postprocess.StaticDetector`: the network and the static-shape NMS in one
``.tflite`` flatbuffer with builtin ops only, so NNAPI, the GPU delegate and XNNPACK need no custom
``TFLite_Detection_PostProcess`` op. The metadata of :func:`ssdlite.deploy.runtimes.static.metadata` (JSON) is
added to the flatbuffer's own ``metadata`` table under the name ``ssdlite_metadata``, which LiteRT's
``Interpreter`` ignores and any flatbuffer reader (or :func:`read_tflite_metadata`) finds.

LiteRT has 32-bit integers at its interface (the converter's default, what Android's and iOS's APIs feed and
read): ``labels (B, D)`` and ``count (B,)`` are int32 in the file, int64 in ssdlite's other files.

INT8: the PT2E flow (:func:`~ssdlite.deploy.runtimes.static.quantize_core_pt2e`) with LiteRT's own
``PT2EQuantizer`` (symmetric per-channel weights, static int8 activations), then the converter's static
quantize/dequantize folding, calibrated on the given images; only the network is INT8, the postprocess stays
float32. The converter folds the network's first quantize into the input, so an INT8 file takes int8 images
(the input tensor's scale and zero point; :class:`Backend` quantizes). The file is verified from its own
bytes with LiteRT's ``Interpreter`` (XNNPACK on the CPU) and written only when the check passes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np
import torch

from ssdlite.deploy.runtimes import get
from ssdlite.deploy.runtimes.static import StaticBackend, StaticBuild, StaticRuntime, quantize_core_pt2e
from ssdlite.errors import UserError

RUNTIME = get("tflite")
METADATA_NAME = "ssdlite_metadata"


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


def with_metadata(data: bytes, name: str, text: str) -> bytes:
    """The flatbuffer ``data`` with ``text`` (UTF-8) added to its ``metadata`` table as ``name``.

    Uses the TFLite schema's generated object API that ships with ``ai-edge-litert``; the model is unpacked and
    packed again whole (0.3 s for the paper model's 12 MB)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(text.encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != name.encode()] + [entry]
    builder = flatbuffers.Builder(len(data) + len(text) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_tflite_metadata(data: bytes, name: str = METADATA_NAME) -> str | None:
    """The text stored under ``name`` in the flatbuffer's ``metadata`` table, or None."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == name.encode() and entry.Buffer() < model.BuffersLength():
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode()
    return None


class Backend(StaticBackend):
    """A ``.tflite`` written by :func:`export`, run by LiteRT's ``Interpreter`` (XNNPACK on the CPU)."""

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
        self.input_name = self.interpreter.get_signature_list()["serving_default"]["inputs"][0]
        detail = self.runner.get_input_details()[self.input_name]
        # An INT8 file's converter folds the network's first quantize into the input: it takes int8 images,
        # q = round(x / scale) + zero_point with the input tensor's own quantization parameters.
        self.input_dtype = detail["dtype"]
        self.input_quantization = detail.get("quantization", (0.0, 0))
        return text

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
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
    runtime = RUNTIME
    backend = Backend
    packages = ("litert_torch", "ai_edge_litert")

    def convert(self, build: StaticBuild) -> bytes:
        import litert_torch

        module, options = build.module, {}
        with _quiet():
            if build.report.int8:
                from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
                from litert_torch.quantize.quant_config import QuantConfig

                quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
                module = quantize_core_pt2e(module, build.example, build.calibration, quantizer, fold_quantize=False)
                options["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
            with torch.no_grad():
                converted = litert_torch.convert(module, (build.example,), **options)
            return with_metadata(converted.model_content(), METADATA_NAME, build.metadata)


_EXPORTER = LiteRT()
build, export = _EXPORTER.build, _EXPORTER.export
