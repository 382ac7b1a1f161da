"""ONNX export of the core network, optionally with the postprocess in the graph, checked before it is written.

The core (``(N, 3, S, S)`` -> ``cls_logits (N, A, K)``, ``bbox_deltas (N, A, 4)``) is exported with
``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``-based exporter; the TorchScript-based
one is deprecated in torch 2.x). ``with_nms`` appends :mod:`ssdlite.deploy.onnx_postprocess`.

Verification (:mod:`ssdlite.deploy.verify`), on real images (the user's, or the built-in synthetic
shapes) at batch 1 and, with a dynamic batch, batch 3:

- **network**: onnxruntime's ``cls_logits`` and ``bbox_deltas`` within the scaled bound of
  :func:`ssdlite.deploy.compare.raw_difference` of PyTorch's;
- **detections** (the check that decides): onnxruntime's final detections (in-graph NMS, or
  ``model.postprocess`` on the raw outputs) matched one to one with the PyTorch model's;
- **postprocess** (with NMS): the in-graph postprocess gives the same detections as PyTorch's
  ``model.postprocess`` applied to the *same* network outputs, read from the shipped graph itself
  (IoU >= 0.999, scores within 1e-5), and on :func:`synthetic_head_outputs` (no detection, more
  candidates than the cap). Feeding both postprocesses identical inputs checks the postprocess exactly.

The file is written (atomically) only when every check passes; otherwise
:class:`ExportMismatchError` names the largest difference.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ssdlite.deploy.compare import Comparison, compare_detections
from ssdlite.deploy.onnx_postprocess import NMS_OUTPUTS, append_postprocess, detections_from_padded, postprocess_model
from ssdlite.deploy.onnx_runtime import make_session, write_metadata
from ssdlite.deploy.optional import require
from ssdlite.deploy.samples import sample_batch, shapes_images
from ssdlite.deploy.verify import RAW_OUTPUTS, ExportMismatchError, verify_detections
from ssdlite.files import atomic_write
from ssdlite.models.postprocess import PostprocessSettings
from ssdlite.models.ssdlite import SSDLite

DEFAULT_OPSET = 18  # the dynamo exporter's own opset; lower ones go through onnx's version converter
EXACT_POSTPROCESS = {"min_iou": 0.999, "score_tol": 1e-5}  # the same postprocess on the same inputs

@dataclass
class ExportReport:
    """What was exported and how it was checked."""

    path: str
    format: str
    with_nms: bool
    dynamic_batch: bool
    opset: int | None
    batches_checked: list[int] = field(default_factory=list)
    max_raw_diff: float = 0.0
    detections: Comparison | None = None  # the runtime's detections against PyTorch's on real images
    postprocess_detections: int = 0  # in-graph postprocess checked against PyTorch's on the same network outputs
    tied_batches: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"network outputs within {self.max_raw_diff:.2g}"]
        if self.detections is not None:
            parts.append(self.detections.summary())
        if self.postprocess_detections:
            parts.append(f"in-graph postprocess identical to PyTorch's on {self.postprocess_detections} detections")
        if self.tied_batches:
            parts.append(
                f"at batch {', '.join(map(str, self.tied_batches))} the sample scores have exact ties "
                "(the detections are not unique), there the postprocess was checked on synthetic outputs only"
            )
        return f"verified at batch {', '.join(map(str, sorted(set(self.batches_checked))))}: " + "; ".join(parts)


def _export_core(core: torch.nn.Module, example: torch.Tensor, dynamic_batch: bool, opset: int):
    """``torch.onnx.export`` of the core, quietly: the exporter prints progress and opset-conversion notes
    on stdout and stderr; a failure still raises."""
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    quiet = io.StringIO()
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                core,
                (example,),
                input_names=["images"],
                output_names=list(RAW_OUTPUTS),
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                optimize=True,
                verbose=False,
            )
    finally:
        onnx_logger.setLevel(level)
    return program.model_proto


def export_core_onnx(model: SSDLite, dynamic_batch: bool = True, opset: int = DEFAULT_OPSET):
    """The core network as an ``onnx.ModelProto`` (input ``images``, outputs ``cls_logits``, ``bbox_deltas``), unverified."""
    require("onnxscript", "ONNX export")
    model = copy.deepcopy(model).cpu().eval()
    return _export_core(model.core, sample_batch(model.preprocess, 2 if dynamic_batch else 1), dynamic_batch, opset)


def _with_raw_outputs(model, raw_model):
    """A copy of the with-NMS ``model`` that also outputs the network's raw tensors (for checking only)."""
    onnx = require("onnx", "ONNX export")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend([o for o in raw_model.graph.output if o.name in RAW_OUTPUTS])
    return probe


