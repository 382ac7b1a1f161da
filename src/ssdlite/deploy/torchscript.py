"""TorchScript export of the core network, checked before it is written.

``torch.jit.trace`` of ``model.core`` (``(N, 3, S, S)`` -> ``cls_logits (N, A, K)``,
``bbox_deltas (N, A, 4)``): the network has no data-dependent control flow, so a trace is exact,
and the batch dimension stays symbolic. The written file is verified (:mod:`ssdlite.deploy.verify`) at
batch 1 and 3 on real images: raw outputs within the scaled bound, detections (``model.postprocess``
on its outputs) matched one to one with the eager model's. The model config and class
names travel in the archive's extra files ``ssdlite_config`` and ``classes`` (JSON), so
:func:`load_torchscript` can rebuild the preprocess and postprocess around it.
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from typing import Any

import torch

from ssdlite.deploy.onnx_export import ExportReport
from ssdlite.deploy.samples import sample_batch, shapes_images
from ssdlite.deploy.verify import verify_detections
from ssdlite.errors import UserError
from ssdlite.files import atomic_write
from ssdlite.models.ssdlite import SSDLite

EXTRA_FILES = ("ssdlite_config", "classes")


def export_torchscript(
    model: SSDLite, path: str | os.PathLike, classes: list[str] | None = None, images: list[torch.Tensor] | None = None
) -> ExportReport:
    """Trace ``model.core``, check it against the eager model at batch 1 and 3 on ``images`` (default: 4 synthetic
    shapes images), then write ``path`` atomically."""
    start = time.perf_counter()
    model = copy.deepcopy(model).cpu().eval()
    example = sample_batch(model.preprocess, 2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        traced = torch.jit.trace(model.core, example, check_trace=False)  # checked below, on other inputs
    extra = {"ssdlite_config": json.dumps(model.config.to_dict()), "classes": json.dumps(list(classes or []))}
    report = ExportReport(path=str(path), format="torchscript", with_nms=False, dynamic_batch=True, opset=None)

    images = images if images is not None else shapes_images(4, model.config.size)

    def write(tmp: str) -> None:
        torch.jit.save(traced, tmp, _extra_files=extra)
        loaded, _ = load_torchscript(tmp)

        def run(chunk):
            x, sizes = model.preprocess(chunk)
            report.batches_checked.append(len(chunk))
            # Without the JIT's profiling passes: they take seconds per new shape and run the same operations.
            with torch.no_grad(), torch.jit.optimized_execution(False):
                raw = loaded(x)
                return model.postprocess(*raw, sizes), raw

        report.detections, report.max_raw_diff = verify_detections(model, run, images, [1, 3], "TorchScript")

    atomic_write(path, write)  # verified from the written bytes, renamed into place only if they match
    report.seconds = time.perf_counter() - start
    return report


def load_torchscript(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """``(traced core, {"config", "classes"})`` from a file written by :func:`export_torchscript`."""
    extra = dict.fromkeys(EXTRA_FILES, "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as err:
        raise UserError(f"{path}: not a readable TorchScript file ({err})") from err
    if not extra["ssdlite_config"]:
        raise UserError(f"{path}: no ssdlite_config inside; export it with 'ssdlite export --format torchscript'")
    return module.eval(), {"config": json.loads(extra["ssdlite_config"]), "classes": json.loads(extra["classes"] or "[]")}
