"""What the static-shape runtimes (ExecuTorch, LiteRT, OpenVINO) share: one base for their exports and one for
their backends, so that each runtime's module holds only its conversion and its file's loading.

Every such file holds :class:`~ssdlite.deploy.static_postprocess.StaticDetector` for a fixed batch ``B``:
input ``images (B, 3, S, S)`` float32, RGB scaled to [0, 1], resized to ``S x S`` without keeping the aspect
ratio, then ``(x - image_mean) / image_std``; outputs ``boxes (B, D, 4)`` float32 xyxy normalized to [0, 1],
``scores (B, D)`` float32 descending, ``labels (B, D)`` int64 in ``1..K-1`` (``classes[label - 1]``),
``count (B,)`` int64; entries past ``count`` are zero. Its metadata (JSON, :func:`metadata`) carries the
model config, the class names and these conventions. LiteRT's file wraps the detector in MediaPipe's tensors
(``(B, S, S, 3)`` uint8 or float32 input, the normalization inside; float32 ``location``/``category``/``score``/
``number of detections``: :mod:`ssdlite.deploy.runtimes.litert`), and its backend takes the same normalized
``(B, 3, S, S)`` and gives these outputs; so does OpenVINO's backend for a file of Frigate's layout (``(1, S, S, 3)``
uint8 in, ``detection_out (1, 1, D, 7)`` rows out: :mod:`ssdlite.deploy.runtimes.openvino`). A file that takes
pixels is given :func:`to_pixels` of the normalized input and verified on :func:`as_input_image`'s pixels.

:class:`StaticRuntime` is an export's common start (the NMS sized on the verification images: :func:`fit_nms`;
detector, metadata, images, example input, calibration batches: :func:`prepare_static`) and its verified end
(the converted file run by the runtime's own backend, :func:`verify_static`; written only after). A subclass
gives ``convert`` (and ``write`` where the file is not one blob). :class:`StaticBackend` is the backends' common
part: the row's package required, the metadata read, the fixed batch padded; a subclass gives ``load`` and
``outputs``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ssdlite.deploy.backends import run_in_fixed_batches
from ssdlite.deploy.compare import Comparison, compare_detections
from ssdlite.deploy.onnx_postprocess import detections_from_padded
from ssdlite.deploy.optional import require
from ssdlite.deploy.runtimes import Runtime
from ssdlite.deploy.samples import shapes_images
from ssdlite.deploy.static_postprocess import NMS_STEPS, StaticDetector, StaticPostProcess
from ssdlite.deploy.verify import verify_detections
from ssdlite.errors import UserError
from ssdlite.models.config import ModelConfig

CHECK_IMAGES = 8  # verification images when the user gives none
INT8_MATCH = {"min_iou": 0.5, "score_tol": 1.0}  # INT8 against fp32: the same objects, whatever the score
MAX_AUTO_CANDIDATES = 1000  # NMS candidates per image an export picks without --candidates: (M, M) = 4 MB float32


@dataclass
class StaticExportReport:
    """What was exported and how it was checked."""

    path: str
    format: str
    int8: bool
    batch: int
    detections: Comparison | None = None  # fp32: must match; INT8: reported
    calibration_images: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        what = f"{self.format}{' INT8' if self.int8 else ''}, batch {self.batch}"
        parts = [what]
        if self.calibration_images:
            parts.append(f"calibrated on {self.calibration_images} images")
        if self.detections is not None:
            parts.append(("the same objects as PyTorch fp32 (label, IoU >= 0.5): " if self.int8 else "verified: ") + self.detections.summary())
        return "; ".join(parts + self.notes)


def metadata(model, classes: Sequence[str], batch: int, int8: bool, candidates: int, nms_steps: int) -> dict[str, Any]:
    """What an app (and :class:`StaticBackend`) needs to feed and read the file."""
    config = model.config.to_dict()
    return {
        "ssdlite_config": config,
        "classes": list(classes),
        "outputs": "static_nms",
        "int8": int8,
        "batch": batch,
        "input_size": config["size"],
        "image_mean": config["image_mean"],
        "image_std": config["image_std"],
        "inputs": "images (B, 3, S, S) float32 RGB: [0, 1] resized to S x S, then (x - image_mean) / image_std",
        "box_format": "xyxy normalized to [0, 1]",
        "output_names": ["boxes", "scores", "labels", "count"],
        "detections_per_image": model.postprocess_detections.detections_per_image,
        "candidates": candidates,
        "nms_steps": nms_steps,
    }


def read_metadata(text: str, path) -> tuple[ModelConfig, list[str], int]:
    """``(config, classes, batch)`` from the JSON that :func:`metadata` wrote."""
    try:
        meta = json.loads(text)
        return ModelConfig.from_dict(meta["ssdlite_config"], f"{path}: model configuration"), list(meta["classes"]), int(meta["batch"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: no readable ssdlite metadata ({err}); export it with 'ssdlite export'") from err


def detector(model, candidates: int | None = None, nms_steps: int = NMS_STEPS) -> StaticDetector:
    """A CPU, eval-mode :class:`StaticDetector` on a copy of ``model``."""
    return StaticDetector(copy.deepcopy(model).cpu().eval(), candidates, nms_steps).eval()


def fit_nms(model, images: Sequence[torch.Tensor], candidates: int | None) -> tuple[int, int, str]:
    """``(M, nms_steps, what was fitted)``: the file's NMS sized so that it is exact on ``images``.

    ``M`` (the candidates that go through the fixed-size NMS) is the user's ``candidates``, or the default
    ``2 * D`` raised to what the images need, up to :data:`MAX_AUTO_CANDIDATES` (the file holds ``(M, M)``
    matrices); the steps are :data:`NMS_STEPS` raised to what the images need with that ``M``. A ``candidates``
    too small for the images is refused here, before the conversion, with the value that would do.
    """
    post = StaticPostProcess.from_model(model).cpu()
    raws = []
    with torch.no_grad():
        for start in range(0, len(images), 8):
            x, _ = model.preprocess(list(images[start : start + 8]))
            raws.append(tuple(t.cpu() for t in model.core(x)))
    need_m = max(int(post.candidates_needed(*raw).max()) for raw in raws)
    if candidates is not None and candidates < need_m:
        raise UserError(
            f"--candidates {candidates}: NMS over that many candidates per image leaves out detections that NMS over every "
            f"candidate keeps on the verification images; they need --candidates {need_m} (or leave it out)"
        )
    if candidates is None and need_m > MAX_AUTO_CANDIDATES:
        raise UserError(
            f"the verification images need NMS over {need_m} candidates per image to give every detection, more than the "
            f"{MAX_AUTO_CANDIDATES} chosen without asking (the file holds ({need_m}, {need_m}) matrices): export with "
            f"--candidates {need_m} to accept them"
        )
    m = candidates if candidates is not None else max(post.m, need_m)
    post = StaticPostProcess.from_model(model, m).cpu()
    need_steps = max(int(post.steps_needed(*raw).max()) for raw in raws)
    steps = max(NMS_STEPS, need_steps)
    return post.m, steps, (f"NMS over the {post.m} best candidates in {steps} matrix steps (the {len(images)} verification images need at most "
                          f"{need_m} and {need_steps})")


def module_input(model, images: Sequence[torch.Tensor], batch: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """A preprocessed ``(batch, 3, S, S)`` example from the first images (repeated if there are fewer)."""
    chosen = [images[i % len(images)] for i in range(batch)]
    return model.preprocess(chosen)


def static_calibration(model, calibration: Sequence[torch.Tensor], batch: int, runtime: str) -> list[torch.Tensor]:
    """:func:`ssdlite.deploy.quantize.calibration_batches` for a file of fixed ``batch``: a last partial batch is left out."""
    from ssdlite.deploy.quantize import calibration_batches

    if len(calibration) < batch:
        raise UserError(f"{runtime} INT8 needs at least {batch} calibration image(s) (--calib)")
    return [x for x in calibration_batches(calibration, model.preprocess, batch) if x.shape[0] == batch]


def quantize_core_pt2e(
    module: StaticDetector, example: torch.Tensor, batches: Sequence[torch.Tensor], quantizer, fold_quantize: bool = True
) -> StaticDetector:
    """PT2E INT8 of ``module.core`` with a runtime's ``quantizer``, calibrated on ``batches``; the postprocess stays float.

    The core is exported, prepared and converted alone (the quantizer's ``set_global``) and put back in place of
    the float one: a quantizer restricted to ``core`` by ``set_module_name`` on the whole detector's graph left
    every convolution weight in float32 (measured with ExecuTorch's: no per-channel dequantize among 88
    convolutions), and a quantized suppression count would no longer be a count. ``fold_quantize=False`` keeps
    the float weights behind quantize/dequantize pairs, which LiteRT's converter needs to fold them itself
    (given int8 constants it failed: "'stablehlo.uniform_dequantize' op operand #0 must be ... quantized").
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(module.core, (example,), strict=False).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for x in batches:
            prepared(x)
    module.core = convert_pt2e(prepared, fold_quantize=fold_quantize)
    return module


def to_pixels(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], input_type: str) -> np.ndarray:
    """The input of a file that takes pixels (LiteRT's MediaPipe layout, OpenVINO's Frigate layout) from ssdlite's
    normalized ``x (B, 3, S, S)``: ``(B, S, S, 3)`` uint8 (rounded) or float32 [0, 1]."""
    pixels = x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)  # (B, 3, S, S) in [0, 1]
    pixels = pixels.permute(0, 2, 3, 1)  # (B, S, S, 3)
    if input_type == "uint8":
        return (pixels * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return pixels.contiguous().numpy().astype(np.float32)


def as_input_image(image: torch.Tensor, config) -> torch.Tensor:
    """``(3, H, W)`` uint8 or float [0, 1] -> ``(3, S, S)`` uint8: the pixels a uint8-input file gets from its backend
    for this image (ssdlite's preprocessing, then :func:`to_pixels`), bit for bit; an ``S x S`` uint8 image comes back
    unchanged. What a uint8 file is verified on: PyTorch given these pixels sees what the file sees."""
    from ssdlite.models.transform import Preprocess

    x, _ = Preprocess(config.size, config.image_mean, config.image_std)([image])
    return torch.from_numpy(to_pixels(x, config.image_mean, config.image_std, "uint8")[0]).permute(2, 0, 1).contiguous()


def check_images(images: Sequence[torch.Tensor] | None, model) -> list[torch.Tensor]:
    """The verification images: the user's, or :data:`CHECK_IMAGES` synthetic shapes images."""
    return list(images) if images else shapes_images(CHECK_IMAGES, model.config.size)


def verify_static(
    model, outputs: Callable[[torch.Tensor], Sequence[Any]], batch: int, images: Sequence[torch.Tensor], runtime: str, int8: bool
) -> Comparison:
    """Verify ``outputs`` (a runtime's ``(B, 3, S, S)`` -> ``boxes, scores, labels, count``) on ``images``.

    fp32 must give PyTorch's detections (:func:`ssdlite.deploy.verify.verify_detections`); INT8 is compared
    and reported as the same objects (same label, IoU >= 0.5, any score): its detections legitimately differ,
    its accuracy is measured with ``--val``.
    """
    def run_batch(x, sizes):
        boxes, scores, labels, count = (torch.as_tensor(o) for o in outputs(x.contiguous()))
        return detections_from_padded(boxes, scores, labels, count, sizes)

    def run(chunk):
        x, sizes = model.preprocess(chunk)
        return run_in_fixed_batches(run_batch, x, sizes, batch), None

    if not int8:
        return verify_detections(model, run, images, [batch], runtime)[0]
    comparison = Comparison()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            chunk = list(images[start : start + batch])
            comparison.merge(compare_detections(model(chunk), run(chunk)[0], **INT8_MATCH))
    comparison.problems = []  # reported, not a failure
    return comparison


@dataclass
class StaticBuild:
    """What every static export starts from (:func:`prepare_static`): the converter's inputs."""

    model: Any
    module: StaticDetector  # the network + static NMS to convert (a quantized copy replaces it for INT8)
    metadata: str  # the JSON the file carries (:func:`metadata`)
    images: list[torch.Tensor]  # the verification images
    example: torch.Tensor  # (batch, 3, S, S): the conversion's example input
    calibration: list[torch.Tensor]  # (batch, 3, S, S) preprocessed calibration batches; empty for fp32
    report: StaticExportReport
    start: float


def prepare_static(
    model, classes: Sequence[str], runtime: Runtime, int8: bool, images: Sequence[torch.Tensor] | None, batch: int,
    candidates: int | None, calibration: Sequence[torch.Tensor] = (),
) -> StaticBuild:
    """The detector module, its metadata, the verification images, the example input and the calibration batches
    of a static export."""
    start = time.perf_counter()
    images = check_images(images, model)
    candidates, steps, fitted = fit_nms(model, images, candidates)
    module = detector(model, candidates, steps)
    example, _ = module_input(model, images, batch)
    meta = json.dumps(metadata(model, classes, batch, int8, candidates, steps))
    report = StaticExportReport(path="", format=runtime.name, int8=int8, batch=batch, notes=[fitted])
    batches = static_calibration(model, calibration, batch, runtime.title) if int8 else []
    report.calibration_images = batch * len(batches)
    return StaticBuild(model, module, meta, images, example, batches, report, start)


class StaticBackend:
    """A file holding :class:`~ssdlite.deploy.static_postprocess.StaticDetector`: ``x (B, 3, S, S)`` ->
    ``boxes (B, D, 4)`` normalized, ``scores (B, D)``, ``labels (B, D)``, ``count (B,)``, for its fixed ``B``.

    A subclass sets ``runtime`` (its row) and ``package`` (what it imports), and implements ``load(source,
    where, threads)`` (returning the metadata text the file carries) and ``outputs(x)``. ``load`` gets the file's
    bytes (kept by the backend: the runtimes run from them), or its path where ``reads_path`` is set.
    """

    runtime: Runtime
    package: str
    reads_path = False
    batch = 1
    config: ModelConfig
    classes: list[str]

    def __init__(self, source: str | os.PathLike | bytes, device: Any = None, threads: int | None = None) -> None:
        """``device`` is ignored: these runtimes run on the CPU (the argument keeps one signature for every backend)."""
        require(self.package, f"the {self.runtime.title} backend", self.runtime.extra)
        where = f"the {self.runtime.title} model" if isinstance(source, bytes) else str(source)
        if not isinstance(source, bytes):
            if not os.path.isfile(source):
                raise UserError(f"{source}: no such file")
            if not self.reads_path:
                with open(source, "rb") as f:
                    source = f.read()
        self.config, self.classes, self.batch = read_metadata(self.load(source, where, threads), where)

    @property
    def name(self) -> str:
        return self.runtime.name

    def load(self, source: str | os.PathLike | bytes, where: str, threads: int | None) -> str:
        raise NotImplementedError

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def run(self, x, sizes):
        if x.shape[0] != self.batch:
            return run_in_fixed_batches(self.run, x, sizes, self.batch)
        boxes, scores, labels, count = self.outputs(x.float().cpu().contiguous())
        return detections_from_padded(boxes, scores, labels, count, sizes)


class StaticRuntime:
    """A static runtime's export: :meth:`build` converts (``convert``, the subclass's), verifies and returns the
    file's content; :meth:`export` also writes it (``write``: atomically, one blob by default).

    A subclass sets ``runtime`` (its row), ``backend`` (its :class:`StaticBackend`), ``packages`` (what the
    conversion imports: required before any work) and implements ``convert``.
    """

    runtime: Runtime
    backend: type[StaticBackend]
    packages: tuple[str, ...]

    def convert(self, build: StaticBuild) -> Any:
        """The file's content (bytes, or the runtime's model object) from ``build.module`` (INT8 with
        ``build.calibration`` when ``build.report.int8``)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def opened(self, content: Any) -> Iterator[StaticBackend]:
        """The content as its backend will read it from the file."""
        yield self.backend(content)

    def write(self, content: Any, path: str | os.PathLike) -> None:
        from ssdlite.files import write_bytes_atomic

        write_bytes_atomic(path, content)

    def build(
        self,
        model,
        classes: Sequence[str] = (),
        *,
        int8: bool = False,
        calibration: Sequence[torch.Tensor] = (),
        images: Sequence[torch.Tensor] | None = None,
        batch: int = 1,
        candidates: int | None = None,
    ) -> tuple[Any, StaticExportReport]:
        """Convert (and quantize) ``model``, verify the result; returns ``(content, report)``, writes nothing.

        Args:
            calibration: uint8 ``(3, H, W)`` images for INT8 (required with ``int8``).
            images: verification images (default: synthetic shapes).
            batch: the file's fixed batch size.
            candidates: NMS candidates per image (:class:`~ssdlite.deploy.static_postprocess.StaticPostProcess`).
        """
        for package in self.packages:
            require(package, f"{self.runtime.title} export", self.runtime.extra)
        build = prepare_static(model, classes, self.runtime, int8, images, batch, candidates, calibration)
        content = self.convert(build)
        with self.opened(content) as backend:
            build.report.detections = verify_static(model, backend.outputs, batch, build.images, self.runtime.title, int8)
        build.report.seconds = time.perf_counter() - build.start
        return content, build.report

    def export(self, model, path: str | os.PathLike, classes: Sequence[str] = (), **options) -> StaticExportReport:
        """:meth:`build`, then write ``path`` (only after the check passed)."""
        content, report = self.build(model, classes, **options)
        self.write(content, path)
        report.path = str(path)
        return report