def synthetic_head_outputs(num_anchors: int, num_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Network outputs ``(3, A, K)``, ``(3, A, 4)`` that exercise the postprocess's edge cases.

    Image 0 has no detection (the background wins everywhere by e^20); image 1 has confident,
    spread-out scores for every class (more candidates than any cap); image 2 has a few. Scores
    drawn from a normal distribution have no exact ties, so the expected detections are unique.
    """
    g = torch.Generator().manual_seed(seed)
    cls_logits = torch.randn(3, num_anchors, num_classes, generator=g)  # (3, A, K)
    cls_logits[0, :, 0] += 20.0
    cls_logits[1] *= 3.0
    cls_logits[2, :, 0] += 6.0
    bbox_deltas = torch.randn(3, num_anchors, 4, generator=g) * 0.5  # (3, A, 4)
    return cls_logits, bbox_deltas


def _has_ties(model: SSDLite, cls_logits: torch.Tensor) -> bool:
    """Whether two candidates of one image and class have exactly equal scores above the threshold.

    Then the detections are not unique: which of the tied boxes survives top-k and NMS is an
    implementation detail (neither torch nor onnxruntime promises an order for equal scores).
    """
    post = model.postprocess_detections
    scores = cls_logits.float().softmax(dim=-1)[..., 1:]  # (N, A, C)
    k = min(post.topk_candidates + 1, scores.shape[1])
    top = scores.topk(k, dim=1).values  # (N, k, C), descending
    return bool(((top[:, 1:] == top[:, :-1]) & (top[:, 1:] > post.score_threshold)).any())


def _check_detections(model: SSDLite, cls_logits, bbox_deltas, outputs, report: ExportReport, what: str, tol: dict) -> bool:
    """Compare onnxruntime's detections with ``model.postprocess`` on the same network outputs.

    Returns False when they differ only because the inputs have tied scores; raises otherwise.
    """
    unit = [(1, 1)] * cls_logits.shape[0]  # normalized coordinates, as the graph returns them
    with torch.no_grad():
        reference = model.postprocess(cls_logits, bbox_deltas, unit)
    got = detections_from_padded(*(outputs[k] for k in NMS_OUTPUTS), unit)
    comparison = compare_detections(reference, got, **tol)
    if not comparison.ok:
        if _has_ties(model, cls_logits):
            return False
        raise ExportMismatchError(f"ONNX postprocess differs from PyTorch's on {what}: " + "; ".join(comparison.problems[:3]))
    report.postprocess_detections += comparison.detections
    return True


def verify_onnx(
    model: SSDLite,
    onnx_model,
    raw_model,
    with_nms: bool,
    batches: list[int],
    images: list[torch.Tensor] | None = None,
) -> ExportReport:
    """Run onnxruntime and PyTorch on ``images`` (default: 4 or ``sum(batches)`` synthetic shapes images) in batches
    of ``batches``; raise :class:`ExportMismatchError` on a difference (module doc).

    With NMS the postprocess is also run alone (:func:`postprocess_model`, the same nodes) on
    :func:`synthetic_head_outputs`, so the no-detection and over-the-cap cases are always checked,
    even for a model whose own outputs are all alike (an untrained one).
    """
    report = ExportReport(path="", format="onnx", with_nms=with_nms, dynamic_batch=len(batches) > 1, opset=None)
    session = make_session(_with_raw_outputs(onnx_model, raw_model) if with_nms else onnx_model)
    names = [o.name for o in session.get_outputs()]
    if images is None:
        images = shapes_images(max(4, sum(batches)), model.config.size)

    def run(chunk):
        x, sizes = model.preprocess(chunk)  # (n, 3, S, S)
        outputs = dict(zip(names, session.run(None, {"images": x.numpy()})))
        logits, deltas = (torch.from_numpy(outputs[k]) for k in RAW_OUTPUTS)
        report.batches_checked.append(len(chunk))
        if not with_nms:
            with torch.no_grad():
                return model.postprocess(logits, deltas, sizes), (logits, deltas)
        if logits.shape[1:] == (model.default_boxes.boxes.shape[0], model.num_classes):
            what = f"the network outputs of {len(chunk)} images"
            if not _check_detections(model, logits, deltas, outputs, report, what, EXACT_POSTPROCESS):
                report.tied_batches.append(len(chunk))
        return detections_from_padded(*(outputs[k] for k in NMS_OUTPUTS), sizes), (logits, deltas)

    report.detections, report.max_raw_diff = verify_detections(model, run, images, batches, "ONNX")
    if with_nms:
        opset = next(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx"))
        tail = postprocess_model(model.num_classes, model.default_boxes.boxes, opset, PostprocessSettings.of(model.config))
        logits, deltas = synthetic_head_outputs(model.default_boxes.boxes.shape[0], model.num_classes)
        tail_session = make_session(tail)
        names = [o.name for o in tail_session.get_outputs()]
        outputs = dict(zip(names, tail_session.run(None, {"cls_logits_in": logits.numpy(), "bbox_deltas_in": deltas.numpy()})))
        if not _check_detections(model, logits, deltas, outputs, report, "synthetic network outputs", EXACT_POSTPROCESS):
            raise ExportMismatchError("the synthetic check inputs have tied scores; change their seed")
    return report


def build_onnx(
    model: SSDLite,
    classes: list[str] | None = None,
    *,
    with_nms: bool = False,
    dynamic_batch: bool = True,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    images: list[torch.Tensor] | None = None,
):
    """Export and check ``model``; returns ``(onnx.ModelProto, ExportReport)`` without writing anything.

    Args:
        model: an :class:`~ssdlite.models.SSDLite` (any device; exported from a CPU copy).
        classes: foreground class names, stored in the file's metadata.
        with_nms: put the postprocess in the graph (outputs ``boxes``, ``scores``, ``labels``, ``num_detections``).
        dynamic_batch: a symbolic batch dimension (checked at batch 1 and 3); else batch 1.
        opset: ONNX opset (>= 13 with NMS).
        verify: compare with PyTorch (on by default; off only for debugging an export).
        images: the real images to compare on (uint8 ``(3, H, W)``); default: synthetic shapes images.
    """
    onnx = require("onnx", "ONNX export")
    start = time.perf_counter()
    model = copy.deepcopy(model).cpu().eval()
    raw = export_core_onnx(model, dynamic_batch, opset)
    exported = append_postprocess(raw, model.default_boxes.boxes, PostprocessSettings.of(model.config)) if with_nms else raw
    write_metadata(exported, model.config.to_dict(), list(classes or []), "nms" if with_nms else "raw")
    onnx.checker.check_model(exported)
    batches = [1, 3] if dynamic_batch else [1]
    if verify:
        report = verify_onnx(model, exported, raw, with_nms, batches, images)
    else:
        report = ExportReport(path="", format="onnx", with_nms=with_nms, dynamic_batch=dynamic_batch, opset=None)
    report.dynamic_batch = dynamic_batch
    report.opset = next(o.version for o in exported.opset_import if o.domain in ("", "ai.onnx"))
    report.seconds = time.perf_counter() - start
    return exported, report


def export_onnx(model: SSDLite, path: str | os.PathLike, classes: list[str] | None = None, **options) -> ExportReport:
    """:func:`build_onnx` (``options`` are its keywords), then write ``path``: only after the check passed."""
    onnx = require("onnx", "ONNX export")
    exported, report = build_onnx(model, classes, **options)
    atomic_write(path, lambda tmp: onnx.save(exported, tmp))
    report.path = str(path)
    return report
